/* objective.c — the step objective: the LM loss plus the terms of losses.h (InfoNCE in
 * loss_infonce.c, ECR in loss_ecr.c, the baselines in loss_kd.c, loss_feat.c, loss_rkd.c),
 * forward and backward for one batch (contracts in losses.h).
 *
 * The embedding losses work on a few hundred pooled rows per step, so they are plain loops
 * in double precision, parallel over texts (each text's numbers are computed by one thread
 * in a fixed order; sums across texts, such as dP, run over texts in order), which keeps
 * them exact for finite differences and independent of the thread count. KD works on the
 * [slots, V] logits, parallel over slots, one slot per thread, summed in slot order. */
#include "loss_common.h"
#include "model_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ==== the step objective ========================================================================= */

struct ecr_objective {
    ecr_objective_opts o;
    ecr_infonce *nce;         /* NULL when the InfoNCE term is off                  */
    ecr_reg *reg;             /* NULL when the ECR term is off                      */
    ecr_kd *kd;               /* NULL when the KD term is off                       */
    ecr_feat *feat;           /* NULL when the feat term is off                     */
    ecr_rkd *rkd;             /* NULL when the RKD term is off                      */
    size_t proj_off;          /* offset of ecr.proj.weight in the parameter block   */
    int d, M;
    /* per-step arrays, [cap] texts */
    int n, ready;
    int32_t *group, *code;
    unsigned char *has_tokens;
    uint16_t *soft_idx;       /* [cap, M] */
    float *soft_sim;          /* [cap, M] */
    float *feat_t, *rkd_t;    /* [cap, feat_dim], [cap, rkd_dim] teacher rows        */
    float *dpooled;           /* [cap, d] */
    const float *pooled;      /* the last forward's h (borrowed from the model) */
    float *kd_grad;           /* the teacher's logits buffer, holding the KD gradient */
    size_t cap_g, cap_c, cap_t, cap_si, cap_ss, cap_ft, cap_rt, cap_dp;
};

void ecr_objective_free(ecr_objective *ob) {
    if (!ob) return;
    ecr_infonce_free(ob->nce);
    ecr_reg_free(ob->reg);
    ecr_kd_free(ob->kd);
    ecr_feat_free(ob->feat);
    ecr_rkd_free(ob->rkd);
    free(ob->group);
    free(ob->code);
    free(ob->has_tokens);
    free(ob->soft_idx);
    free(ob->soft_sim);
    free(ob->feat_t);
    free(ob->rkd_t);
    free(ob->dpooled);
    free(ob);
}

/* A term on the projection needs ecr.proj.weight [D, d]. */
static ecr_status check_proj(const ecr_param_info *proj, const ecr_config *cfg, int D, const char *what) {
    if (proj && proj->shape[0] == D && proj->shape[1] == cfg->dim) return ECR_OK;
    return ecr_fail(ECR_E_INVALID, "objective: the model's ECR projection is [%d, %d], %s need [%d, %d] "
                    "(ecr_dim = their dim)", cfg->ecr_dim, cfg->dim, what, D, cfg->dim);
}

static int bad_weight(float w) { return !(w >= 0) || !isfinite(w); }

static ecr_status check_options(const ecr_objective_opts *o, const ecr_model *m) {
    const ecr_config *cfg = ecr_model_config(m);
    const ecr_param_info *proj = ecr_model_find_tensor(m, "ecr.proj.weight");
    if (bad_weight(o->contrastive_weight) || (o->contrastive_weight > 0 && !(o->contrastive_tau > 0)))
        return ecr_fail(ECR_E_INVALID, "objective: contrastive weight %g / temperature %g out of range",
                        (double)o->contrastive_weight, (double)o->contrastive_tau);
    const ecr_anchors *an = o->anchors;
    if (an) {
        if (bad_weight(o->ecr_weight) || !(o->ecr_tau > 0) || !isfinite(o->ecr_tau))
            return ecr_fail(ECR_E_INVALID, "objective: ECR weight %g / temperature %g out of range",
                            (double)o->ecr_weight, (double)o->ecr_tau);
        ecr_status st = check_proj(proj, cfg, an->dim, "the anchors");
        if (st) return st;
        if (o->ecr_soft && (an->soft < 1 || !an->soft_idx || !an->soft_sim))
            return ecr_fail(ECR_E_INVALID, "%s: no soft codes in the anchors (make them with "
                            "ecr anchors --soft M)", an->source && an->source[0] ? an->source : "anchors");
    }
    if (o->kd_teacher) {
        const ecr_config *tc = ecr_model_config(o->kd_teacher);
        if (!(o->kd_alpha >= 0 && o->kd_alpha <= 1) || !(o->kd_temp > 0) || !isfinite(o->kd_temp))
            return ecr_fail(ECR_E_INVALID, "objective: KD alpha %g / temperature %g out of range",
                            (double)o->kd_alpha, (double)o->kd_temp);
        if (o->kd_teacher == m)
            return ecr_fail(ECR_E_INVALID, "objective: the KD teacher is the student itself");
        if (tc->vocab_size != cfg->vocab_size)
            return ecr_fail(ECR_E_INVALID, "objective: the KD teacher's vocabulary has %d tokens, the student's %d",
                            tc->vocab_size, cfg->vocab_size);
    }
    if (o->feat_emb) {
        if (bad_weight(o->feat_weight) || o->feat_rows < 0)
            return ecr_fail(ECR_E_INVALID, "objective: feat weight %g out of range", (double)o->feat_weight);
        ecr_status st = check_proj(proj, cfg, o->feat_dim, "the feat teacher vectors");
        if (st) return st;
    }
    if (o->rkd_emb) {
        if (bad_weight(o->rkd_weight) || o->rkd_rows < 0)
            return ecr_fail(ECR_E_INVALID, "objective: RKD weight %g out of range", (double)o->rkd_weight);
        ecr_status st = check_proj(proj, cfg, o->rkd_dim, "the RKD teacher vectors");
        if (st) return st;
    }
    return ECR_OK;
}

