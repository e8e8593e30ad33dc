/* loss_rkd.c — relational KD, distance and angle terms (the rkd baseline), forward beside
 * backward (contract in losses.h). */
#include "loss_common.h"
#include "term.h"


struct ecr_rkd {
    int n, d, D, m;
    int *idx;                 /* [m] the used rows                                      */
    double *u, *rz;           /* [n, D], [n] student rows (zero when unused)            */
    double *tt;               /* [m, D] normalised teacher rows of the used texts       */
    double *Gs, *Gt;          /* [m, m] Gram matrices                                   */
    double *Ds, *Dt;          /* [m, m] distances                                       */
    double mus, mut;          /* mean distance over i != j                              */
    double *part;             /* [m] per-vertex sums (forward loss; backward scratch)   */
    double *dG, *dD;          /* [m, m] backward                                        */
    double *du;               /* [n, D]                                                 */
    double *acc;              /* [max(n, D), d]                                         */
    double dist, angle;
    unsigned char *clamped, *used;
    size_t cap_idx, cap_u, cap_r, cap_t, cap_gs, cap_gt, cap_ds, cap_dt, cap_p, cap_dg, cap_dd,
        cap_du, cap_acc, cap_c, cap_used;
};

ecr_status ecr_rkd_create(ecr_rkd **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "rkd: out of memory");
}

void ecr_rkd_free(ecr_rkd *w) {
    if (!w) return;
    free(w->idx);
    free(w->u);
    free(w->rz);
    free(w->tt);
    free(w->Gs);
    free(w->Gt);
    free(w->Ds);
    free(w->Dt);
    free(w->part);
    free(w->dG);
    free(w->dD);
    free(w->du);
    free(w->acc);
    free(w->clamped);
    free(w->used);
    free(w);
}

static ecr_status rkd_reserve(ecr_rkd *w, int n, int d, int D) {
    size_t un = (size_t)n, nD = un * D, nn = un * un, acc = (un > (size_t)D ? un : (size_t)D) * (size_t)d;
    ecr_status st = RESERVE(w->idx, w->cap_idx, un, "rkd");
    if (!st) st = RESERVE(w->u, w->cap_u, nD, "rkd");
    if (!st) st = RESERVE(w->du, w->cap_du, nD, "rkd");
    if (!st) st = RESERVE(w->tt, w->cap_t, nD, "rkd");
    if (!st) st = RESERVE(w->rz, w->cap_r, un, "rkd");
    if (!st) st = RESERVE(w->part, w->cap_p, un, "rkd");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "rkd");
    if (!st) st = RESERVE(w->used, w->cap_used, un, "rkd");
    if (!st) st = RESERVE(w->Gs, w->cap_gs, nn, "rkd");
    if (!st) st = RESERVE(w->Gt, w->cap_gt, nn, "rkd");
    if (!st) st = RESERVE(w->Ds, w->cap_ds, nn, "rkd");
    if (!st) st = RESERVE(w->Dt, w->cap_dt, nn, "rkd");
    if (!st) st = RESERVE(w->dG, w->cap_dg, nn, "rkd");
    if (!st) st = RESERVE(w->dD, w->cap_dd, nn, "rkd");
    if (!st) st = RESERVE(w->acc, w->cap_acc, acc, "rkd");
    return st;
}

static double smooth_l1(double x) { return fabs(x) < 1.0 ? 0.5 * x * x : fabs(x) - 0.5; }
static double smooth_l1_grad(double x) { return x > 1.0 ? 1.0 : x < -1.0 ? -1.0 : x; }

/* c_ijk at vertex i from the Gram matrix G and distances Dm [m, m] (j, k != i). */
static inline double rkd_cos(const double *G, const double *Dm, int m, int i, int j, int k) {
    double dij = Dm[(size_t)i * m + j], dik = Dm[(size_t)i * m + k];
    if (dij < ECR_RKD_MIN_DIST || dik < ECR_RKD_MIN_DIST) return 0.0;
    double num = G[(size_t)j * m + k] - G[(size_t)i * m + j] - G[(size_t)i * m + k] + G[(size_t)i * m + i];
    return num / (dij * dik);
}

