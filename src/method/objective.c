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
#include "comm.h"

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
    /* data parallelism (o.comm of size > 1; see ecr_objective_forward) */
    int world, rank;
    ecr_batch local;          /* this rank's rows of the step, its texts renumbered from 0 */
    int32_t *local_text;      /* [rows * T] local.text                                     */
    int64_t *local_id;        /* [n_local] local.text_id                                   */
    int *order;               /* [n] the step's texts by rank (each rank's in index order) */
    int *owner;               /* [n] the rank whose rows hold each text                    */
    int *local_of;            /* [n] a text's index among its rank's texts                 */
    int *starts;              /* [world] where each rank's texts begin in `order`          */
    int first;                /* this rank's texts: order[first .. first + local.n_texts) */
    int *counts;              /* [world] pooled floats of each rank                        */
    float *gath;              /* [n, d] the ranks' pooled rows as gathered (by `order`)    */
    float *h_all, *hmid_all;  /* [n, d] the step's pooled rows, in the step's text order  */
    float *dp_loc, *dpm_loc;  /* [n_local, d] this rank's rows of dpooled (and the mid's)  */
    float *dP_void;           /* [D, d] ranks > 0: where their dP goes (rank 0 adds it)    */
    double share;             /* this rank's target slots / the step's                     */
    double comm_s;            /* seconds in collectives                                    */
    size_t cap_lt, cap_li, cap_or, cap_ow, cap_lo, cap_g, cap_ha, cap_hma, cap_dl, cap_dml, cap_dpv;
};