ecr_status ecr_objective_create(const ecr_objective_opts *o, const ecr_model *m,
                                ecr_objective **out) {
    *out = NULL;
    ecr_status st = check_options(o, m);
    if (st) return st;
    const ecr_anchors *an = o->anchors;
    const ecr_param_info *proj = ecr_model_find_tensor(m, "ecr.proj.weight");
    ecr_objective *ob = calloc(1, sizeof *ob);
    if (!ob) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ob->o = *o;
    ob->d = ecr_model_config(m)->dim;
    ob->M = an && o->ecr_soft ? an->soft : 0;
    if (proj) ob->proj_off = proj->offset;
    if (o->contrastive_weight > 0) st = ecr_infonce_create(&ob->nce);
    if (!st && an) st = ecr_reg_create(an->anchors, an->k, an->dim, o->ecr_tau, &ob->reg);
    if (!st && o->kd_teacher) st = ecr_kd_create(&ob->kd);
    if (!st && o->feat_emb) st = ecr_feat_create(&ob->feat);
    if (!st && o->rkd_emb) st = ecr_rkd_create(&ob->rkd);
    if (st) {
        ecr_objective_free(ob);
        return st;
    }
    *out = ob;
    return ECR_OK;
}

static ecr_status objective_reserve(ecr_objective *ob, int n) {
    size_t un = (size_t)n, M = (size_t)(ob->M > 0 ? ob->M : 1);
    size_t fd = (size_t)(ob->feat ? ob->o.feat_dim : 1), rd = (size_t)(ob->rkd ? ob->o.rkd_dim : 1);
    ecr_status st = RESERVE(ob->group, ob->cap_g, un, "objective");
    if (!st) st = RESERVE(ob->code, ob->cap_c, un, "objective");
    if (!st) st = RESERVE(ob->has_tokens, ob->cap_t, un, "objective");
    if (!st) st = RESERVE(ob->soft_idx, ob->cap_si, un * M, "objective");
    if (!st) st = RESERVE(ob->soft_sim, ob->cap_ss, un * M, "objective");
    if (!st) st = RESERVE(ob->feat_t, ob->cap_ft, un * fd, "objective");
    if (!st) st = RESERVE(ob->rkd_t, ob->cap_rt, un * rd, "objective");
    if (!st) st = RESERVE(ob->dpooled, ob->cap_dp, un * (size_t)ob->d, "objective");
    return st;
}

/* Teacher row `id` of a [rows, dim] matrix into dst, or a refusal naming the batch text. */
static ecr_status gather_row(const float *emb, int64_t rows, int dim, int64_t id, int i, const char *what,
                             float *dst) {
    if (id < 0 || id >= rows)
        return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the %s teacher vectors "
                        "(%lld rows)", i, (long long)id, what, (long long)rows);
    memcpy(dst, emb + (size_t)id * dim, (size_t)dim * sizeof *dst);
    return ECR_OK;
}

/* Per batch text: has_tokens (a slot with pos >= 1, i.e. a non-zero pooled row), group,
 * code and soft code rows, teacher rows, from the data, the anchors and the teacher
 * matrices by text_id. */
static ecr_status gather_texts(ecr_objective *ob, const ecr_batch *b, const ecr_data *d) {
    int n = b->n_texts;
    memset(ob->has_tokens, 0, (size_t)n);
    for (size_t s = 0; s < (size_t)b->B * b->T; s++)
        if (b->text[s] >= 0 && b->pos[s] >= 1) ob->has_tokens[b->text[s]] = 1;
    const ecr_anchors *an = ob->o.anchors;
    const ecr_objective_opts *o = &ob->o;
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
        ecr_status st = ECR_OK;
        if (ob->feat)
            st = gather_row(o->feat_emb, o->feat_rows, o->feat_dim, id, i, "feat",
                            ob->feat_t + (size_t)i * o->feat_dim);
        if (!st && ob->rkd)
            st = gather_row(o->rkd_emb, o->rkd_rows, o->rkd_dim, id, i, "RKD", ob->rkd_t + (size_t)i * o->rkd_dim);
        if (st) return st;
    }
    return ECR_OK;
}

