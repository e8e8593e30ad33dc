/* loss_con.c — code-contrastive, a codes-only variant of ECR: in-batch InfoNCE in which the
 * texts that share a code are positives, forward beside backward (contract in losses.h),
 * and its term (term.h). The InfoNCE (ecr_infonce) runs in double on the rows x: h, or
 * the projected u, with the rows of unused texts set to zero (negatives at cosine 0 that
 * receive no gradient); on u the gradient goes back through P. */
#include "loss_common.h"
#include "term.h"


struct ecr_con {
    ecr_infonce *nce;
    int n, d, D, on_h;
    int32_t *group;           /* [n] code, -1 when unused                                   */
    unsigned char *used;      /* [n]                                                        */
    double *u, *du;           /* [n, D] the rows x (zero when unused), and dL/dx            */
    double *rz;               /* [n] (space u)                                              */
    unsigned char *clamped;   /* [n]                                                        */
    double *acc;              /* [max(n, D), d]                                             */
    size_t cap_g, cap_used, cap_u, cap_r, cap_du, cap_c, cap_acc;
};

void ecr_con_free(ecr_con *w) {
    if (!w) return;
    ecr_infonce_free(w->nce);
    free(w->group);
    free(w->used);
    free(w->u);
    free(w->rz);
    free(w->du);
    free(w->clamped);
    free(w->acc);
    free(w);
}

ecr_status ecr_con_create(ecr_con **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return ecr_fail(ECR_E_NOMEM, "con: out of memory");
    ecr_status st = ecr_infonce_create(&(*out)->nce);
    if (st) ecr_con_free(*out), *out = NULL;
    return st;
}

ecr_status ecr_con_forward(ecr_con *w, const float *P, const float *h, const int32_t *code,
                           const unsigned char *used, int n, int d, int D, float tau, double *loss,
                           int *n_anchor) {
    *loss = 0;
    if (n_anchor) *n_anchor = 0;
    if (n < 0 || d < 1 || D < 1 || (!P && D != d))
        return ecr_fail(ECR_E_INVALID, "con: n=%d d=%d D=%d out of range%s", n, d, D,
                        P ? "" : " (on h, D must be d)");
    size_t un = (size_t)n, acc = (un > (size_t)D ? un : (size_t)D) * (size_t)d;
    ecr_status st = RESERVE(w->group, w->cap_g, un, "con");
    if (!st) st = RESERVE(w->used, w->cap_used, un, "con");
    if (!st) st = RESERVE(w->u, w->cap_u, un * D, "con");
    if (!st) st = RESERVE(w->du, w->cap_du, un * D, "con");
    if (!st && P) st = RESERVE(w->rz, w->cap_r, un, "con");
    if (!st && P) st = RESERVE(w->clamped, w->cap_c, un, "con");
    if (!st && P) st = RESERVE(w->acc, w->cap_acc, acc, "con");
    if (st) return st;
    w->n = n, w->d = d, w->D = D, w->on_h = !P;
    for (int i = 0; i < n; i++) {
        w->used[i] = used ? used[i] != 0 : 1;
        w->group[i] = w->used[i] ? code[i] : -1;
    }
    if (P) {
        ecr_loss_project_rows(P, h, w->used, n, d, D, w->u, w->rz, w->clamped);
    } else {
        for (size_t k = 0; k < un * d; k++) w->u[k] = w->used[k / (size_t)d] ? h[k] : 0.0;
    }
    return ecr_infonce_forward_d(w->nce, w->u, w->group, n, D, tau, loss, n_anchor);
}

void ecr_con_backward(ecr_con *w, const float *P, const float *h, float scale, float *dP, float *dh) {
    size_t nD = (size_t)w->n * w->D;
    memset(w->du, 0, nD * sizeof *w->du);
    ecr_infonce_backward_d(w->nce, scale, w->du);
    if (w->on_h) {
        for (size_t k = 0; k < nD; k++)
            if (w->used[k / (size_t)w->D]) dh[k] += (float)w->du[k];
        return;
    }
    ecr_loss_project_backward(P, h, w->used, w->n, w->d, w->D, w->u, w->rz, w->clamped, w->du, w->acc, dP, dh);
}

/* ---- the term (term.h): on with a weight and the anchors; the texts' codes ----------------- */

typedef struct con_term {
    ecr_con *w;
    int32_t *code;            /* [n] -1 without tokens                                      */
    size_t cap_c;
} con_term;

static int con_on(const ecr_objective_opts *o) { return o->train && o->train->con_weight != 0; }
static float con_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->train->con_weight; }

static ecr_status con_check(const ecr_objective_opts *o, const ecr_model *m) {
    const ecr_train_opts *tr = o->train;
    if (ecr_term_bad_weight(tr->con_weight) || !(tr->con_tau > 0) || !isfinite(tr->con_tau))
        return ecr_fail(ECR_E_INVALID, "objective: con weight %g / temperature %g out of range",
                        (double)tr->con_weight, (double)tr->con_tau);
    if (!o->anchors) return ecr_fail(ECR_E_INVALID, "objective: the con term needs the anchors (--anchors)");
    return tr->con_on_h ? ECR_OK : ecr_term_check_proj(m, o->anchors->dim, "the anchors");
}

static void con_destroy(void *state) {
    con_term *s = state;
    if (!s) return;
    ecr_con_free(s->w);
    free(s->code);
    free(s);
}

static ecr_status con_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)o, (void)m;
    con_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ecr_status st = ecr_con_create(&s->w);
    if (st) con_destroy(s), s = NULL;
    *out = s;
    return st;
}

static ecr_status con_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    con_term *s = state;
    const ecr_train_opts *tr = x->o->train;
    const ecr_anchors *an = x->o->anchors;
    ecr_status st = RESERVE(s->code, s->cap_c, (size_t)x->n, "objective");
    for (int i = 0; !st && i < x->n; i++) st = ecr_term_code(an, x, i, &s->code[i]);
    if (st) return st;
    int on_h = tr->con_on_h;
    return ecr_con_forward(s->w, on_h ? NULL : x->P, x->h, s->code, x->has_tokens, x->n, x->d, on_h ? x->d : an->dim,
                           tr->con_tau, &t->con, &t->n_con);
}

static void con_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    ecr_con_backward(((con_term *)state)->w, x->P, x->h, scale, dP, dh);
}

const ecr_term_ops ecr_term_ops_con = {
    offsetof(ecr_objective_terms, con), 0, con_on, con_weight, con_check, con_create, con_destroy, con_forward,
    con_backward, NULL, 0,
};
