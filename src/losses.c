/* losses.c — InfoNCE, the ECR regulariser and the step objective (contracts in losses.h).
 *
 * Both losses work on a few hundred pooled rows per step, so they are plain loops in
 * double precision, parallel over texts (each text's numbers are computed by one thread
 * in a fixed order; the only sum across texts, dP, runs over texts in order), which keeps
 * them exact for finite differences and independent of the thread count. */
#include "losses.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* Grows *p to hold `need` elements of `size` bytes (contents not kept). */
static ecr_status reserve(void **p, size_t *cap, size_t need, size_t size, const char *what) {
    if (need <= *cap && *p) return ECR_OK;
    free(*p);
    *p = malloc((need ? need : 1) * size);
    *cap = *p ? need : 0;
    return *p ? ECR_OK : ecr_fail(ECR_E_NOMEM, "%s: out of memory for %zu elements", what, need);
}
#define RESERVE(ptr, capv, need, what) reserve((void **)&(ptr), &(capv), (need), sizeof *(ptr), what)

/* x[n] = v / max(||v||, eps) in double; *rnorm = 1 / max(||v||, eps); returns 1 when clamped. */
static int normalize_row(const double *v, int n, double *x, double *rnorm) {
    double s = 0;
    for (int j = 0; j < n; j++) s += v[j] * v[j];
    double norm = sqrt(s);
    int clamped = !(norm > ECR_NORM_EPS);
    double r = 1.0 / (clamped ? ECR_NORM_EPS : norm);
    for (int j = 0; j < n; j++) x[j] = v[j] * r;
    *rnorm = r;
    return clamped;
}

/* Backward of normalize_row: dv[n] = (dx - x <x, dx>) * rnorm (dx * rnorm when clamped). */
static void normalize_backward(const double *x, const double *dx, double rnorm, int clamped, int n,
                               double *dv) {
    double xd = 0;
    if (!clamped)
        for (int j = 0; j < n; j++) xd += x[j] * dx[j];
    for (int j = 0; j < n; j++) dv[j] = (dx[j] - x[j] * xd) * rnorm;
}

/* log(sum_k exp(l[k])) over n > 0 values. */
static double log_sum_exp(const double *l, int n) {
    double mx = l[0];
    for (int k = 1; k < n; k++)
        if (l[k] > mx || l[k] != l[k]) mx = l[k];
    if (!isfinite(mx)) return mx;
    double s = 0;
    for (int k = 0; k < n; k++) s += exp(l[k] - mx);
    return mx + log(s);
}

/* ==== InfoNCE ================================================================================== */

struct ecr_infonce {
    int n, d, n_anchor;
    double tau;
    double *x;                /* [n, d] normalised rows                                */
    double *rnorm;            /* [n] 1 / max(||h_i||, eps)                             */
    unsigned char *clamped;   /* [n]                                                   */
    double *G;                /* [n, n] dL/ds_ik (s = cosine / tau), 0 off the anchors */
    double *loss_i;           /* [n]                                                   */
    int32_t *n_pos;           /* [n] |P(i)|                                            */
    double *dx;               /* [n, d] backward scratch                               */
    size_t cap_x, cap_r, cap_c, cap_g, cap_l, cap_p, cap_dx;
};

ecr_status ecr_infonce_create(ecr_infonce **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "infonce: out of memory");
}

void ecr_infonce_free(ecr_infonce *w) {
    if (!w) return;
    free(w->x);
    free(w->rnorm);
    free(w->clamped);
    free(w->G);
    free(w->loss_i);
    free(w->n_pos);
    free(w->dx);
    free(w);
}

