/* loss_mid.c — ECR on an intermediate layer, a codes-only companion of ECR: the same KL to the
 * anchors, for the same codes, through the same projection P and temperature tau, on the
 * pooled output of block `mid_layer` (the residual stream before any norm; u = P h / |P h|
 * does not see its scale) as well as on the last layer's h:
 *     L_mid = mean_i KL(Pi[c_i] || softmax(A u_i^mid / tau))     (hard codes)
 * The loss is the ECR regulariser's (ecr_reg, loss_ecr.c: forward beside backward there); the
 * objective hands this term the intermediate state as its h (term.h, ops.mid) and sends its
 * dh back into that block (ecr_model_backward_mid). */
#include "loss_common.h"
#include "term.h"

typedef struct mid_term {
    ecr_reg *w;
    int32_t *code;            /* [n] the step's codes                                     */
    size_t cap_c;
} mid_term;

static int mid_on(const ecr_objective_opts *o) {
    return o->train && o->train->mid_weight != 0 && o->anchors != NULL;
}
static float mid_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->train->mid_weight;
}

static ecr_status mid_check(const ecr_objective_opts *o, const ecr_model *m) {
    if (ecr_term_bad_weight(o->train->mid_weight))
        return ecr_fail(ECR_E_INVALID, "objective: mid weight %g out of range", (double)o->train->mid_weight);
    int L = ecr_model_config(m)->n_layers;
    if (o->train->mid_layer < 1 || o->train->mid_layer >= L)
        return ecr_fail(ECR_E_INVALID, "objective: --mid-layer %d is outside 1..%d (the model has %d layers; "
                        "the last is ECR's own)", o->train->mid_layer, L - 1, L);
    if (!(o->ecr_tau > 0) || !isfinite(o->ecr_tau))
        return ecr_fail(ECR_E_INVALID, "objective: ECR temperature %g out of range", (double)o->ecr_tau);
    return ecr_term_check_proj(m, o->anchors->dim, "the anchors");
}

static void mid_destroy(void *state) {
    mid_term *s = state;
    if (!s) return;
    ecr_reg_free(s->w);
    free(s->code);
    free(s);
}

static ecr_status mid_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)m;
    mid_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    const ecr_anchors *a = o->anchors;
    ecr_status st = ecr_reg_create(a->anchors, a->k, a->dim, o->ecr_tau, &s->w);
    if (st) mid_destroy(s), s = NULL;
    *out = s;
    return st;
}

/* x->h is the intermediate pooled state here (ops.mid). */
static ecr_status mid_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    mid_term *s = state;
    ecr_status st = RESERVE(s->code, s->cap_c, (size_t)x->n, "objective");
    for (int i = 0; !st && i < x->n; i++) st = ecr_term_code(x->o->anchors, x, i, &s->code[i]);
    if (st) return st;
    return ecr_reg_forward(s->w, x->P, x->h, x->n, x->d, s->code, NULL, NULL, 0, &t->mid, NULL);
}

static void mid_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    ecr_reg_backward(((mid_term *)state)->w, x->P, x->h, scale, dP, dh);
}

const ecr_term_ops ecr_term_ops_mid = {
    offsetof(ecr_objective_terms, mid), 0, mid_on, mid_weight, mid_check, mid_create, mid_destroy,
    mid_forward, mid_backward, NULL, 1,
};
