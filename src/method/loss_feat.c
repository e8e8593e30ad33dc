/* loss_feat.c — feature matching 1 - cos(P h, t) (the feat baseline), forward beside
 * backward (contract in losses.h). */
#include "loss_common.h"
#include "term.h"


struct ecr_feat {
    int n, d, D, n_used;
    double *u, *rz;           /* [n, D], [n]                                            */
    double *tt;               /* [n, D] normalised teacher rows                         */
    double *du;               /* [n, D] backward scratch                                */
    double *acc;              /* [max(n, D), d]                                         */
    unsigned char *clamped, *used;
    size_t cap_u, cap_r, cap_t, cap_du, cap_acc, cap_c, cap_used;
};

ecr_status ecr_feat_create(ecr_feat **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "feat: out of memory");
}

void ecr_feat_free(ecr_feat *w) {
    if (!w) return;
    free(w->u);
    free(w->rz);
    free(w->tt);
    free(w->du);
    free(w->acc);
    free(w->clamped);
    free(w->used);
    free(w);
}

ecr_status ecr_feat_forward(ecr_feat *w, const float *P, const float *h, const float *t,
                            const unsigned char *used, int n, int d, int D, double *loss, int *n_used) {
    *loss = 0;
    if (n_used) *n_used = 0;
    if (n < 0 || d < 1 || D < 1) return ecr_fail(ECR_E_INVALID, "feat: n=%d d=%d D=%d out of range", n, d, D);
    size_t un = (size_t)n, nD = un * D, acc = (un > (size_t)D ? un : (size_t)D) * (size_t)d;
    ecr_status st = RESERVE(w->u, w->cap_u, nD, "feat");
    if (!st) st = RESERVE(w->tt, w->cap_t, nD, "feat");
    if (!st) st = RESERVE(w->du, w->cap_du, nD, "feat");
    if (!st) st = RESERVE(w->acc, w->cap_acc, acc, "feat");
    if (!st) st = RESERVE(w->rz, w->cap_r, un, "feat");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "feat");
    if (!st) st = RESERVE(w->used, w->cap_used, un, "feat");
    if (st) return st;
    w->n = n, w->d = d, w->D = D, w->n_used = 0;
    for (int i = 0; i < n; i++) {
        w->used[i] = used ? used[i] != 0 : 1;
        w->n_used += w->used[i];
    }
    ecr_loss_project_rows(P, h, w->used, n, d, D, w->u, w->rz, w->clamped);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double *ti = w->tt + (size_t)i * D, r;
        if (!w->used[i]) {
            memset(ti, 0, (size_t)D * sizeof *ti);
            continue;
        }
        for (int a = 0; a < D; a++) ti[a] = t[(size_t)i * D + a];
        normalize_row(ti, D, ti, &r);
        const double *ui = w->u + (size_t)i * D;
        double c = 0;
        for (int a = 0; a < D; a++) c += ui[a] * ti[a];
        sum += 1.0 - c;
    }
    if (w->n_used == 0) return ECR_OK;
    *loss = sum / w->n_used;
    if (n_used) *n_used = w->n_used;
    return ECR_OK;
}

void ecr_feat_backward(ecr_feat *w, const float *P, const float *h, float scale, float *dP, float *dh) {
    if (w->n_used == 0) return;
    size_t nD = (size_t)w->n * w->D;
    double c = -(double)scale / w->n_used;
    for (size_t k = 0; k < nD; k++) w->du[k] = c * w->tt[k];
    ecr_loss_project_backward(P, h, w->used, w->n, w->d, w->D, w->u, w->rz, w->clamped, w->du, w->acc, dP, dh);
}

/* ---- the term (term.h): on with teacher vectors; the texts' rows of them ------------------- */

typedef struct feat_term {
    ecr_feat *w;
    float *t;                 /* [n, feat_dim] the step's teacher rows                    */
    size_t cap_t;
} feat_term;

static int feat_on(const ecr_objective_opts *o) { return o->feat_emb != NULL; }
static float feat_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->feat_weight; }

static ecr_status feat_check(const ecr_objective_opts *o, const ecr_model *m) {
    if (ecr_term_bad_weight(o->feat_weight) || o->feat_rows < 0)
        return ecr_fail(ECR_E_INVALID, "objective: feat weight %g out of range", (double)o->feat_weight);
    return ecr_term_check_proj(m, o->feat_dim, "the feat teacher vectors");
}

static void feat_destroy(void *state) {
    feat_term *s = state;
    if (!s) return;
    ecr_feat_free(s->w);
    free(s->t);
    free(s);
}

static ecr_status feat_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)o, (void)m;
    feat_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ecr_status st = ecr_feat_create(&s->w);
    if (st) feat_destroy(s), s = NULL;
    *out = s;
    return st;
}

static ecr_status feat_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    feat_term *s = state;
    const ecr_objective_opts *o = x->o;
    ecr_status st = ecr_term_gather_rows(o->feat_emb, o->feat_rows, o->feat_dim, x, "feat", &s->t, &s->cap_t);
    if (st) return st;
    return ecr_feat_forward(s->w, x->P, x->h, s->t, x->has_tokens, x->n, x->d, o->feat_dim, &t->feat, &t->n_feat);
}

static void feat_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    ecr_feat_backward(((feat_term *)state)->w, x->P, x->h, scale, dP, dh);
}

const ecr_term_ops ecr_term_ops_feat = {
    offsetof(ecr_objective_terms, feat), 0, feat_on, feat_weight, feat_check, feat_create, feat_destroy,
    feat_forward, feat_backward, NULL, 0,
};