static ecr_status infonce_reserve(ecr_infonce *w, int n, int d) {
    size_t nd = (size_t)n * d, nn = (size_t)n * n, un = (size_t)n;
    ecr_status st = RESERVE(w->x, w->cap_x, nd, "infonce");
    if (!st) st = RESERVE(w->dx, w->cap_dx, nd, "infonce");
    if (!st) st = RESERVE(w->G, w->cap_g, nn, "infonce");
    if (!st) st = RESERVE(w->rnorm, w->cap_r, un, "infonce");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "infonce");
    if (!st) st = RESERVE(w->loss_i, w->cap_l, un, "infonce");
    if (!st) st = RESERVE(w->n_pos, w->cap_p, un, "infonce");
    return st;
}

/* Row i of the InfoNCE forward: fills G[i, :] (before the 1/|A| of the mean) and loss_i. */
static void infonce_row(ecr_infonce *w, const int32_t *group, int i) {
    int n = w->n, d = w->d;
    double *g = w->G + (size_t)i * n;
    const double *xi = w->x + (size_t)i * d;
    int m = w->n_pos[i];
    if (m == 0) {
        memset(g, 0, (size_t)n * sizeof *g);
        w->loss_i[i] = 0;
        return;
    }
    /* s_ik into g (k != i); the diagonal is excluded from the softmax */
    double mx = -INFINITY;
    for (int k = 0; k < n; k++) {
        if (k == i) continue;
        const double *xk = w->x + (size_t)k * d;
        double s = 0;
        for (int j = 0; j < d; j++) s += xi[j] * xk[j];
        g[k] = s / w->tau;
        if (g[k] > mx || g[k] != g[k]) mx = g[k];
    }
    double sum = 0, pos = 0;
    for (int k = 0; k < n; k++)
        if (k != i) sum += exp(g[k] - mx);
    double lse = mx + log(sum);
    for (int k = 0; k < n; k++) {
        if (k == i) { g[k] = 0; continue; }
        int is_pos = group[k] == group[i];
        if (is_pos) pos += g[k];
        g[k] = exp(g[k] - lse) - (is_pos ? 1.0 / m : 0.0);
    }
    w->loss_i[i] = lse - pos / m;
}

ecr_status ecr_infonce_forward(ecr_infonce *w, const float *h, const int32_t *group, int n, int d,
                               float tau, double *loss, int *n_anchor) {
    *loss = 0;
    if (n_anchor) *n_anchor = 0;
    if (n < 0 || d < 1 || !(tau > 0))
        return ecr_fail(ECR_E_INVALID, "infonce: n=%d d=%d tau=%g out of range", n, d, (double)tau);
    ecr_status st = infonce_reserve(w, n, d);
    if (st) return st;
    w->n = n, w->d = d, w->tau = tau, w->n_anchor = 0;
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *xi = w->x + (size_t)i * d;
        for (int j = 0; j < d; j++) xi[j] = h[(size_t)i * d + j];
        w->clamped[i] = (unsigned char)normalize_row(xi, d, xi, &w->rnorm[i]);
        int m = 0;
        for (int k = 0; group[i] >= 0 && k < n; k++) m += k != i && group[k] == group[i];
        w->n_pos[i] = m;
    }
    for (int i = 0; i < n; i++) w->n_anchor += w->n_pos[i] > 0;
    ECR_OMP(parallel for schedule(dynamic, 4))
    for (int i = 0; i < n; i++) infonce_row(w, group, i);
    if (w->n_anchor == 0) return ECR_OK;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += w->loss_i[i];
    *loss = sum / w->n_anchor;
    if (n_anchor) *n_anchor = w->n_anchor;
    return ECR_OK;
}

void ecr_infonce_backward(ecr_infonce *w, float scale, float *dh) {
    int n = w->n, d = w->d;
    if (w->n_anchor == 0) return;
    /* dL/dx_i = (1 / (|A| tau)) sum_k (G_ik + G_ki) x_k */
    double c = 1.0 / ((double)w->n_anchor * w->tau);
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *dxi = w->dx + (size_t)i * d;
        memset(dxi, 0, (size_t)d * sizeof *dxi);
        for (int k = 0; k < n; k++) {
            double gk = (w->G[(size_t)i * n + k] + w->G[(size_t)k * n + i]) * c;
            if (gk == 0) continue;
            const double *xk = w->x + (size_t)k * d;
            for (int j = 0; j < d; j++) dxi[j] += gk * xk[j];
        }
        normalize_backward(w->x + (size_t)i * d, dxi, w->rnorm[i], w->clamped[i], d, dxi);
        for (int j = 0; j < d; j++) dh[(size_t)i * d + j] += (float)(scale * dxi[j]);
    }
}