void ecr_objective_free(ecr_objective *ob) {
    if (!ob) return;
    for (int i = 0; i < ob->n_terms; i++) ob->ops[i]->destroy(ob->state[i]);
    free(ob->has_tokens);
    free(ob->dpooled);
    free(ob->dpooled_mid);
    free(ob->local_text);
    free(ob->local_id);
    free(ob->order);
    free(ob->owner);
    free(ob->local_of);
    free(ob->starts);
    free(ob->counts);
    free(ob->gath);
    free(ob->h_all);
    free(ob->hmid_all);
    free(ob->dp_loc);
    free(ob->dpm_loc);
    free(ob->dP_void);
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
    ob->world = ecr_comm_size(o->comm);
    ob->rank = ecr_comm_rank(o->comm);
    ob->share = 1.0;
    if (ob->world > 1 && (!(ob->counts = calloc((size_t)ob->world, sizeof *ob->counts)) ||
                          !(ob->starts = calloc((size_t)ob->world, sizeof *ob->starts))))
        st = ecr_fail(ECR_E_NOMEM, "objective: out of memory");
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

double ecr_objective_comm_seconds(const ecr_objective *ob) { return ob->comm_s; }

/* Rank r's rows of a batch of B rows among `world` ranks: [*r0, *r1). */
static void rank_rows(int B, int world, int r, int *r0, int *r1) {
    *r0 = (int)((int64_t)B * r / world);
    *r1 = (int)((int64_t)B * (r + 1) / world);
}

/* ob->local = this rank's rows of b, and ob->order, owner, local_of, starts, first and
 * counts. A text lies in one row (the batcher never splits one), so each belongs to one
 * rank; checked, as the gathers rely on it. */
static ecr_status split_batch(ecr_objective *ob, const ecr_batch *b) {
    if (b->B < ob->world)
        return ecr_fail(ECR_E_INVALID, "objective: a step of %d rows cannot be shared by %d ranks "
                        "(raise the tokens per step)", b->B, ob->world);
    int n = b->n_texts, T = b->T, r0 = 0, r1 = 0;
    ecr_status st = RESERVE(ob->order, ob->cap_or, (size_t)n + 1, "objective");
    if (!st) st = RESERVE(ob->owner, ob->cap_ow, (size_t)n + 1, "objective");
    if (!st) st = RESERVE(ob->local_of, ob->cap_lo, (size_t)n + 1, "objective");
    if (st) return st;
    for (int i = 0; i < n; i++) ob->owner[i] = -1;
    for (int r = 0; r < ob->world; r++) {
        int a, z;
        rank_rows(b->B, ob->world, r, &a, &z);
        if (r == ob->rank) r0 = a, r1 = z;
        for (size_t s = (size_t)a * T; s < (size_t)z * T; s++) {
            int x = b->text[s];
            if (x < 0) continue;
            if (ob->owner[x] >= 0 && ob->owner[x] != r)
                return ecr_fail(ECR_E_RUNTIME, "objective: text %d of the step lies in the rows of ranks %d and %d",
                                x, ob->owner[x], r);
            ob->owner[x] = r;
        }
    }
    memset(ob->counts, 0, (size_t)ob->world * sizeof *ob->counts); /* texts per rank first */
    for (int i = 0; i < n; i++) {
        if (ob->owner[i] < 0) return ecr_fail(ECR_E_RUNTIME, "objective: text %d of the step has no slot", i);
        ob->local_of[i] = ob->counts[ob->owner[i]]++;
    }
    for (int r = 0, at = 0; r < ob->world; at += ob->counts[r++]) ob->starts[r] = at;
    for (int i = 0; i < n; i++) ob->order[ob->starts[ob->owner[i]] + ob->local_of[i]] = i;
    int mine = ob->counts[ob->rank];
    ob->first = ob->starts[ob->rank];
    for (int r = 0; r < ob->world; r++) ob->counts[r] *= ob->d; /* now floats per rank */
    st = RESERVE(ob->local_text, ob->cap_lt, (size_t)(r1 - r0) * T, "objective");
    if (!st) st = RESERVE(ob->local_id, ob->cap_li, (size_t)mine + 1, "objective");
    if (st) return st;
    for (size_t s = (size_t)r0 * T; s < (size_t)r1 * T; s++)
        ob->local_text[s - (size_t)r0 * T] = b->text[s] >= 0 ? ob->local_of[b->text[s]] : -1;
    for (int i = 0; i < mine; i++) ob->local_id[i] = b->text_id[ob->order[ob->first + i]];
    ob->local = (ecr_batch){r1 - r0, T, b->tokens + (size_t)r0 * T, b->targets + (size_t)r0 * T,
                            b->pos + (size_t)r0 * T, ob->local_text, mine, ob->local_id};
    return ECR_OK;
}

/* The ranks' pooled rows mine [n_local, d] into all [n, d] in the step's text order. */
static ecr_status gather_rows(ecr_objective *ob, const float *mine, float *all) {
    size_t d = (size_t)ob->d;
    ecr_status st = RESERVE(ob->gath, ob->cap_g, (size_t)ob->n * d, "objective");
    if (!st) st = ecr_comm_gather_f32(ob->o.comm, mine, ob->gath, ob->counts, &ob->comm_s);
    if (st) return st;
    for (int k = 0; k < ob->n; k++) memcpy(all + (size_t)ob->order[k] * d, ob->gath + (size_t)k * d, d * sizeof *all);
    return ECR_OK;
}

/* The step's totals from the ranks' parts (data parallelism): the LM and logit-term sums
 * and counts are summed, the pooled rows (and the mid term's) gathered into h_all. x is
 * switched to the whole step. */
static ecr_status combine(ecr_objective *ob, ecr_model *m, const ecr_batch *b, const ecr_forward_out *fo,
                          ecr_objective_terms *t, ecr_term_step *x) {
    double v[2 + MAX_TERMS];
    int k = 0;
    v[k++] = fo->loss_sum;
    v[k++] = (double)fo->n_targets;
    for (int i = 0; i < ob->n_terms; i++) /* a logit term's value is a mean over target slots */
        if (ob->ops[i]->logits) v[k++] = *term_value(ob->ops[i], t) * (double)fo->n_targets;
    ecr_status st = ecr_comm_sum_f64(ob->o.comm, v, (size_t)k, &ob->comm_s);
    if (st) return st;
    double all = v[1];
    ob->share = all > 0 ? (double)fo->n_targets / all : 0.0;
    t->n_targets = (int64_t)all;
    t->lm = all > 0 ? v[0] / all : 0.0;
    k = 2;
    for (int i = 0; i < ob->n_terms; i++)
        if (ob->ops[i]->logits) *term_value(ob->ops[i], t) = all > 0 ? v[k++] / all : 0.0;
    if (!ob->embedding) return ECR_OK;
    size_t nd = (size_t)b->n_texts * ob->d;
    if ((st = RESERVE(ob->h_all, ob->cap_ha, nd, "objective"))) return st;
    if ((st = gather_rows(ob, fo->pooled, ob->h_all))) return st;
    *x = (ecr_term_step){&ob->o, b, x->data, NULL, ob->h_all, NULL, NULL, b->n_texts, ob->d, ob->D};
    if (ob->mid_layer) {
        if ((st = RESERVE(ob->hmid_all, ob->cap_hma, nd, "objective"))) return st;
        st = gather_rows(ob, ecr_model_pooled_mid(m), ob->hmid_all);
    }
    return st;
}

ecr_status ecr_objective_forward(ecr_objective *ob, ecr_model *m, const ecr_batch *b,
                                 const ecr_data *d, ecr_objective_terms *t) {
    memset(t, 0, sizeof *t);
    ob->ready = 0;
    ecr_forward_out fo;
    ecr_status st = ob->mid_layer ? ecr_model_set_mid_layer(m, ob->mid_layer) : ECR_OK;
    const ecr_batch *mb = b; /* the rows the model runs on */
    if (!st && ob->world > 1 && !(st = split_batch(ob, b))) mb = &ob->local;
    if (!st) st = ecr_model_forward(m, mb, &fo);
    if (st) return st;
    t->n_targets = fo.n_targets;
    t->lm = fo.n_targets ? fo.loss_sum / (double)fo.n_targets : 0.0;
    int n = b->n_texts;
    ob->n = n;
    ecr_term_step *x = &ob->step;
    *x = (ecr_term_step){&ob->o, mb, d, NULL, fo.pooled, NULL, fo.logits, mb->n_texts, ob->d, ob->D};
    for (int i = 0; i < ob->n_terms; i++) /* logit terms: on the model's rows */
        if (ob->ops[i]->logits && (st = ob->ops[i]->forward(ob->state[i], x, t))) return st;
    if (ob->world > 1 && (st = combine(ob, m, b, &fo, t, x))) return st;
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
        ob->step_mid.h = ob->world > 1 ? ob->hmid_all : ecr_model_pooled_mid(m);
        if ((st = RESERVE(ob->dpooled_mid, ob->cap_dpm, (size_t)n * ob->d, "objective"))) return st;
    }
    for (int i = 0; i < ob->n_terms; i++) { /* the others: on the whole step */
        const ecr_term_ops *ops = ob->ops[i];
        if (!ops->logits && (st = ops->forward(ob->state[i], ops->mid ? &ob->step_mid : x, t))) return st;
    }
    t->total = t->lm;
    for (int i = 0; i < ob->n_terms; i++) {
        const ecr_term_ops *ops = ob->ops[i];
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
    /* data parallelism: this rank's rows carry `share` of the step's target slots, so their
     * means (LM, KD) enter the step's with that weight; the pooled rows are the step's */
    const ecr_batch *mb = ob->world > 1 ? &ob->local : b;
    float share = ob->world > 1 ? (float)ob->share : 1.0f;
    if (ob->world > 1) lm_scale *= share;
    if (!ob->embedding) return ecr_model_backward_mid(m, mb, lm_scale, NULL, dlogits, share, NULL);
    float *dp = ob->dpooled, *dpm = ob->mid_layer ? ob->dpooled_mid : NULL;
    memset(dp, 0, (size_t)ob->n * ob->d * sizeof *dp);
    if (dpm) memset(dpm, 0, (size_t)ob->n * ob->d * sizeof *dpm);
    float *dP = ecr_model_grads(m) + ob->proj_off;
    if (ob->rank > 0 && ob->D > 0) { /* every rank computes the step's dP: rank 0's is added */
        ecr_status st = RESERVE(ob->dP_void, ob->cap_dpv, (size_t)ob->D * ob->d, "objective");
        if (st) return st;
        dP = ob->dP_void;
    }
    for (int i = 0; i < ob->n_terms; i++) {
        const ecr_term_ops *ops = ob->ops[i];
        if (ops->logits) continue;
        float w = ops->weight(&ob->o, ob->progress);
        if (ops->mid) ops->backward(ob->state[i], &ob->step_mid, w, dP, dpm);
        else ops->backward(ob->state[i], &ob->step, w, dP, dp);
    }
    if (ob->world > 1) { /* this rank's texts' rows */
        size_t d = (size_t)ob->d, nl = (size_t)mb->n_texts;
        ecr_status st = RESERVE(ob->dp_loc, ob->cap_dl, nl * d + 1, "objective");
        if (!st && dpm) st = RESERVE(ob->dpm_loc, ob->cap_dml, nl * d + 1, "objective");
        if (st) return st;
        for (size_t i = 0; i < nl; i++) {
            size_t g = (size_t)ob->order[ob->first + i] * d;
            memcpy(ob->dp_loc + i * d, dp + g, d * sizeof *dp);
            if (dpm) memcpy(ob->dpm_loc + i * d, dpm + g, d * sizeof *dpm);
        }
        dp = ob->dp_loc;
        if (dpm) dpm = ob->dpm_loc;
    }
    return ecr_model_backward_mid(m, mb, lm_scale, dp, dlogits, share, dpm);
}
