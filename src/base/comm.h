/* comm.h — the library's side of ecr_comm (internal; the struct is in ecr.h): each
 * collective, its failure turned into ECR_E_RUNTIME "rank R of N: OPERATION failed", its
 * wall time added to *seconds (which may be NULL). With no communicator (NULL) or one of
 * size 1 they exchange nothing: the sums leave x as it is, the gather copies `mine`.
 * Arrays are sent in buckets of at most ECR_COMM_BUCKET elements (bytes for bcast), one
 * collective each, so no count overflows an MPI int. */
#ifndef ECR_COMM_H
#define ECR_COMM_H
#include "ecr.h"

#define ECR_COMM_BUCKET ((size_t)1 << 22)

/* The communicator's size and this process's rank (1 and 0 without one). */
int ecr_comm_size(const ecr_comm *c);
int ecr_comm_rank(const ecr_comm *c);
/* x[0..n) summed over the ranks, in place, on every rank. */
ecr_status ecr_comm_sum_f32(const ecr_comm *c, float *x, size_t n, double *seconds);
ecr_status ecr_comm_sum_f64(const ecr_comm *c, double *x, size_t n, double *seconds);
/* all[] = the ranks' `mine` in rank order; counts[r] floats from rank r (a single call: the
 * total must stay below 2^31). */
ecr_status ecr_comm_gather_f32(const ecr_comm *c, const float *mine, float *all, const int *counts,
                               double *seconds);
/* x[0..n) bytes of rank `root` to every rank. */
ecr_status ecr_comm_bcast(const ecr_comm *c, void *x, size_t n, int root, double *seconds);

#endif