/* ==== ECR ======================================================================================== */

struct ecr_reg {
    int K, D;
    double tau;
    const float *A;           /* [K, D] borrowed                                          */
    double *Pi;               /* [K, K] row-softmax(A A^T / tau), or NULL (K too large)   */
    /* the last forward */
    int n, d, n_used;
    double *u;                /* [n, D] normalised projections                           */
    double *rz;               /* [n] 1 / max(||z_i||, eps)                               */
    unsigned char *clamped;   /* [n]                                                      */
    unsigned char *used;      /* [n] code >= 0                                            */
    double *g;                /* [n, K] q_i - pi_i (the targets during the forward)       */
    double *lg;               /* [n, K] logits A u_i / tau                                */
    double *kl;               /* [n]                                                      */
    double *dz;               /* [n, D] backward scratch                                  */
    double *acc;              /* [max(n, D) * d] backward scratch                         */
    size_t cap_u, cap_rz, cap_c, cap_used, cap_g, cap_lg, cap_kl, cap_dz, cap_acc;
};

/* Pi[c, :] computed from the anchors: softmax_k(<a_c, a_k> / tau). */
static void pi_row_compute(const ecr_reg *w, int c, double *out) {
    const float *ac = w->A + (size_t)c * w->D;
    for (int k = 0; k < w->K; k++) {
        const float *ak = w->A + (size_t)k * w->D;
        double s = 0;
        for (int j = 0; j < w->D; j++) s += (double)ac[j] * ak[j];
        out[k] = s / w->tau;
    }
    double lse = log_sum_exp(out, w->K);
    for (int k = 0; k < w->K; k++) out[k] = exp(out[k] - lse);
}

void ecr_reg_target_row(const ecr_reg *w, int c, double *out) {
    if (w->Pi) memcpy(out, w->Pi + (size_t)c * w->K, (size_t)w->K * sizeof *out);
    else pi_row_compute(w, c, out);
}

ecr_status ecr_reg_create(const float *anchors, int K, int D, float tau, ecr_reg **out) {
    *out = NULL;
    if (!anchors || K < 1 || D < 1 || !(tau > 0) || !isfinite(tau))
        return ecr_fail(ECR_E_INVALID, "ecr: K=%d D=%d tau=%g out of range", K, D, (double)tau);
    ecr_reg *w = calloc(1, sizeof *w);
    if (!w) return ecr_fail(ECR_E_NOMEM, "ecr: out of memory");
    w->K = K, w->D = D, w->tau = tau, w->A = anchors;
    if (K <= ECR_REG_CACHE_K) {
        w->Pi = malloc((size_t)K * K * sizeof *w->Pi);
        if (!w->Pi) {
            free(w);
            return ecr_fail(ECR_E_NOMEM, "ecr: out of memory for the %d x %d target matrix", K, K);
        }
        ECR_OMP(parallel for schedule(static))
        for (int c = 0; c < K; c++) pi_row_compute(w, c, w->Pi + (size_t)c * K);
    }
    *out = w;
    return ECR_OK;
}

void ecr_reg_free(ecr_reg *w) {
    if (!w) return;
    free(w->Pi);
    free(w->u);
    free(w->rz);
    free(w->clamped);
    free(w->used);
    free(w->g);
    free(w->lg);
    free(w->kl);
    free(w->dz);
    free(w->acc);
    free(w);
}