/* G = X X^T and D_ab = ||x_a - x_b|| of the m rows x_a = X + rows[a] * D (double). */
static void gram_dist(const double *X, const int *rows, int m, int D, double *G, double *Dm) {
    ECR_OMP(parallel for schedule(static))
    for (int a = 0; a < m; a++) {
        const double *xa = X + (size_t)(rows ? rows[a] : a) * D;
        for (int b = 0; b < m; b++) {
            const double *xb = X + (size_t)(rows ? rows[b] : b) * D;
            double g = 0, s = 0;
            for (int k = 0; k < D; k++) {
                g += xa[k] * xb[k];
                s += (xa[k] - xb[k]) * (xa[k] - xb[k]);
            }
            G[(size_t)a * m + b] = g;
            Dm[(size_t)a * m + b] = sqrt(s);
        }
    }
}

/* mean_{a != b} D_ab, summed in order. */
static double mean_offdiag(const double *Dm, int m) {
    double s = 0;
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++)
            if (a != b) s += Dm[(size_t)a * m + b];
    return s / ((double)m * (m - 1));
}

ecr_status ecr_rkd_forward(ecr_rkd *w, const float *P, const float *h, const float *t,
                           const unsigned char *used, int n, int d, int D, double *loss,
                           double *dist, double *angle, int *n_used) {
    *loss = 0;
    if (dist) *dist = 0;
    if (angle) *angle = 0;
    if (n_used) *n_used = 0;
    if (n < 0 || d < 1 || D < 1) return ecr_fail(ECR_E_INVALID, "rkd: n=%d d=%d D=%d out of range", n, d, D);
    ecr_status st = rkd_reserve(w, n, d, D);
    if (st) return st;
    w->n = n, w->d = d, w->D = D, w->m = 0, w->dist = 0, w->angle = 0;
    for (int i = 0; i < n; i++) {
        w->used[i] = used ? used[i] != 0 : 1;
        if (w->used[i]) w->idx[w->m++] = i;
    }
    int m = w->m;
    ecr_loss_project_rows(P, h, w->used, n, d, D, w->u, w->rz, w->clamped);
    for (int a = 0; a < m; a++) {
        double *ta = w->tt + (size_t)a * D, r;
        for (int k = 0; k < D; k++) ta[k] = t[(size_t)w->idx[a] * D + k];
        normalize_row(ta, D, ta, &r);
    }
    if (n_used) *n_used = m;
    if (m < 2) return ECR_OK;
    gram_dist(w->u, w->idx, m, D, w->Gs, w->Ds);
    gram_dist(w->tt, NULL, m, D, w->Gt, w->Dt);
    w->mus = mean_offdiag(w->Ds, m);
    w->mut = mean_offdiag(w->Dt, m);
    double rs = w->mus > 0 ? 1.0 / w->mus : 0.0, rt = w->mut > 0 ? 1.0 / w->mut : 0.0, sd = 0;
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++)
            if (a != b) sd += smooth_l1(w->Ds[(size_t)a * m + b] * rs - w->Dt[(size_t)a * m + b] * rt);
    /* angles: per vertex i, over ordered pairs j != k (c_ijj = 1 on both sides adds 0) */
    ECR_OMP(parallel for schedule(dynamic, 1))
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = 0; j < m; j++) {
            if (j == i) continue;
            for (int k = 0; k < m; k++) {
                if (k == i || k == j) continue;
                s += smooth_l1(rkd_cos(w->Gs, w->Ds, m, i, j, k) - rkd_cos(w->Gt, w->Dt, m, i, j, k));
            }
        }
        w->part[i] = s;
    }
    double sa = 0;
    for (int i = 0; i < m; i++) sa += w->part[i];
    double mm = (double)m * m;
    w->dist = sd / mm;
    w->angle = sa / (mm * m);
    *loss = ECR_RKD_DIST_WEIGHT * w->dist + ECR_RKD_ANGLE_WEIGHT * w->angle;
    if (dist) *dist = w->dist;
    if (angle) *angle = w->angle;
    return ECR_OK;
}

