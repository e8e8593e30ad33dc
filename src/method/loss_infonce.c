/* loss_infonce.c — the symmetric multi-positive in-batch InfoNCE of the teacher objective,
 * forward beside backward (contract in losses.h). */
#include "loss_common.h"
#include "term.h"


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

/* The forward on float rows h or double rows hd (the other NULL), see losses.h. */
static ecr_status infonce_forward(ecr_infonce *w, const float *h, const double *hd, const int32_t *group, int n,
                                  int d, float tau, double *loss, int *n_anchor) {
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
        for (int j = 0; j < d; j++) xi[j] = h ? h[(size_t)i * d + j] : hd[(size_t)i * d + j];
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

ecr_status ecr_infonce_forward(ecr_infonce *w, const float *h, const int32_t *group, int n, int d,
                               float tau, double *loss, int *n_anchor) {
    return infonce_forward(w, h, NULL, group, n, d, tau, loss, n_anchor);
}

ecr_status ecr_infonce_forward_d(ecr_infonce *w, const double *h, const int32_t *group, int n, int d,
                                 float tau, double *loss, int *n_anchor) {
    return infonce_forward(w, NULL, h, group, n, d, tau, loss, n_anchor);
}

/* dL/dh of the last forward, unscaled, into w->dx; 0 when no text had a positive. */
static int infonce_grad(ecr_infonce *w) {
    int n = w->n, d = w->d;
    if (w->n_anchor == 0) return 0;
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
    }
    return 1;
}

void ecr_infonce_backward(ecr_infonce *w, float scale, float *dh) {
    if (!infonce_grad(w)) return;
    size_t nd = (size_t)w->n * w->d;
    for (size_t k = 0; k < nd; k++) dh[k] += (float)(scale * w->dx[k]);
}

void ecr_infonce_backward_d(ecr_infonce *w, double scale, double *dh) {
    if (!infonce_grad(w)) return;
    size_t nd = (size_t)w->n * w->d;
    for (size_t k = 0; k < nd; k++) dh[k] += scale * w->dx[k];
}

/* ---- the term (term.h): on with a contrastive weight; groups from the data ------------------- */

typedef struct nce_term {
    ecr_infonce *w;
    int32_t *group;           /* [n] the text's group, -1 without tokens                 */
    size_t cap_g;
} nce_term;

static int nce_on(const ecr_objective_opts *o) { return o->contrastive_weight != 0; }
static float nce_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->contrastive_weight; }

static ecr_status nce_check(const ecr_objective_opts *o, const ecr_model *m) {
    (void)m;
    if (ecr_term_bad_weight(o->contrastive_weight) || !(o->contrastive_tau > 0))
        return ecr_fail(ECR_E_INVALID, "objective: contrastive weight %g / temperature %g out of range",
                        (double)o->contrastive_weight, (double)o->contrastive_tau);
    return ECR_OK;
}

static void nce_destroy(void *state) {
    nce_term *s = state;
    if (!s) return;
    ecr_infonce_free(s->w);
    free(s->group);
    free(s);
}

static ecr_status nce_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)o, (void)m;
    nce_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ecr_status st = ecr_infonce_create(&s->w);
    if (st) nce_destroy(s), s = NULL;
    *out = s;
    return st;
}

static ecr_status nce_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    nce_term *s = state;
    ecr_status st = RESERVE(s->group, s->cap_g, (size_t)x->n, "objective");
    for (int i = 0; !st && i < x->n; i++) {
        int64_t id = x->b->text_id[i];
        if (id < 0 || (size_t)id >= x->data->n_texts)
            return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the data (%zu texts)",
                            i, (long long)id, x->data->n_texts);
        s->group[i] = x->has_tokens[i] ? x->data->group[id] : -1;
    }
    if (st) return st;
    return ecr_infonce_forward(s->w, x->h, s->group, x->n, x->d, x->o->contrastive_tau, &t->contrastive,
                               &t->n_contrastive);
}

static void nce_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    (void)x, (void)dP;
    ecr_infonce_backward(((nce_term *)state)->w, scale, dh);
}

const ecr_term_ops ecr_term_ops_contrastive = {
    offsetof(ecr_objective_terms, contrastive), 0, nce_on, nce_weight, nce_check, nce_create, nce_destroy,
    nce_forward, nce_backward, NULL, 0,
};