static ecr_status reg_reserve(ecr_reg *w, int n, int d) {
    size_t un = (size_t)n, nD = un * w->D, nK = un * w->K;
    size_t acc = (un > (size_t)w->D ? un : (size_t)w->D) * (size_t)d;
    ecr_status st = RESERVE(w->u, w->cap_u, nD, "ecr");
    if (!st) st = RESERVE(w->dz, w->cap_dz, nD, "ecr");
    if (!st) st = RESERVE(w->g, w->cap_g, nK, "ecr");
    if (!st) st = RESERVE(w->lg, w->cap_lg, nK, "ecr");
    if (!st) st = RESERVE(w->acc, w->cap_acc, acc, "ecr");
    if (!st) st = RESERVE(w->rz, w->cap_rz, un, "ecr");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "ecr");
    if (!st) st = RESERVE(w->used, w->cap_used, un, "ecr");
    if (!st) st = RESERVE(w->kl, w->cap_kl, un, "ecr");
    return st;
}

/* One text of the forward: u_i, the logits, q_i - pi_i into g and KL_i; pi_i is in g on
 * entry. */
static void reg_row(ecr_reg *w, const float *P, const float *hi, int i) {
    int K = w->K, D = w->D, d = w->d;
    double *u = w->u + (size_t)i * D, *g = w->g + (size_t)i * K, *l = w->lg + (size_t)i * K;
    for (int a = 0; a < D; a++) { /* z = P h   [D] */
        const float *pa = P + (size_t)a * d;
        double s = 0;
        for (int b = 0; b < d; b++) s += (double)pa[b] * hi[b];
        u[a] = s;
    }
    w->clamped[i] = (unsigned char)normalize_row(u, D, u, &w->rz[i]);
    for (int k = 0; k < K; k++) { /* l = A u / tau   [K] */
        const float *ak = w->A + (size_t)k * D;
        double s = 0;
        for (int a = 0; a < D; a++) s += (double)ak[a] * u[a];
        l[k] = s / w->tau;
    }
    double lse = log_sum_exp(l, K), kl = 0;
    for (int k = 0; k < K; k++) {
        double pi = g[k], logq = l[k] - lse;
        if (pi > 0) kl += pi * (log(pi) - logq);
        g[k] = exp(logq) - pi;
    }
    w->kl[i] = kl;
}

ecr_status ecr_reg_forward(ecr_reg *w, const float *P, const float *h, int n, int d,
                           const int32_t *code, const uint16_t *soft_idx, const float *soft_sim,
                           int M, double *loss, int *n_used) {
    *loss = 0;
    if (n_used) *n_used = 0;
    if (n < 0 || d < 1 || (soft_idx && (M < 1 || !soft_sim)))
        return ecr_fail(ECR_E_INVALID, "ecr: n=%d d=%d M=%d out of range", n, d, M);
    for (int i = 0; i < n; i++) {
        if (code[i] >= w->K)
            return ecr_fail(ECR_E_INVALID, "ecr: text %d: code %d is not below K = %d", i, code[i], w->K);
        for (int j = 0; soft_idx && code[i] >= 0 && j < M; j++)
            if (soft_idx[(size_t)i * M + j] >= w->K)
                return ecr_fail(ECR_E_INVALID, "ecr: text %d: soft index %d is not below K = %d", i,
                                soft_idx[(size_t)i * M + j], w->K);
    }
    ecr_status st = reg_reserve(w, n, d);
    if (st) return st;
    w->n = n, w->d = d, w->n_used = 0;
    for (int i = 0; i < n; i++) {
        w->used[i] = code[i] >= 0;
        w->n_used += w->used[i];
    }
    ECR_OMP(parallel for schedule(dynamic, 4))
    for (int i = 0; i < n; i++) {
        double *g = w->g + (size_t)i * w->K;
        w->kl[i] = 0;
        if (!w->used[i]) {
            memset(g, 0, (size_t)w->K * sizeof *g);
            continue;
        }
        if (soft_idx) { /* pi = softmax(sim / tau) on the M indices */
            const uint16_t *ix = soft_idx + (size_t)i * M;
            const float *sm = soft_sim + (size_t)i * M;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < M; j++)
                if (sm[j] / w->tau > mx) mx = sm[j] / w->tau;
            for (int j = 0; j < M; j++) sum += exp(sm[j] / w->tau - mx);
            memset(g, 0, (size_t)w->K * sizeof *g);
            for (int j = 0; j < M; j++) g[ix[j]] += exp(sm[j] / w->tau - mx) / sum;
        } else {
            ecr_reg_target_row(w, code[i], g);
        }
        reg_row(w, P, h + (size_t)i * d, i);
    }
    if (w->n_used == 0) return ECR_OK;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += w->kl[i];
    *loss = sum / w->n_used;
    if (n_used) *n_used = w->n_used;
    return ECR_OK;
}

