/* losses.h — the training objectives beyond the LM loss (internal): the contrastive
 * (teacher) InfoNCE term, the ECR regulariser and the baselines (logit distillation,
 * feature matching, relational KD), each forward beside its backward, and the step
 * objective that combines them with the model's LM loss for the trainer.
 *
 * Conventions: row-major; h = pooled embeddings [n, d] (ecr_forward_out.pooled), one row
 * per text of the batch. Inputs are fp32; every loss is computed in double (sums in a
 * fixed order), so results do not depend on the thread count. Backward functions
 * ACCUMULATE scale * dL/d(input) into their output arrays (except ecr_kd_backward, which
 * writes, see there). Normalisation is
 * F.normalize's: x = v / max(||v||, 1e-12). */
#ifndef ECR_LOSSES_H
#define ECR_LOSSES_H
#include "ecr.h"
#include "util.h"


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
/* The same on rows given in double (the code-contrastive term's u, loss_code.c). */
ecr_status ecr_infonce_forward_d(ecr_infonce *w, const double *h, const int32_t *group, int n, int d,
                                 float tau, double *loss, int *n_anchor);
void ecr_infonce_backward_d(ecr_infonce *w, double scale, double *dh);

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

/* ---- baselines (DESIGN "Baselines"): logit distillation, feature matching, relational KD ------ */

/* Logit distillation. Student logits zs and teacher logits zt [N, V] (fp32, row-major),
 * targets [N] (slots with target >= 0 take part), temperature T > 0:
 * forward:  log p_S = log_softmax(zs / T), log p_T = log_softmax(zt / T)   (per slot, double)
 *           KL_t = sum_v p_T (log p_T - log p_S)
 *           L = T^2 mean_{t : target_t >= 0} KL_t      (L = 0 when no slot has a target)
 * backward: dL/dzs_t = T (p_S - p_T) / n   (n = slots with a target), 0 on the other slots.
 * The workspace keeps the per-slot log-normalisers (2N doubles); nothing of size N x V. */
typedef struct ecr_kd ecr_kd;

ecr_status ecr_kd_create(ecr_kd **out);
void ecr_kd_free(ecr_kd *w);
ecr_status ecr_kd_forward(ecr_kd *w, const float *zs, const float *zt, const int32_t *targets,
                          int N, int V, float temp, double *loss, int64_t *n_used);
/* For the inputs of the last forward (zs, zt unchanged): WRITES (does not accumulate)
 * dz[N, V] = scale * dL/dzs, zeros on slots without a target. dz may be zt itself (each
 * element of zt is read once, just before its place is written): the teacher's logits are
 * then consumed, which saves an N x V buffer. dz must not overlap zs. */
void ecr_kd_backward(ecr_kd *w, const float *zs, const float *zt, float scale, float *dz);

/* Feature matching through the projection P [D, d]. h [n, d], teacher rows t [n, D],
 * used [n] (1 = the text takes part; NULL = all):
 * forward:  z_i = P h_i;  u_i = z_i / ||z_i||;  t^_i = t_i / ||t_i||  (normalize's eps)
 *           L = mean_{i used} (1 - <u_i, t^_i>)        (L = 0 when none is used)
 * backward: du_i = -t^_i / n_used;  dz_i = (du_i - u_i <u_i, du_i>) / ||z_i||;
 *           dP += scale sum_i dz_i h_i^T;  dh_i += scale P^T dz_i. */
typedef struct ecr_feat ecr_feat;

ecr_status ecr_feat_create(ecr_feat **out);
void ecr_feat_free(ecr_feat *w);
ecr_status ecr_feat_forward(ecr_feat *w, const float *P, const float *h, const float *t,
                            const unsigned char *used, int n, int d, int D, double *loss, int *n_used);
/* For the inputs of the last forward: dP [D, d] and dh [n, d] += scale * gradient (either
 * may be NULL). */
void ecr_feat_backward(ecr_feat *w, const float *P, const float *h, float scale, float *dP, float *dh);