/* dL/dD from the distance term into dD (overwrites; a != b). */
static void rkd_dist_backward(ecr_rkd *w, double cD) {
    int m = w->m;
    memset(w->dD, 0, (size_t)m * m * sizeof *w->dD);
    if (!(w->mus > 0)) return; /* all student rows coincide: psi^S = 0, no gradient */
    double rs = 1.0 / w->mus, rt = w->mut > 0 ? 1.0 / w->mut : 0.0, gd = 0, mm = (double)m * m;
    /* L_D = (1/m^2) sum sl1(D_ab / mu - psi^T_ab), mu = mean D: dL/dD_ab = g_ab / mu - (sum g D) / (mu^2 m (m-1)) */
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++) {
            if (a == b) continue;
            size_t ab = (size_t)a * m + b;
            double g = smooth_l1_grad(w->Ds[ab] * rs - w->Dt[ab] * rt) / mm;
            w->dD[ab] = g;
            gd += g * w->Ds[ab];
        }
    double corr = gd * rs * rs / ((double)m * (m - 1));
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++)
            if (a != b) w->dD[(size_t)a * m + b] = cD * (w->dD[(size_t)a * m + b] * rs - corr);
}

/* The angle term into dG (overwrites) and dD (adds). With w_ijk = gc_ijk / (D_ij D_ik),
 * gc_ijk = cA sl1'(c^S - c^T) / m^3 (symmetric in j, k):
 *   dG_jk += w_ijk;  dG_ij -= w_ijk;  dG_ik -= w_ijk;  dG_ii += w_ijk;
 *   dD_ij -= gc_ijk c^S_ijk / D_ij;  dD_ik -= gc_ijk c^S_ijk / D_ik.
 * Pass 1 (per vertex i) fills row i: the dG_ij, dG_ik, dG_ii and dD parts, which by the
 * j <-> k symmetry are twice the j-role sums. Pass 2 (per row j) adds sum_i w_ijk to dG_jk,
 * recomputing w. Every entry is summed by one thread in a fixed order. */
static void rkd_angle_backward(ecr_rkd *w, double cA) {
    int m = w->m;
    double c3 = cA / ((double)m * m * m);
    const double *Gs = w->Gs, *Gt = w->Gt, *Ds = w->Ds, *Dt = w->Dt;
    ECR_OMP(parallel for schedule(dynamic, 1))
    for (int i = 0; i < m; i++) {
        double *dGi = w->dG + (size_t)i * m, *dDi = w->dD + (size_t)i * m, diag = 0;
        for (int j = 0; j < m; j++) {
            dGi[j] = 0;
            double dij = Ds[(size_t)i * m + j];
            if (j == i || dij < ECR_RKD_MIN_DIST) continue;
            double e = 0, f = 0;
            for (int k = 0; k < m; k++) {
                if (k == i || k == j || Ds[(size_t)i * m + k] < ECR_RKD_MIN_DIST) continue;
                double cs = rkd_cos(Gs, Ds, m, i, j, k), ct = rkd_cos(Gt, Dt, m, i, j, k);
                double gc = c3 * smooth_l1_grad(cs - ct);
                e += gc / (dij * Ds[(size_t)i * m + k]);
                f -= gc * cs / dij;
            }
            dGi[j] = -2.0 * e;
            diag += e;
            dDi[j] += 2.0 * f;
        }
        w->part[i] = diag;
    }
    for (int i = 0; i < m; i++) w->dG[(size_t)i * m + i] = w->part[i];
    ECR_OMP(parallel for schedule(dynamic, 1))
    for (int j = 0; j < m; j++) {
        for (int k = 0; k < m; k++) {
            if (k == j) continue;
            double s = 0;
            for (int i = 0; i < m; i++) {
                if (i == j || i == k) continue;
                double dij = Ds[(size_t)i * m + j], dik = Ds[(size_t)i * m + k];
                if (dij < ECR_RKD_MIN_DIST || dik < ECR_RKD_MIN_DIST) continue;
                double cs = rkd_cos(Gs, Ds, m, i, j, k), ct = rkd_cos(Gt, Dt, m, i, j, k);
                s += c3 * smooth_l1_grad(cs - ct) / (dij * dik);
            }
            w->dG[(size_t)j * m + k] += s;
        }
    }
}

