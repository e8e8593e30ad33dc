/* losses.h — the training objectives beyond the LM loss (internal): the contrastive
 * (teacher) InfoNCE term and the ECR regulariser, each forward beside its backward, and
 * the step objective that combines them with the model's LM loss for the trainer.
 *
 * Conventions: row-major; h = pooled embeddings [n, d] (ecr_forward_out.pooled), one row
 * per text of the batch. Inputs are fp32; every loss is computed in double (sums in a
 * fixed order), so results do not depend on the thread count. Backward functions
 * ACCUMULATE scale * dL/d(input) into their output arrays. Normalisation is
 * F.normalize's: x = v / max(||v||, 1e-12). */
#ifndef ECR_LOSSES_H
#define ECR_LOSSES_H
#include "ecr.h"

#define ECR_NORM_EPS 1e-12

/* ---- symmetric multi-positive in-batch InfoNCE --------------------------------------------
 * forward:  x_i = h_i / ||h_i||;  s_ik = <x_i, x_k> / tau;
 *           P(i) = {j != i : group[j] == group[i] >= 0};  A = {i : P(i) non-empty}
 *           loss_i = -mean_{j in P(i)} log( exp(s_ij) / sum_{k != i} exp(s_ik) )
 *           L = mean_{i in A} loss_i      (L = 0 and n_anchor = 0 when A is empty)
 *           Every text is an anchor (if it has a positive) and a negative for the others,
 *           so the loss is symmetric. group[i] < 0: no positive, only a negative.
 * backward: dh[n, d] += scale * dL/dh.
 * The workspace keeps what the backward needs (x, 1/||h||, dL/ds); it grows to the
 * largest n * d seen. */
typedef struct ecr_infonce ecr_infonce;

ecr_status ecr_infonce_create(ecr_infonce **out);
void ecr_infonce_free(ecr_infonce *w);
/* h [n, d], group [n]; tau > 0. *loss = L, *n_anchor (may be NULL) = |A|. */
ecr_status ecr_infonce_forward(ecr_infonce *w, const float *h, const int32_t *group, int n, int d,
                               float tau, double *loss, int *n_anchor);
/* For the inputs of the last forward: dh [n, d] += scale * dL/dh. */
void ecr_infonce_backward(ecr_infonce *w, float scale, float *dh);

/* ---- the ECR regulariser (DESIGN "The method") ---------------------------------------------
 * Anchors A [K, D] (unit rows), temperature tau, projection P [D, d]:
 * forward:  z_i = P h_i [D];  u_i = z_i / ||z_i||;  l_i = A u_i / tau [K];  q_i = softmax(l_i)
 *           target pi_i [K]:
 *             hard  pi_i = Pi[code_i],  Pi = row-softmax(A A^T / tau)  [K, K]
 *             soft  pi_i = softmax(soft_sim_i / tau) on soft_idx_i (M entries), 0 elsewhere
 *           KL_i = sum_k pi_ik (log pi_ik - log q_ik)   (0 log 0 = 0)
 *           L = mean_{i : code_i >= 0} KL_i     (texts with code < 0 are left out; L = 0
 *           when none is left)
 * backward: dKL_i/dl_i = q_i - pi_i;  du_i = A^T (q_i - pi_i) / tau;
 *           dz_i = (du_i - u_i <u_i, du_i>) / ||z_i||;
 *           dP [D, d] += scale / n_used * sum_i dz_i h_i^T;   dh_i += scale / n_used * P^T dz_i.
 * Rows of Pi are cached at creation when K <= ECR_REG_CACHE_K (else computed per text). */
#define ECR_REG_CACHE_K 1024

typedef struct ecr_reg ecr_reg;

/* anchors [K, D] are borrowed (must outlive the object); tau > 0. */
ecr_status ecr_reg_create(const float *anchors, int K, int D, float tau, ecr_reg **out);
void ecr_reg_free(ecr_reg *w);
/* P [D, d], h [n, d], code [n] (< K; < 0 = leave the text out). Soft targets when soft_idx
 * is non-NULL: soft_idx, soft_sim [n, M] (indices < K). *loss = L, *n_used (may be NULL) =
 * texts in the mean. */
ecr_status ecr_reg_forward(ecr_reg *w, const float *P, const float *h, int n, int d,
                           const int32_t *code, const uint16_t *soft_idx, const float *soft_sim,
                           int M, double *loss, int *n_used);
/* For the inputs of the last forward (P and h again, unchanged): dP [D, d] and dh [n, d]
 * += scale * gradient. Either output may be NULL. */
void ecr_reg_backward(ecr_reg *w, const float *P, const float *h, float scale, float *dP, float *dh);
/* Row c of Pi (K doubles) into out. */
void ecr_reg_target_row(const ecr_reg *w, int c, double *out);

/* ---- the step objective -----------------------------------------------------------------------
 * L = L_LM + w * InfoNCE(h; groups of the texts) + lambda * L_ECR(P, h; codes of the texts),
 * the terms present as configured. Texts without tokens (zero pooled row) take part in
 * neither term as anchors: InfoNCE gives them no group (they stay negatives, at cosine 0),
 * ECR leaves them out. */
typedef struct ecr_objective_opts {
    float contrastive_weight;    /* w; 0 = no InfoNCE term                                 */
    float contrastive_tau;       /* > 0 when the term is on                                */
    const ecr_anchors *anchors;  /* NULL = no ECR term; borrowed (outlives the objective)  */
    float ecr_weight;            /* lambda                                                 */
    float ecr_tau;               /* > 0                                                    */
    int ecr_soft;                /* soft targets (the anchors must hold soft codes)        */
} ecr_objective_opts;

typedef struct ecr_objective_terms {
    double lm;                   /* mean token cross-entropy (nats)                        */
    double contrastive;          /* InfoNCE, unweighted (0 when off or no positive)        */
    double ecr;                  /* mean KL, unweighted (0 when off)                       */
    double total;                /* lm + w contrastive + lambda ecr                        */
    int64_t n_targets;           /* LM target tokens                                       */
    int n_contrastive;           /* texts with a positive                                  */
    int n_ecr;                   /* texts in the ECR mean                                  */
} ecr_objective_terms;

typedef struct ecr_objective ecr_objective;

/* Checks the options against the model (ECR needs the model's "ecr.proj.weight" [D, d] with
 * D = the anchors' dim; soft needs soft codes): ECR_E_INVALID naming what is wrong. */
ecr_status ecr_objective_create(const ecr_objective_opts *o, const ecr_model *m,
                                ecr_objective **out);
void ecr_objective_free(ecr_objective *ob);
/* Model forward on b plus the terms. Groups are d->group[text_id], codes the anchors'
 * rows text_id (each text_id must be < the anchors' rows). Fills *t (also when the total is
 * not finite; the caller decides). */
ecr_status ecr_objective_forward(ecr_objective *ob, ecr_model *m, const ecr_batch *b,
                                 const ecr_data *d, ecr_objective_terms *t);
/* Backward of the last forward's total into the model's gradient block (accumulates; the
 * ECR term adds its dP at ecr.proj.weight). */
ecr_status ecr_objective_backward(ecr_objective *ob, ecr_model *m, const ecr_batch *b);

#endif