/* Relational KD (Park et al. 2019, "Relational Knowledge Distillation"), between the
 * student's u_i = P h_i / ||P h_i|| and the teacher's t^_i = t_i / ||t_i||, over the m used
 * texts of the step (the others take no part), as in the authors' code (RkdDistance,
 * RKdAngle; smooth-L1 with beta 1, sl1(x) = x^2 / 2 for |x| < 1, |x| - 1/2 otherwise):
 *   distance  d_ij = ||x_i - x_j||, mu = mean_{i != j} d_ij, psi_ij = d_ij / mu (0 when mu = 0)
 *             L_D = (1 / m^2) sum_{i != j} sl1(psi^S_ij - psi^T_ij)
 *   angle     e_ij = (x_j - x_i) / d_ij;  c_ijk = <e_ij, e_ik> (the angle at vertex i);
 *             c_ijk = 0 when j = i, k = i, or d_ij or d_ik is below ECR_RKD_MIN_DIST (a
 *             coincident pair has no direction; no gradient flows through it)
 *             L_A = (1 / m^3) sum_{i, j, k} sl1(c^S_ijk - c^T_ijk)
 *   L = ECR_RKD_DIST_WEIGHT L_D + ECR_RKD_ANGLE_WEIGHT L_A    (0 when m < 2)
 * The means run over all m^2 pairs and m^3 triplets, degenerate ones included (they add
 * 0), as the reference's elementwise means do. Cost O(m^2 (m + D)) time, O(m^2) memory:
 * the numerators <x_j - x_i, x_k - x_i> = G_jk - G_ij - G_ik + G_ii come from the Gram
 * matrix G (double), the distances from the rows directly. The backward recomputes the
 * triplet terms instead of storing m^3 values. */
#define ECR_RKD_DIST_WEIGHT 25.0
#define ECR_RKD_ANGLE_WEIGHT 50.0
#define ECR_RKD_MIN_DIST 1e-6

typedef struct ecr_rkd ecr_rkd;

ecr_status ecr_rkd_create(ecr_rkd **out);
void ecr_rkd_free(ecr_rkd *w);
/* P [D, d], h [n, d], t [n, D], used [n] or NULL. *loss = L; *dist = L_D, *angle = L_A and
 * *n_used = m may be NULL. */
ecr_status ecr_rkd_forward(ecr_rkd *w, const float *P, const float *h, const float *t,
                           const unsigned char *used, int n, int d, int D, double *loss,
                           double *dist, double *angle, int *n_used);
/* For the inputs of the last forward: dP [D, d] and dh [n, d] += scale * dL (either may be
 * NULL). */
void ecr_rkd_backward(ecr_rkd *w, const float *P, const float *h, float scale, float *dP, float *dh);

/* ---- codes-only variants of ECR (DESIGN "Codes-only variants") -------------------------------
 * Both work on student rows x_i over the texts of a step: x_i = normalize(P h_i) (the space
 * u, as ECR) when P is given, x_i = normalize(h_i) (h itself) when P is NULL (then D = d).
 * They need nothing but the anchors and each text's code.
 *
 * Relational consistency ("rel"): the students' in-batch similarities matched to the
 * similarities of the anchors of their codes. Target rows t [n, Dt] (the anchor rows
 * a_{code_i}; normalised again here), over the m used texts:
 *   s_ij = <x_i, x_j>,  S_ij = <t^_i, t^_j>,  t^_i = t_i / max(||t_i||, 1e-12)
 *   L = 1 / (m (m - 1)) sum_{i != j, both used} (s_ij - S_ij)^2        (0 when m < 2)
 * backward: dL/dx_i = 4 / (m (m - 1)) sum_{j != i used} (s_ij - S_ij) x_j, then through the
 * normalisation (and P): dP [D, d] += scale dL/dP, dh [n, d] += scale dL/dh. */
typedef struct ecr_rel ecr_rel;

ecr_status ecr_rel_create(ecr_rel **out);
void ecr_rel_free(ecr_rel *w);
/* P [D, d] or NULL, h [n, d], t [n, Dt], used [n] (NULL = all). *n_used (may be NULL) = m. */
ecr_status ecr_rel_forward(ecr_rel *w, const float *P, const float *h, const float *t,
                           const unsigned char *used, int n, int d, int D, int Dt, double *loss,
                           int *n_used);