void ecr_reg_backward(ecr_reg *w, const float *P, const float *h, float scale, float *dP, float *dh) {
    int n = w->n, d = w->d, K = w->K, D = w->D;
    if (w->n_used == 0) return;
    double c = (double)scale / w->n_used;
    /* dz_i = c * normalize'(du_i),  du_i = A^T g_i / tau; dh_i += P^T dz_i */
    ECR_OMP(parallel for schedule(dynamic, 4))
    for (int i = 0; i < n; i++) {
        double *dz = w->dz + (size_t)i * D;
        memset(dz, 0, (size_t)D * sizeof *dz);
        if (!w->used[i]) continue;
        const double *g = w->g + (size_t)i * K;
        for (int k = 0; k < K; k++) {
            double gk = g[k] * c / w->tau;
            const float *ak = w->A + (size_t)k * D;
            for (int a = 0; a < D; a++) dz[a] += gk * ak[a];
        }
        normalize_backward(w->u + (size_t)i * D, dz, w->rz[i], w->clamped[i], D, dz);
        if (!dh) continue;
        double *acc = w->acc + (size_t)i * d;
        memset(acc, 0, (size_t)d * sizeof *acc);
        for (int a = 0; a < D; a++) {
            const float *pa = P + (size_t)a * d;
            for (int b = 0; b < d; b++) acc[b] += dz[a] * pa[b];
        }
        for (int b = 0; b < d; b++) dh[(size_t)i * d + b] += (float)acc[b];
    }
    if (!dP) return;
    /* dP[a, :] += sum_i dz_i[a] h_i  (texts in order) */
    ECR_OMP(parallel for schedule(static))
    for (int a = 0; a < D; a++) {
        double *acc = w->acc + (size_t)a * d;
        memset(acc, 0, (size_t)d * sizeof *acc);
        for (int i = 0; i < n; i++) {
            double z = w->dz[(size_t)i * D + a];
            if (z == 0) continue;
            const float *hi = h + (size_t)i * d;
            for (int b = 0; b < d; b++) acc[b] += z * hi[b];
        }
        for (int b = 0; b < d; b++) dP[(size_t)a * d + b] += (float)acc[b];
    }
}

/* ==== the step objective ========================================================================= */

struct ecr_objective {
    ecr_objective_opts o;
    ecr_infonce *nce;         /* NULL when the InfoNCE term is off                  */
    ecr_reg *reg;             /* NULL when the ECR term is off                      */
    size_t proj_off;          /* offset of ecr.proj.weight in the parameter block   */
    int d, M;
    /* per-step arrays, [cap] texts */
    int n, ready;
    int32_t *group, *code;
    unsigned char *has_tokens;
    uint16_t *soft_idx;       /* [cap, M] */
    float *soft_sim;          /* [cap, M] */
    float *dpooled;           /* [cap, d] */
    const float *pooled;      /* the last forward's h (borrowed from the model) */
    size_t cap_g, cap_c, cap_t, cap_si, cap_ss, cap_dp;
};

