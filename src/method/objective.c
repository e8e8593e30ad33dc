/* objective.c — the step objective: the LM loss plus the terms of the table that are on
 * (terms.c; each term's operations, term.h, sit beside its loss: InfoNCE in loss_infonce.c,
 * ECR in loss_ecr.c, the baselines in loss_kd.c, loss_feat.c, loss_rkd.c), forward and
 * backward for one batch (contracts in losses.h). No term is named here.
 *
 * The embedding losses work on a few hundred pooled rows per step, so they are plain loops
 * in double precision, parallel over texts (each text's numbers are computed by one thread
 * in a fixed order; sums across texts, such as dP, run over texts in order), which keeps
 * them exact for finite differences and independent of the thread count. KD works on the
 * [slots, V] logits, parallel over slots, one slot per thread, summed in slot order. */
#include "loss_common.h"
#include "term.h"
#include "model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== the step objective ========================================================================= */

/* The objective's view of the term table: the rows that have ops, logit terms first, then
 * the others in table order (term.h: this order fixes the sums). */
static const ecr_term_ops *term_ops(int i) {
    int k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int r = 0; ecr_train_term(r); r++) {
            const ecr_term_ops *ops = ecr_train_term(r)->ops;
            if (ops && ops->logits == (pass == 0) && k++ == i) return ops;
        }
    return NULL;
}

#define MAX_TERMS 16

struct ecr_objective {
    ecr_objective_opts o;
    int n_terms;
    const ecr_term_ops *ops[MAX_TERMS]; /* the terms that are on, in term_ops order     */
    void *state[MAX_TERMS];
    int embedding;            /* a term that is not a logit term is on                  */
    size_t proj_off;          /* offset of ecr.proj.weight in the parameter block       */
    int d, D;                 /* model dim; rows of the projection (0 without one)      */
    double progress;          /* the share of the run done (ecr_objective_set_progress)   */
    int mid_layer;            /* > 0: a mid term is on; the block whose output it pools */
    /* the last forward */
    int n, ready;
    ecr_term_step step;
    ecr_term_step step_mid;   /* step with h = the intermediate pooled state            */
    unsigned char *has_tokens; /* [cap] */
    float *dpooled;           /* [cap, d] */
    float *dpooled_mid;       /* [cap, d] */
    size_t cap_t, cap_dp, cap_dpm;
};

void ecr_objective_free(ecr_objective *ob) {
    if (!ob) return;
    for (int i = 0; i < ob->n_terms; i++) ob->ops[i]->destroy(ob->state[i]);
    free(ob->has_tokens);
    free(ob->dpooled);
    free(ob->dpooled_mid);
    free(ob);
}

int ecr_term_bad_weight(float w) { return !(w >= 0) || !isfinite(w); }

ecr_status ecr_term_check_proj(const ecr_model *m, int D, const char *what) {
    const ecr_config *cfg = ecr_model_config(m);
    const ecr_param_info *proj = ecr_model_find_tensor(m, "ecr.proj.weight");
    if (proj && proj->shape[0] == D && proj->shape[1] == cfg->dim) return ECR_OK;
    return ecr_fail(ECR_E_INVALID, "objective: the model's ECR projection is [%d, %d], %s need [%d, %d] "
                    "(ecr_dim = their dim)", cfg->ecr_dim, cfg->dim, what, D, cfg->dim);
}

ecr_status ecr_term_code(const ecr_anchors *an, const ecr_term_step *x, int i, int32_t *code) {
    int64_t id = x->b->text_id[i];
    if (id < 0 || id >= an->rows)
        return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the anchors' codes "
                        "(%lld rows)", i, (long long)id, (long long)an->rows);
    *code = x->has_tokens[i] ? an->codes[id] : -1;
    return ECR_OK;
}

ecr_status ecr_term_gather_rows(const float *emb, int64_t rows, int dim, const ecr_term_step *x, const char *what,
                                float **dst, size_t *cap) {
    ecr_status st = RESERVE(*dst, *cap, (size_t)x->n * dim, "objective");
    for (int i = 0; !st && i < x->n; i++) {
        int64_t id = x->b->text_id[i];
        if (id < 0 || id >= rows)
            return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the %s teacher vectors "
                            "(%lld rows)", i, (long long)id, what, (long long)rows);
        memcpy(*dst + (size_t)i * dim, emb + (size_t)id * dim, (size_t)dim * sizeof **dst);
    }
    return st;
}