/* For the inputs of the last forward: dP (ignored when P was NULL) and dh += scale * dL. */
void ecr_rel_backward(ecr_rel *w, const float *P, const float *h, float scale, float *dP, float *dh);

/* Code-contrastive ("con"): the in-batch InfoNCE of ecr_infonce on the rows x, with the
 * texts that share a code as positives: group_i = code_i for used texts, -1 (a negative
 * only, at x_i = 0) for the others. L and |A| as for ecr_infonce (L = 0 when no used text
 * shares its code with another). */
typedef struct ecr_con ecr_con;

ecr_status ecr_con_create(ecr_con **out);
void ecr_con_free(ecr_con *w);
/* P [D, d] or NULL, h [n, d], code [n], used [n] (NULL = all); tau > 0. */
ecr_status ecr_con_forward(ecr_con *w, const float *P, const float *h, const int32_t *code,
                           const unsigned char *used, int n, int d, int D, float tau, double *loss,
                           int *n_anchor);
/* For the inputs of the last forward: dP (ignored when P was NULL) and dh += scale * dL. */
void ecr_con_backward(ecr_con *w, const float *P, const float *h, float scale, float *dP, float *dh);

/* Orthogonality of the projection ("orth"), for P [D, d]:
 *   M = P^T P - I [d, d];  L = ||M||_F^2 / d
 * backward: dP += scale 4 P M / d. At P^T P = I, <P a, P b> = <a, b>: cosines in u are the
 * cosines in h, so the structure ECR gives u is in h too. In double, rows in parallel, each
 * sum in a fixed order. */
typedef struct ecr_orth ecr_orth;

ecr_status ecr_orth_create(ecr_orth **out);
void ecr_orth_free(ecr_orth *w);
ecr_status ecr_orth_forward(ecr_orth *w, const float *P, int D, int d, double *loss);
/* For the P of the last forward: dP [D, d] += scale * dL/dP. */
void ecr_orth_backward(ecr_orth *w, const float *P, float scale, float *dP);

/* ---- the step objective -----------------------------------------------------------------------
 * L = a_LM L_LM + w InfoNCE(h; groups of the texts) + lambda L_ECR(P, h; codes of the texts)
 *     + alpha KD(student logits, teacher logits) + w_f L_feat(P, h; t) + w_r L_RKD(P, h; t),
 * the terms present as configured; a_LM = 1 - alpha with KD, else 1. Texts without tokens
 * (zero pooled row) take part in no embedding term: InfoNCE gives them no group (they stay
 * negatives, at cosine 0), ECR, feat and RKD leave them out. KD covers every slot with a
 * target. ECR, feat and RKD share the projection P = ecr.proj.weight. */
typedef struct ecr_objective_opts {
    float contrastive_weight;    /* w; 0 = no InfoNCE term                                 */
    float contrastive_tau;       /* > 0 when the term is on                                */
    const ecr_anchors *anchors;  /* NULL = no ECR term; borrowed (outlives the objective)  */
    float ecr_weight;            /* lambda                                                 */
    float ecr_tau;               /* > 0                                                    */
    int ecr_soft;                /* soft targets (the anchors must hold soft codes)        */
    ecr_model *kd_teacher;       /* NULL = no KD term; borrowed; the objective runs its
                                    forward on every batch (same vocabulary, max_seq_len
                                    >= the batch's T)                                      */
    float kd_alpha;              /* alpha in [0, 1]                                        */
    float kd_temp;               /* T > 0                                                  */
    const float *feat_emb;       /* [feat_rows, feat_dim] teacher rows by data row; NULL =
                                    no feat term; borrowed                                 */
    int64_t feat_rows;
    int feat_dim;
    float feat_weight;           /* w_f                                                    */
    const float *rkd_emb;        /* likewise for RKD (may be the same matrix as feat_emb)  */
    int64_t rkd_rows;
    int rkd_dim;
    float rkd_weight;            /* w_r                                                    */
    const ecr_anchors *mres[ECR_MRES_MAX]; /* [n_mres] further anchor sets (multi-resolution
                                    codes: other K, same dim and texts as `anchors`); borrowed */
    int n_mres;                  /* 0 = no mres term                                       */
    const ecr_train_opts *train; /* the numbers of the terms that read them from the training
                                    options (rel, con; their rows' fields); NULL: those
                                    terms are off; borrowed                                */
    const ecr_comm *comm;        /* data parallelism (ecr_train_opts.comm): NULL = one
                                    process; borrowed                                      */
} ecr_objective_opts;