void ecr_objective_free(ecr_objective *ob) {
    if (!ob) return;
    ecr_infonce_free(ob->nce);
    ecr_reg_free(ob->reg);
    free(ob->group);
    free(ob->code);
    free(ob->has_tokens);
    free(ob->soft_idx);
    free(ob->soft_sim);
    free(ob->dpooled);
    free(ob);
}

ecr_status ecr_objective_create(const ecr_objective_opts *o, const ecr_model *m,
                                ecr_objective **out) {
    *out = NULL;
    const ecr_config *cfg = ecr_model_config(m);
    if (o->contrastive_weight < 0 || !isfinite(o->contrastive_weight) ||
        (o->contrastive_weight > 0 && !(o->contrastive_tau > 0)))
        return ecr_fail(ECR_E_INVALID, "objective: contrastive weight %g / temperature %g out of range",
                        (double)o->contrastive_weight, (double)o->contrastive_tau);
    const ecr_anchors *an = o->anchors;
    const ecr_param_info *proj = ecr_model_find_tensor(m, "ecr.proj.weight");
    if (an) {
        if (o->ecr_weight < 0 || !isfinite(o->ecr_weight) || !(o->ecr_tau > 0) || !isfinite(o->ecr_tau))
            return ecr_fail(ECR_E_INVALID, "objective: ECR weight %g / temperature %g out of range",
                            (double)o->ecr_weight, (double)o->ecr_tau);
        if (!proj || proj->shape[0] != an->dim || proj->shape[1] != cfg->dim)
            return ecr_fail(ECR_E_INVALID, "objective: the model's ECR projection is [%d, %d], the anchors "
                            "need [%d, %d] (ecr_dim = the anchors' dim)", cfg->ecr_dim, cfg->dim,
                            an->dim, cfg->dim);
        if (o->ecr_soft && (an->soft < 1 || !an->soft_idx || !an->soft_sim))
            return ecr_fail(ECR_E_INVALID, "%s: no soft codes in the anchors (make them with "
                            "ecr anchors --soft M)", an->source && an->source[0] ? an->source : "anchors");
    }
    ecr_objective *ob = calloc(1, sizeof *ob);
    if (!ob) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ob->o = *o;
    ob->d = cfg->dim;
    ob->M = an && o->ecr_soft ? an->soft : 0;
    ecr_status st = ECR_OK;
    if (o->contrastive_weight > 0) st = ecr_infonce_create(&ob->nce);
    if (!st && an) {
        ob->proj_off = proj->offset;
        st = ecr_reg_create(an->anchors, an->k, an->dim, o->ecr_tau, &ob->reg);
    }
    if (st) {
        ecr_objective_free(ob);
        return st;
    }
    *out = ob;
    return ECR_OK;
}

static ecr_status objective_reserve(ecr_objective *ob, int n) {
    size_t un = (size_t)n, M = (size_t)(ob->M > 0 ? ob->M : 1);
    ecr_status st = RESERVE(ob->group, ob->cap_g, un, "objective");
    if (!st) st = RESERVE(ob->code, ob->cap_c, un, "objective");
    if (!st) st = RESERVE(ob->has_tokens, ob->cap_t, un, "objective");
    if (!st) st = RESERVE(ob->soft_idx, ob->cap_si, un * M, "objective");
    if (!st) st = RESERVE(ob->soft_sim, ob->cap_ss, un * M, "objective");
    if (!st) st = RESERVE(ob->dpooled, ob->cap_dp, un * (size_t)ob->d, "objective");
    return st;
}

/* Per batch text: has_tokens (a slot with pos >= 1, i.e. a non-zero pooled row), group,
 * code and soft code rows, from the data and the anchors by text_id. */