ecr_status ecr_objective_create(const ecr_objective_opts *o, const ecr_model *m,
                                ecr_objective **out) {
    *out = NULL;
    /* every term's options first, in table order, then create the ones that are on */
    ecr_status st = ECR_OK;
    for (int r = 0; !st && ecr_train_term(r); r++) {
        const ecr_term_ops *ops = ecr_train_term(r)->ops;
        if (ops && ops->on(o)) st = ops->check(o, m);
    }
    if (st) return st;
    ecr_objective *ob = calloc(1, sizeof *ob);
    if (!ob) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ob->o = *o;
    ob->d = ecr_model_config(m)->dim;
    const ecr_param_info *proj = ecr_model_find_tensor(m, "ecr.proj.weight");
    if (proj) ob->proj_off = proj->offset, ob->D = (int)proj->shape[0];
    for (int i = 0; !st && term_ops(i); i++) {
        const ecr_term_ops *ops = term_ops(i);
        if (!ops->on(o)) continue;
        if (ob->n_terms == MAX_TERMS) st = ecr_fail(ECR_E_INVALID, "objective: more than %d terms", MAX_TERMS);
        if (!st) st = ops->create(o, m, &ob->state[ob->n_terms]);
        if (!st) ob->ops[ob->n_terms++] = ops;
        if (!ops->logits) ob->embedding = 1;
        if (ops->mid) ob->mid_layer = o->train->mid_layer;
    }
    if (st) {
        ecr_objective_free(ob);
        return st;
    }
    *out = ob;
    return ECR_OK;
}

void ecr_objective_set_progress(ecr_objective *ob, double progress) { ob->progress = progress; }

static double *term_value(const ecr_term_ops *ops, ecr_objective_terms *t) {
    return (double *)((char *)t + ops->value);
}

ecr_status ecr_objective_forward(ecr_objective *ob, ecr_model *m, const ecr_batch *b,
                                 const ecr_data *d, ecr_objective_terms *t) {
    memset(t, 0, sizeof *t);
    ob->ready = 0;
    ecr_forward_out fo;
    ecr_status st = ob->mid_layer ? ecr_model_set_mid_layer(m, ob->mid_layer) : ECR_OK;
    if (!st) st = ecr_model_forward(m, b, &fo);
    if (st) return st;
    t->n_targets = fo.n_targets;
    t->lm = fo.n_targets ? fo.loss_sum / (double)fo.n_targets : 0.0;
    t->total = t->lm;
    int n = b->n_texts;
    ob->n = n;
    ecr_term_step *x = &ob->step;
    *x = (ecr_term_step){&ob->o, b, d, NULL, fo.pooled, NULL, fo.logits, n, ob->d, ob->D};
    if (ob->embedding) {
        st = RESERVE(ob->has_tokens, ob->cap_t, (size_t)n, "objective");
        if (!st) st = RESERVE(ob->dpooled, ob->cap_dp, (size_t)n * ob->d, "objective");
        if (st) return st;
        memset(ob->has_tokens, 0, (size_t)n);
        for (size_t s = 0; s < (size_t)b->B * b->T; s++)
            if (b->text[s] >= 0 && b->pos[s] >= 1) ob->has_tokens[b->text[s]] = 1;
        x->has_tokens = ob->has_tokens;
        x->P = ecr_model_params_ro(m) + ob->proj_off;
    }
    ob->step_mid = *x;
    if (ob->mid_layer) {
        ob->step_mid.h = ecr_model_pooled_mid(m);
        if ((st = RESERVE(ob->dpooled_mid, ob->cap_dpm, (size_t)n * ob->d, "objective"))) return st;
    }
    for (int i = 0; i < ob->n_terms; i++) {
        const ecr_term_ops *ops = ob->ops[i];
        if ((st = ops->forward(ob->state[i], ops->mid ? &ob->step_mid : x, t))) return st;
        double w = ops->weight(&ob->o, ob->progress), v = *term_value(ops, t);
        t->total = ops->logits ? (1.0 - w) * t->lm + w * v : t->total + w * v;
    }
    ob->ready = 1;
    return ECR_OK;
}

ecr_status ecr_objective_backward(ecr_objective *ob, ecr_model *m, const ecr_batch *b) {
    if (!ob->ready || b->n_texts != ob->n)
        return ecr_fail(ECR_E_INVALID, "objective: backward needs the forward of the same batch");
    ob->ready = 0;
    float lm_scale = 1.0f;
    const float *dlogits = NULL;
    for (int i = 0; i < ob->n_terms; i++)
        if (ob->ops[i]->logits) {
            lm_scale = 1.0f - ob->ops[i]->weight(&ob->o, ob->progress);
            dlogits = ob->ops[i]->dlogits(ob->state[i]);
        }
    if (!ob->embedding) return ecr_model_backward(m, b, lm_scale, NULL, dlogits);
    float *dp = ob->dpooled, *dpm = ob->mid_layer ? ob->dpooled_mid : NULL;
    memset(dp, 0, (size_t)ob->n * ob->d * sizeof *dp);
    if (dpm) memset(dpm, 0, (size_t)ob->n * ob->d * sizeof *dpm);
    float *dP = ecr_model_grads(m) + ob->proj_off;
    for (int i = 0; i < ob->n_terms; i++) {
        const ecr_term_ops *ops = ob->ops[i];
        if (ops->logits) continue;
        float w = ops->weight(&ob->o, ob->progress);
        if (ops->mid) ops->backward(ob->state[i], &ob->step_mid, w, dP, dpm);
        else ops->backward(ob->state[i], &ob->step, w, dP, dp);
    }
    return ecr_model_backward_mid(m, b, lm_scale, dp, dlogits, dpm);
}
