/* loss_mres.c — multi-resolution codes, a codes-only companion of ECR: further anchor sets of
 * other sizes K (ecr anchors --k, from the same teacher vectors as the main anchors, so each
 * training text has one 2-byte code per set). Each set adds ECR's KL for its codes through
 * the same projection P and temperature tau:
 *     L_mres = sum_r mean_i KL(Pi_r[c_ir] || softmax(A_r u_i / tau))     (hard codes)
 * The loss of a set is the ECR regulariser's (ecr_reg, loss_ecr.c: forward beside backward
 * there); this file only runs one per set, in the order the files were given. */
#include "loss_common.h"
#include "term.h"

typedef struct mres_term {
    int n_sets;
    ecr_reg *w[ECR_MRES_MAX];
    int32_t *code;            /* [n] the step's codes in the set being run                */
    size_t cap_c;
} mres_term;

static int mres_on(const ecr_objective_opts *o) {
    return o->train && o->n_mres > 0 && o->anchors != NULL;
}
static float mres_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->train->mres_weight;
}

static ecr_status mres_check(const ecr_objective_opts *o, const ecr_model *m) {
    if (ecr_term_bad_weight(o->train->mres_weight))
        return ecr_fail(ECR_E_INVALID, "objective: mres weight %g out of range", (double)o->train->mres_weight);
    if (o->n_mres > ECR_MRES_MAX)
        return ecr_fail(ECR_E_INVALID, "objective: %d mres anchor sets (at most %d)", o->n_mres, ECR_MRES_MAX);
    if (!(o->ecr_tau > 0) || !isfinite(o->ecr_tau))
        return ecr_fail(ECR_E_INVALID, "objective: ECR temperature %g out of range", (double)o->ecr_tau);
    for (int r = 0; r < o->n_mres; r++) {
        const ecr_anchors *a = o->mres[r];
        if (!a || a->dim != o->anchors->dim || a->rows != o->anchors->rows)
            return ecr_fail(ECR_E_INVALID, "objective: mres anchor set %d does not match the anchors (dim %d, "
                            "%lld codes)", r + 1, o->anchors->dim, (long long)o->anchors->rows);
    }
    return ecr_term_check_proj(m, o->anchors->dim, "the anchors");
}

static void mres_destroy(void *state) {
    mres_term *s = state;
    if (!s) return;
    for (int r = 0; r < s->n_sets; r++) ecr_reg_free(s->w[r]);
    free(s->code);
    free(s);
}

static ecr_status mres_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)m;
    mres_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ecr_status st = ECR_OK;
    for (int r = 0; !st && r < o->n_mres; r++) {
        const ecr_anchors *a = o->mres[r];
        st = ecr_reg_create(a->anchors, a->k, a->dim, o->ecr_tau, &s->w[r]);
        if (!st) s->n_sets = r + 1;
    }
    if (st) mres_destroy(s), s = NULL;
    *out = s;
    return st;
}

/* Each set's forward keeps its own cache (ecr_reg), so backward can run them again in order. */
static ecr_status mres_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    mres_term *s = state;
    ecr_status st = RESERVE(s->code, s->cap_c, (size_t)x->n, "objective");
    t->mres = 0;
    for (int r = 0; !st && r < s->n_sets; r++) {
        for (int i = 0; !st && i < x->n; i++) st = ecr_term_code(x->o->mres[r], x, i, &s->code[i]);
        double kl = 0;
        if (!st) st = ecr_reg_forward(s->w[r], x->P, x->h, x->n, x->d, s->code, NULL, NULL, 0, &kl, NULL);
        t->mres += kl;
    }
    return st;
}

static void mres_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    mres_term *s = state;
    for (int r = 0; r < s->n_sets; r++) ecr_reg_backward(s->w[r], x->P, x->h, scale, dP, dh);
}

const ecr_term_ops ecr_term_ops_mres = {
    offsetof(ecr_objective_terms, mres), 0, mres_on, mres_weight, mres_check, mres_create, mres_destroy,
    mres_forward, mres_backward, NULL, 0,
};
