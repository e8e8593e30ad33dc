/* metrics_internal.h — what the metrics' files share (internal): metrics.c (covariance
 * metrics, PCA, anisotropy, CKA, the whole geometry of a matrix) and metrics_nn.c (the
 * neighbour passes: k-NN, silhouette, cross-lingual P@1, label transfer, anchors). */
#ifndef ECR_METRICS_INTERNAL_H
#define ECR_METRICS_INTERNAL_H
#include "ecr.h"

enum {
    GR = 256,                 /* rows per block of the covariance products                   */
    TI = 4, TJ = 8,           /* covariance output tile                                      */
    SIM_BR = 64,              /* query rows per similarity block (at most)                   */
    SIM_FLOATS = 1 << 21,     /* similarity floats per thread (at most; 8 MB)                */
};

/* metrics.c */
/* ECR_E_INVALID naming `what` unless x is [n, d] with 0 <= n <= INT32_MAX rows, d >= 1
 * columns and every value finite. */
ecr_status mt_check_matrix(const float *x, int64_t n, int d, const char *what);
/* x [n, d] with each row of unit length (a zero row stays zero), or NULL when out of memory. */
float *mt_normalised_copy(const float *x, int64_t n, int d);

/* metrics_nn.c */
/* Share of the rows un [n, dim] (normalised) whose nearest anchor is their code. */
ecr_status mt_agreement_of(const float *un, int64_t n, int dim, const float *anchors, int k,
                           const uint16_t *codes, double *out);
/* ECR_E_INVALID unless 1 <= k <= ECR_ANCHORS_MAX_K, the anchors [k, dim] are finite and
 * every one of the n codes is below k. */
ecr_status mt_check_anchors(const float *anchors, int k, int dim, const uint16_t *codes,
                            int64_t n);
/* ECR_E_INVALID naming `what` unless every v[i] is in [-1, n_values). */
ecr_status mt_check_labels(const int32_t *v, int64_t n, int n_values, const char *what);
/* P@1 on normalised rows. */
ecr_status mt_p1_of(const float *xn, int64_t n, int d, const int32_t *lang, const int32_t *group,
                    int n_langs, int en, double *per_lang, double *mean);
/* One pass over xn [n, d] (normalised): neighbour lists nbr [n, k] (k = 0: none) and the
 * silhouette by label (label NULL: none; *sil = NaN if undefined). */
ecr_status mt_self_pass(const float *xn, int64_t n, int d, int k, int32_t *nbr,
                        const int32_t *label, int n_labels, double *sil);
/* Label transfer on normalised rows. */
ecr_status mt_transfer_of(const float *xn, int64_t n, int d, const int32_t *lang,
                          const int32_t *label, int n_langs, int n_labels, int en, int k,
                          double *per_lang, double *mean);

#endif
