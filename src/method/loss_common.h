/* loss_common.h — helpers shared by the objective terms' files (loss_*.c, objective.c);
 * internal to them. Every term computes in double, one text per thread, in a fixed order
 * (see losses.h). */
#ifndef ECR_LOSS_COMMON_H
#define ECR_LOSS_COMMON_H
#include "losses.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* Grows *p to hold `need` elements of `size` bytes (contents not kept). */
static inline ecr_status reserve(void **p, size_t *cap, size_t need, size_t size, const char *what) {
    if (need <= *cap && *p) return ECR_OK;
    free(*p);
    *p = malloc((need ? need : 1) * size);
    *cap = *p ? need : 0;
    return *p ? ECR_OK : ecr_fail(ECR_E_NOMEM, "%s: out of memory for %zu elements", what, need);
}
#define RESERVE(ptr, capv, need, what) reserve((void **)&(ptr), &(capv), (need), sizeof *(ptr), what)

/* x[n] = v / max(||v||, eps) in double; *rnorm = 1 / max(||v||, eps); returns 1 when clamped. */
static inline int normalize_row(const double *v, int n, double *x, double *rnorm) {
    double s = 0;
    for (int j = 0; j < n; j++) s += v[j] * v[j];
    double norm = sqrt(s);
    int clamped = !(norm > ECR_NORM_EPS);
    double r = 1.0 / (clamped ? ECR_NORM_EPS : norm);
    for (int j = 0; j < n; j++) x[j] = v[j] * r;
    *rnorm = r;
    return clamped;
}

/* Backward of normalize_row: dv[n] = (dx - x <x, dx>) * rnorm (dx * rnorm when clamped). */
static inline void normalize_backward(const double *x, const double *dx, double rnorm, int clamped, int n,
                               double *dv) {
    double xd = 0;
    if (!clamped)
        for (int j = 0; j < n; j++) xd += x[j] * dx[j];
    for (int j = 0; j < n; j++) dv[j] = (dx[j] - x[j] * xd) * rnorm;
}

/* log(sum_k exp(l[k])) over n > 0 values. */
static inline double log_sum_exp(const double *l, int n) {
    double mx = l[0];
    for (int k = 1; k < n; k++)
        if (l[k] > mx || l[k] != l[k]) mx = l[k];
    if (!isfinite(mx)) return mx;
    double s = 0;
    for (int k = 0; k < n; k++) s += exp(l[k] - mx);
    return mx + log(s);
}

/* u_i = normalize(P h_i) in double for the used rows [n] of h [n, d], P [D, d] (the others:
 * u_i = 0, rz = 0); rz[i] = 1 / max(|P h_i|, eps), clamped[i] = 1 when the norm was clamped.
 * P NULL: u_i = normalize(h_i) (then D = d). Shared by feat, RKD and rel. */
void ecr_loss_project_rows(const float *P, const float *h, const unsigned char *used, int n, int d,
                           int D, double *u, double *rz, unsigned char *clamped);
/* Backward of ecr_loss_project_rows. du [n, D] holds dL/du_i (scaled; zero rows for unused
 * texts) and is overwritten with dL/dz_i; then dh_i += P^T dz_i (when dh is non-NULL) and
 * dP += sum_i dz_i h_i^T, texts in order (when dP is non-NULL). P NULL: dh_i += dz_i and
 * no dP. acc: scratch of max(n, D) * d doubles. */
void ecr_loss_project_backward(const float *P, const float *h, const unsigned char *used, int n,
                               int d, int D, const double *u, const double *rz,
                               const unsigned char *clamped, double *du, double *acc, float *dP,
                               float *dh);

#endif