static ecr_status gather_texts(ecr_objective *ob, const ecr_batch *b, const ecr_data *d) {
    int n = b->n_texts;
    memset(ob->has_tokens, 0, (size_t)n);
    for (size_t s = 0; s < (size_t)b->B * b->T; s++)
        if (b->text[s] >= 0 && b->pos[s] >= 1) ob->has_tokens[b->text[s]] = 1;
    const ecr_anchors *an = ob->o.anchors;
    for (int i = 0; i < n; i++) {
        int64_t id = b->text_id[i];
        if (ob->nce && (id < 0 || (size_t)id >= d->n_texts))
            return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the data (%zu texts)",
                            i, (long long)id, d->n_texts);
        if (an && (id < 0 || id >= an->rows))
            return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the anchors' codes "
                            "(%lld rows)", i, (long long)id, (long long)an->rows);
        ob->group[i] = ob->nce && ob->has_tokens[i] ? d->group[id] : -1;
        ob->code[i] = an && ob->has_tokens[i] ? an->codes[id] : -1;
        if (ob->M > 0) {
            memcpy(ob->soft_idx + (size_t)i * ob->M, an->soft_idx + (size_t)id * ob->M,
                   (size_t)ob->M * sizeof *ob->soft_idx);
            memcpy(ob->soft_sim + (size_t)i * ob->M, an->soft_sim + (size_t)id * ob->M,
                   (size_t)ob->M * sizeof *ob->soft_sim);
        }
    }
    return ECR_OK;
}

ecr_status ecr_objective_forward(ecr_objective *ob, ecr_model *m, const ecr_batch *b,
                                 const ecr_data *d, ecr_objective_terms *t) {
    memset(t, 0, sizeof *t);
    ob->ready = 0;
    ecr_forward_out fo;
    ecr_status st = ecr_model_forward(m, b, &fo);
    if (st) return st;
    t->n_targets = fo.n_targets;
    t->lm = fo.n_targets ? fo.loss_sum / (double)fo.n_targets : 0.0;
    t->total = t->lm;
    int n = b->n_texts;
    ob->n = n;
    ob->pooled = fo.pooled;
    if (!ob->nce && !ob->reg) {
        ob->ready = 1;
        return ECR_OK;
    }
    if ((st = objective_reserve(ob, n)) || (st = gather_texts(ob, b, d))) return st;
    if (ob->nce) {
        st = ecr_infonce_forward(ob->nce, fo.pooled, ob->group, n, ob->d, ob->o.contrastive_tau,
                                 &t->contrastive, &t->n_contrastive);
        if (st) return st;
        t->total += ob->o.contrastive_weight * t->contrastive;
    }
    if (ob->reg) {
        const float *P = ecr_model_params(m) + ob->proj_off;
        st = ecr_reg_forward(ob->reg, P, fo.pooled, n, ob->d, ob->code, ob->M ? ob->soft_idx : NULL,
                             ob->soft_sim, ob->M, &t->ecr, &t->n_ecr);
        if (st) return st;
        t->total += ob->o.ecr_weight * t->ecr;
    }
    ob->ready = 1;
    return ECR_OK;
}

ecr_status ecr_objective_backward(ecr_objective *ob, ecr_model *m, const ecr_batch *b) {
    if (!ob->ready || b->n_texts != ob->n)
        return ecr_fail(ECR_E_INVALID, "objective: backward needs the forward of the same batch");
    ob->ready = 0;
    if (!ob->nce && !ob->reg) return ecr_model_backward(m, b, 1.0f, NULL, NULL);
    float *dp = ob->dpooled;
    memset(dp, 0, (size_t)ob->n * ob->d * sizeof *dp);
    if (ob->nce) ecr_infonce_backward(ob->nce, ob->o.contrastive_weight, dp);
    if (ob->reg) {
        float *P = ecr_model_params(m) + ob->proj_off, *dP = ecr_model_grads(m) + ob->proj_off;
        ecr_reg_backward(ob->reg, P, ob->pooled, ob->o.ecr_weight, dP, dp);
    }
    return ecr_model_backward(m, b, 1.0f, dp, NULL);
}
