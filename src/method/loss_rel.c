/* loss_rel.c — relational consistency, a codes-only variant of ECR: the students' in-batch
 * similarities matched to the similarities of the anchors of their codes, forward beside
 * backward (contract in losses.h), and its term (term.h). */
#include "loss_common.h"
#include "term.h"


struct ecr_rel {
    int n, d, D, m;
    int on_h;                 /* rows are normalize(h_i) (P was NULL)                       */
    double *x, *rz;           /* [n, D] student rows (zero when unused), [n] 1 / norms      */
    unsigned char *clamped, *used;
    double *tt;               /* [n, Dt] normalised target rows                             */
    double *E;                /* [n, n] s_ij - S_ij on used pairs i != j, else 0            */
    double *dx;               /* [n, D] backward                                            */
    double *acc;              /* [max(n, D), d]                                             */
    size_t cap_x, cap_r, cap_c, cap_u, cap_t, cap_e, cap_dx, cap_acc;
};

ecr_status ecr_rel_create(ecr_rel **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "rel: out of memory");
}

void ecr_rel_free(ecr_rel *w) {
    if (!w) return;
    free(w->x);
    free(w->rz);
    free(w->clamped);
    free(w->used);
    free(w->tt);
    free(w->E);
    free(w->dx);
    free(w->acc);
    free(w);
}

ecr_status ecr_rel_forward(ecr_rel *w, const float *P, const float *h, const float *t,
                           const unsigned char *used, int n, int d, int D, int Dt, double *loss,
                           int *n_used) {
    *loss = 0;
    if (n_used) *n_used = 0;
    if (n < 0 || d < 1 || D < 1 || Dt < 1 || (!P && D != d))
        return ecr_fail(ECR_E_INVALID, "rel: n=%d d=%d D=%d Dt=%d out of range%s", n, d, D, Dt,
                        P ? "" : " (on h, D must be d)");
    size_t un = (size_t)n, acc = (un > (size_t)D ? un : (size_t)D) * (size_t)d;
    ecr_status st = RESERVE(w->x, w->cap_x, un * D, "rel");
    if (!st) st = RESERVE(w->dx, w->cap_dx, un * D, "rel");
    if (!st) st = RESERVE(w->tt, w->cap_t, un * Dt, "rel");
    if (!st) st = RESERVE(w->E, w->cap_e, un * un, "rel");
    if (!st) st = RESERVE(w->acc, w->cap_acc, acc, "rel");
    if (!st) st = RESERVE(w->rz, w->cap_r, un, "rel");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "rel");
    if (!st) st = RESERVE(w->used, w->cap_u, un, "rel");
    if (st) return st;
    w->n = n, w->d = d, w->D = D, w->m = 0, w->on_h = !P;
    for (int i = 0; i < n; i++) {
        w->used[i] = used ? used[i] != 0 : 1;
        w->m += w->used[i];
    }
    ecr_loss_project_rows(P, h, w->used, n, d, D, w->x, w->rz, w->clamped); /* P NULL: rows of h */
    for (int i = 0; i < n; i++) {
        double *ti = w->tt + (size_t)i * Dt, r;
        for (int a = 0; a < Dt; a++) ti[a] = w->used[i] ? t[(size_t)i * Dt + a] : 0.0;
        if (w->used[i]) normalize_row(ti, Dt, ti, &r);
    }
    /* E_ij = <x_i, x_j> - <t^_i, t^_j>, one row per thread */
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *e = w->E + (size_t)i * n;
        for (int j = 0; j < n; j++) {
            e[j] = 0;
            if (j == i || !w->used[i] || !w->used[j]) continue;
            const double *xi = w->x + (size_t)i * D, *xj = w->x + (size_t)j * D;
            const double *ti = w->tt + (size_t)i * Dt, *tj = w->tt + (size_t)j * Dt;
            double s = 0, S = 0;
            for (int a = 0; a < D; a++) s += xi[a] * xj[a];
            for (int a = 0; a < Dt; a++) S += ti[a] * tj[a];
            e[j] = s - S;
        }
    }
    if (n_used) *n_used = w->m;
    if (w->m < 2) return ECR_OK;
    double sum = 0;
    for (size_t k = 0; k < un * un; k++) sum += w->E[k] * w->E[k];
    *loss = sum / ((double)w->m * (w->m - 1));
    return ECR_OK;
}

