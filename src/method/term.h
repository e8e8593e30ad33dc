/* term.h — one objective term as the step objective sees it (internal): the operations
 * behind a row of the term table (src/method/terms.c; the row's name, flags and options
 * are ecr_term_info in ecr.h). Each term defines its ops beside its loss, in
 * src/method/loss_NAME.c; objective.c creates the terms that are on, runs their forward
 * and backward on each step and adds them to the total, looping over the table.
 *
 * The total of a step:  L = s L_LM + sum over the terms that are on of  w_t L_t,
 * where w_t = weight(o) and s = 1 - the weight of a logit term (KD), else 1. Logit terms
 * are added first, then the others in table order; backward runs in the same order (this
 * order fixes the floating-point sums, so it is part of every published number).
 *
 * A term that is not a logit term works on the step's pooled h [n, d] (and the projection
 * P [D, d] where it uses one): its backward ACCUMULATES w dL/dP into dP and w dL/dh into
 * dh. A "mid" term sees, as h, an intermediate block's pooled output instead (ops.mid). Its per-text inputs (groups, codes, teacher rows) it gathers itself in forward, from
 * the batch's text_id. A logit term (KD) runs on the model's logits; its gradient with
 * respect to the logits, already multiplied by its weight, comes from `dlogits`. */
#ifndef ECR_TERM_H
#define ECR_TERM_H
#include "losses.h"

#include <stddef.h>

/* What a term sees of one step. */
typedef struct ecr_term_step {
    const ecr_objective_opts *o;
    const ecr_batch *b;
    const ecr_data *data;
    const unsigned char *has_tokens; /* [n]: 1 when the text has a slot with pos >= 1      */
    const float *h;                  /* [n, d] pooled embeddings of the step's texts       */
    const float *P;                  /* [D, d] ecr.proj.weight, NULL without one           */
    const float *logits;             /* [B * T, V] the student's logits                    */
    int n, d;
    int D;                           /* rows of P (0 without one)                          */
} ecr_term_step;

typedef struct ecr_term_ops {
    size_t value;             /* offset of its double in ecr_objective_terms (unweighted)  */
    int logits;               /* 1: a term on the logits (see above)                       */
    /* 1 when options `o` switch it on */
    int (*on)(const ecr_objective_opts *o);
    /* its weight w_t at `progress`, the share of the run done (0 to 1; ecr_objective_set_progress) */
    float (*weight)(const ecr_objective_opts *o, double progress);
    /* ECR_E_INVALID naming what is wrong with its options for model m */
    ecr_status (*check)(const ecr_objective_opts *o, const ecr_model *m);
    ecr_status (*create)(const ecr_objective_opts *o, const ecr_model *m, void **state);
    void (*destroy)(void *state);
    /* its loss on the step (and counts) into *t; the state keeps what backward needs */
    ecr_status (*forward)(void *state, const ecr_term_step *s, ecr_objective_terms *t);
    /* not a logit term: dP [D, d] and dh [n, d] += scale * gradient of the last forward */
    void (*backward)(void *state, const ecr_term_step *s, float scale, float *dP, float *dh);
    /* a logit term: its weighted gradient w.r.t. the logits of the last forward, or NULL */
    const float *(*dlogits)(void *state);
    /* > 0: the term works on an intermediate pooled state (the "mid" term): its step's h is
     * the pooled output of block train->mid_layer, and its dh goes back into that block */
    int mid;
} ecr_term_ops;

/* The ops of each term (defined in loss_NAME.c; the table in terms.c points at them). */
extern const ecr_term_ops ecr_term_ops_contrastive, ecr_term_ops_ecr, ecr_term_ops_kd, ecr_term_ops_feat,
    ecr_term_ops_rkd, ecr_term_ops_rel, ecr_term_ops_con, ecr_term_ops_orth, ecr_term_ops_mres,
    ecr_term_ops_mid;

/* Shared by the terms on codes: the code of the step's text i into *code (-1 when it has no
 * tokens), or a refusal when its text_id is outside the anchors' codes (objective.c). */
ecr_status ecr_term_code(const ecr_anchors *an, const ecr_term_step *x, int i, int32_t *code);

/* Shared by the terms on teacher vectors: the rows text_id of the step's n texts of a
 * [rows, dim] matrix into *dst (grown as needed, [n, dim]), or a refusal naming the batch
 * text and `what` (objective.c). */
ecr_status ecr_term_gather_rows(const float *emb, int64_t rows, int dim, const ecr_term_step *x, const char *what,
                                float **dst, size_t *cap);
/* Shared by the terms on the projection: ECR_E_INVALID unless the model's ecr.proj.weight
 * is [D, d] (`what` names the input that fixes D). */
ecr_status ecr_term_check_proj(const ecr_model *m, int D, const char *what);
/* 1 when w is not a finite weight >= 0. */
int ecr_term_bad_weight(float w);

#endif