void ecr_rkd_backward(ecr_rkd *w, const float *P, const float *h, float scale, float *dP, float *dh) {
    int m = w->m, D = w->D;
    if (m < 2) return;
    rkd_dist_backward(w, (double)scale * ECR_RKD_DIST_WEIGHT);
    rkd_angle_backward(w, (double)scale * ECR_RKD_ANGLE_WEIGHT);
    /* du_a = sum_b (dG_ab + dG_ba) x_b + sum_{b != a} (dD_ab + dD_ba) (x_a - x_b) / D_ab */
    memset(w->du, 0, (size_t)w->n * D * sizeof *w->du);
    ECR_OMP(parallel for schedule(static))
    for (int a = 0; a < m; a++) {
        double *dua = w->du + (size_t)w->idx[a] * D;
        const double *xa = w->u + (size_t)w->idx[a] * D;
        for (int b = 0; b < m; b++) {
            const double *xb = w->u + (size_t)w->idx[b] * D;
            double g = w->dG[(size_t)a * m + b] + w->dG[(size_t)b * m + a];
            for (int k = 0; k < D; k++) dua[k] += g * xb[k];
            double dab = w->Ds[(size_t)a * m + b];
            if (b == a || dab == 0) continue;
            double q = (w->dD[(size_t)a * m + b] + w->dD[(size_t)b * m + a]) / dab;
            for (int k = 0; k < D; k++) dua[k] += q * (xa[k] - xb[k]);
        }
    }
    ecr_loss_project_backward(P, h, w->used, w->n, w->d, D, w->u, w->rz, w->clamped, w->du, w->acc, dP, dh);
}

/* ---- the term (term.h): on with teacher vectors; the texts' rows of them ------------------- */

typedef struct rkd_term {
    ecr_rkd *w;
    float *t;                 /* [n, rkd_dim] the step's teacher rows                     */
    size_t cap_t;
} rkd_term;

static int rkd_on(const ecr_objective_opts *o) { return o->rkd_emb != NULL; }
static float rkd_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->rkd_weight; }

static ecr_status rkd_check(const ecr_objective_opts *o, const ecr_model *m) {
    if (ecr_term_bad_weight(o->rkd_weight) || o->rkd_rows < 0)
        return ecr_fail(ECR_E_INVALID, "objective: RKD weight %g out of range", (double)o->rkd_weight);
    return ecr_term_check_proj(m, o->rkd_dim, "the RKD teacher vectors");
}

static void rkd_destroy(void *state) {
    rkd_term *s = state;
    if (!s) return;
    ecr_rkd_free(s->w);
    free(s->t);
    free(s);
}

static ecr_status rkd_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)o, (void)m;
    rkd_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ecr_status st = ecr_rkd_create(&s->w);
    if (st) rkd_destroy(s), s = NULL;
    *out = s;
    return st;
}

static ecr_status rkd_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    rkd_term *s = state;
    const ecr_objective_opts *o = x->o;
    ecr_status st = ecr_term_gather_rows(o->rkd_emb, o->rkd_rows, o->rkd_dim, x, "RKD", &s->t, &s->cap_t);
    if (st) return st;
    return ecr_rkd_forward(s->w, x->P, x->h, s->t, x->has_tokens, x->n, x->d, o->rkd_dim, &t->rkd, &t->rkd_dist,
                           &t->rkd_angle, &t->n_rkd);
}

static void rkd_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    ecr_rkd_backward(((rkd_term *)state)->w, x->P, x->h, scale, dP, dh);
}

const ecr_term_ops ecr_term_ops_rkd = {
    offsetof(ecr_objective_terms, rkd), 0, rkd_on, rkd_weight, rkd_check, rkd_create, rkd_destroy, rkd_forward,
    rkd_backward, NULL, 0,
};