typedef struct ecr_objective_terms {
    double lm;                   /* mean token cross-entropy (nats)                        */
    double contrastive;          /* InfoNCE, unweighted (0 when off or no positive)        */
    double ecr;                  /* mean KL, unweighted (0 when off)                       */
    double kd;                   /* T^2 mean KL over target slots, unweighted (0 when off) */
    double feat;                 /* mean (1 - cos), unweighted (0 when off)                */
    double rkd;                  /* 25 L_D + 50 L_A, before w_r (0 when off)               */
    double rkd_dist, rkd_angle;  /* L_D and L_A                                            */
    double rel, con;             /* relational consistency, code-contrastive, unweighted    */
    double orth;                 /* ||P^T P - I||^2 / d, unweighted                        */
    double mres;                 /* sum over the further anchor sets of their mean KL      */
    double mid;                  /* ECR's mean KL on the intermediate pooled state         */
    double total;                /* the objective optimised (see above)                    */
    int64_t n_targets;           /* LM target tokens                                       */
    int n_contrastive;           /* texts with a positive                                  */
    int n_ecr;                   /* texts in the ECR mean                                  */
    int n_feat, n_rkd;           /* texts in the feat mean / the RKD set                   */
    int n_rel, n_con;            /* texts in the rel set / with a positive in con          */
} ecr_objective_terms;

typedef struct ecr_objective ecr_objective;

/* Checks the options against the model: ECR, feat and RKD need the model's
 * "ecr.proj.weight" [D, d] with D = the anchors' dim / feat_dim / rkd_dim; soft needs soft
 * codes; KD needs a teacher of the same vocabulary; weights finite and >= 0, 0 <= alpha <= 1,
 * temperatures > 0. ECR_E_INVALID naming what is wrong. */
ecr_status ecr_objective_create(const ecr_objective_opts *o, const ecr_model *m,
                                ecr_objective **out);
void ecr_objective_free(ecr_objective *ob);
/* Model forward on b (and the teacher's, with KD) plus the terms. Groups are
 * d->group[text_id], codes the anchors' rows text_id, teacher vectors the rows text_id of
 * feat_emb / rkd_emb (each text_id must be below those row counts). Fills *t (also when the
 * total is not finite; the caller decides).
 * With a communicator of size > 1, b is the step's whole batch (the same on every rank):
 * the model (and the KD teacher) runs on this rank's rows of it only; the LM and KD sums
 * and counts are summed over the ranks and the pooled rows gathered, so *t and every term
 * are those of the whole batch, on every rank. */
ecr_status ecr_objective_forward(ecr_objective *ob, ecr_model *m, const ecr_batch *b,
                                 const ecr_data *d, ecr_objective_terms *t);
/* The share of the run done (0 to 1, default 0) for the terms' weight schedules (the ECR
 * weight's warm-up and decay); the next forward and backward use it. */
void ecr_objective_set_progress(ecr_objective *ob, double progress);
/* Backward of the last forward's total into the model's gradient block (accumulates; the
 * ECR, feat and RKD terms add their dP at ecr.proj.weight). With KD, the teacher's logits
 * buffer is overwritten with the KD gradient (the teacher never runs a backward).
 * With a communicator of size > 1 the block receives this rank's share of the gradient of
 * the whole batch's total (dP on rank 0 only): the sum over the ranks' blocks is the
 * gradient; summing them is the caller's (the trainer's). */
ecr_status ecr_objective_backward(ecr_objective *ob, ecr_model *m, const ecr_batch *b);
/* Seconds the objective has spent in collectives since it was created. */
double ecr_objective_comm_seconds(const ecr_objective *ob);

#endif