void ecr_rel_backward(ecr_rel *w, const float *P, const float *h, float scale, float *dP, float *dh) {
    int n = w->n, d = w->d, D = w->D;
    if (w->m < 2) return;
    /* dL/dx_i = 4 / (m (m - 1)) sum_j E_ij x_j (E is symmetric) */
    double c = 4.0 * (double)scale / ((double)w->m * (w->m - 1));
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *dxi = w->dx + (size_t)i * D;
        memset(dxi, 0, (size_t)D * sizeof *dxi);
        for (int j = 0; j < n; j++) {
            double e = w->E[(size_t)i * n + j] * c;
            if (e == 0) continue;
            const double *xj = w->x + (size_t)j * D;
            for (int a = 0; a < D; a++) dxi[a] += e * xj[a];
        }
    }
    ecr_loss_project_backward(w->on_h ? NULL : P, h, w->used, n, d, D, w->x, w->rz, w->clamped, w->dx, w->acc, dP, dh);
}

/* ---- the term (term.h): on with a weight beside ECR (terms.c: it needs "ecr"); targets the
 *      anchors of the codes ------------------------------------------------------------------ */

typedef struct rel_term {
    ecr_rel *w;
    float *t;                 /* [n, anchors' dim] the anchor row of each text's code       */
    unsigned char *used;      /* [n] has tokens                                             */
    size_t cap_t, cap_u;
} rel_term;

static int rel_on(const ecr_objective_opts *o) {
    return o->train && o->train->rel_weight != 0 && o->anchors != NULL;
}
static float rel_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->train->rel_weight; }

static ecr_status rel_check(const ecr_objective_opts *o, const ecr_model *m) {
    if (ecr_term_bad_weight(o->train->rel_weight))
        return ecr_fail(ECR_E_INVALID, "objective: rel weight %g out of range", (double)o->train->rel_weight);
    return o->train->rel_on_h ? ECR_OK : ecr_term_check_proj(m, o->anchors->dim, "the anchors");
}

static void rel_destroy(void *state) {
    rel_term *s = state;
    if (!s) return;
    ecr_rel_free(s->w);
    free(s->t);
    free(s->used);
    free(s);
}

static ecr_status rel_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)o, (void)m;
    rel_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ecr_status st = ecr_rel_create(&s->w);
    if (st) rel_destroy(s), s = NULL;
    *out = s;
    return st;
}

static ecr_status rel_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    rel_term *s = state;
    const ecr_anchors *an = x->o->anchors;
    int D = an->dim, on_h = x->o->train->rel_on_h;
    ecr_status st = RESERVE(s->t, s->cap_t, (size_t)x->n * D, "objective");
    if (!st) st = RESERVE(s->used, s->cap_u, (size_t)x->n, "objective");
    for (int i = 0; !st && i < x->n; i++) {
        int32_t c = 0;
        if ((st = ecr_term_code(an, x, i, &c))) return st;
        s->used[i] = c >= 0;
        memcpy(s->t + (size_t)i * D, an->anchors + (size_t)(c >= 0 ? c : 0) * D, (size_t)D * sizeof *s->t);
    }
    if (st) return st;
    return ecr_rel_forward(s->w, on_h ? NULL : x->P, x->h, s->t, s->used, x->n, x->d, on_h ? x->d : D, D, &t->rel,
                           &t->n_rel);
}

static void rel_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    ecr_rel_backward(((rel_term *)state)->w, x->P, x->h, scale, dP, dh);
}

const ecr_term_ops ecr_term_ops_rel = {
    offsetof(ecr_objective_terms, rel), 0, rel_on, rel_weight, rel_check, rel_create, rel_destroy, rel_forward,
    rel_backward, NULL, 0,
};