/* The KD term: the teacher's forward on the same batch, then the loss against the student's
 * logits; the gradient goes into the teacher's logits buffer right away (it is the only N x V
 * buffer the term needs, and the teacher never runs a backward). */
static ecr_status kd_forward(ecr_objective *ob, const ecr_batch *b, const float *student_logits,
                             ecr_objective_terms *t) {
    ecr_forward_out tf;
    ecr_status st = ecr_model_forward(ob->o.kd_teacher, b, &tf);
    if (st) return st;
    int N = b->B * b->T, V = ecr_model_config(ob->o.kd_teacher)->vocab_size;
    st = ecr_kd_forward(ob->kd, student_logits, tf.logits, b->targets, N, V, ob->o.kd_temp, &t->kd, NULL);
    if (st) return st;
    ob->kd_grad = (float *)tf.logits; /* the teacher's own workspace, ours until its next forward */
    ecr_kd_backward(ob->kd, student_logits, tf.logits, ob->o.kd_alpha, ob->kd_grad);
    return ECR_OK;
}

ecr_status ecr_objective_forward(ecr_objective *ob, ecr_model *m, const ecr_batch *b,
                                 const ecr_data *d, ecr_objective_terms *t) {
    memset(t, 0, sizeof *t);
    ob->ready = 0;
    ob->kd_grad = NULL;
    ecr_forward_out fo;
    ecr_status st = ecr_model_forward(m, b, &fo);
    if (st) return st;
    t->n_targets = fo.n_targets;
    t->lm = fo.n_targets ? fo.loss_sum / (double)fo.n_targets : 0.0;
    t->total = t->lm;
    int n = b->n_texts;
    ob->n = n;
    ob->pooled = fo.pooled;
    if (ob->kd) {
        if ((st = kd_forward(ob, b, fo.logits, t))) return st;
        t->total = (1.0 - ob->o.kd_alpha) * t->lm + ob->o.kd_alpha * t->kd;
    }
    if (!ob->nce && !ob->reg && !ob->feat && !ob->rkd) {
        ob->ready = 1;
        return ECR_OK;
    }
    if ((st = objective_reserve(ob, n)) || (st = gather_texts(ob, b, d))) return st;
    const float *P = ecr_model_params_ro(m) + ob->proj_off;
    if (ob->nce) {
        st = ecr_infonce_forward(ob->nce, fo.pooled, ob->group, n, ob->d, ob->o.contrastive_tau,
                                 &t->contrastive, &t->n_contrastive);
        if (st) return st;
        t->total += ob->o.contrastive_weight * t->contrastive;
    }
    if (ob->reg) {
        st = ecr_reg_forward(ob->reg, P, fo.pooled, n, ob->d, ob->code, ob->M ? ob->soft_idx : NULL,
                             ob->soft_sim, ob->M, &t->ecr, &t->n_ecr);
        if (st) return st;
        t->total += ob->o.ecr_weight * t->ecr;
    }
    if (ob->feat) {
        st = ecr_feat_forward(ob->feat, P, fo.pooled, ob->feat_t, ob->has_tokens, n, ob->d, ob->o.feat_dim,
                              &t->feat, &t->n_feat);
        if (st) return st;
        t->total += ob->o.feat_weight * t->feat;
    }
    if (ob->rkd) {
        st = ecr_rkd_forward(ob->rkd, P, fo.pooled, ob->rkd_t, ob->has_tokens, n, ob->d, ob->o.rkd_dim,
                             &t->rkd, &t->rkd_dist, &t->rkd_angle, &t->n_rkd);
        if (st) return st;
        t->total += ob->o.rkd_weight * t->rkd;
    }
    ob->ready = 1;
    return ECR_OK;
}

ecr_status ecr_objective_backward(ecr_objective *ob, ecr_model *m, const ecr_batch *b) {
    if (!ob->ready || b->n_texts != ob->n)
        return ecr_fail(ECR_E_INVALID, "objective: backward needs the forward of the same batch");
    ob->ready = 0;
    float lm_scale = ob->kd ? 1.0f - ob->o.kd_alpha : 1.0f;
    const float *dlogits = ob->kd_grad;
    ob->kd_grad = NULL;
    if (!ob->nce && !ob->reg && !ob->feat && !ob->rkd) return ecr_model_backward(m, b, lm_scale, NULL, dlogits);
    float *dp = ob->dpooled;
    memset(dp, 0, (size_t)ob->n * ob->d * sizeof *dp);
    const float *P = ecr_model_params_ro(m) + ob->proj_off;
    float *dP = ecr_model_grads(m) + ob->proj_off;
    if (ob->nce) ecr_infonce_backward(ob->nce, ob->o.contrastive_weight, dp);
    if (ob->reg) ecr_reg_backward(ob->reg, P, ob->pooled, ob->o.ecr_weight, dP, dp);
    if (ob->feat) ecr_feat_backward(ob->feat, P, ob->pooled, ob->o.feat_weight, dP, dp);
    if (ob->rkd) ecr_rkd_backward(ob->rkd, P, ob->pooled, ob->o.rkd_weight, dP, dp);
    return ecr_model_backward(m, b, lm_scale, dp, dlogits);
}
