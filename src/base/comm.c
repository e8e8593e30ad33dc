/* comm.c — the collectives of ecr_comm as the library calls them (contracts in comm.h). */
#include "comm.h"
#include "util.h"

#include <string.h>

int ecr_comm_size(const ecr_comm *c) { return c && c->size > 1 ? c->size : 1; }
int ecr_comm_rank(const ecr_comm *c) { return c && c->size > 1 ? c->rank : 0; }

static ecr_status failed(const ecr_comm *c, const char *what) {
    return ecr_fail(ECR_E_RUNTIME, "rank %d of %d: %s failed", c->rank, c->size, what);
}

ecr_status ecr_comm_sum_f32(const ecr_comm *c, float *x, size_t n, double *seconds) {
    if (ecr_comm_size(c) == 1) return ECR_OK;
    double t0 = ecr_now();
    for (size_t i = 0; i < n; i += ECR_COMM_BUCKET) {
        size_t k = n - i < ECR_COMM_BUCKET ? n - i : ECR_COMM_BUCKET;
        if (c->sum_f32(c->ctx, x + i, k)) return failed(c, "sum (float)");
    }
    if (seconds) *seconds += ecr_now() - t0;
    return ECR_OK;
}

ecr_status ecr_comm_sum_f64(const ecr_comm *c, double *x, size_t n, double *seconds) {
    if (ecr_comm_size(c) == 1) return ECR_OK;
    double t0 = ecr_now();
    for (size_t i = 0; i < n; i += ECR_COMM_BUCKET) {
        size_t k = n - i < ECR_COMM_BUCKET ? n - i : ECR_COMM_BUCKET;
        if (c->sum_f64(c->ctx, x + i, k)) return failed(c, "sum (double)");
    }
    if (seconds) *seconds += ecr_now() - t0;
    return ECR_OK;
}

ecr_status ecr_comm_gather_f32(const ecr_comm *c, const float *mine, float *all, const int *counts,
                               double *seconds) {
    if (ecr_comm_size(c) == 1) {
        if (all != mine) memmove(all, mine, (size_t)counts[0] * sizeof *all);
        return ECR_OK;
    }
    double t0 = ecr_now();
    if (c->gather_f32(c->ctx, mine, all, counts)) return failed(c, "gather");
    if (seconds) *seconds += ecr_now() - t0;
    return ECR_OK;
}

ecr_status ecr_comm_bcast(const ecr_comm *c, void *x, size_t n, int root, double *seconds) {
    if (ecr_comm_size(c) == 1) return ECR_OK;
    double t0 = ecr_now();
    for (size_t i = 0; i < n; i += ECR_COMM_BUCKET) {
        size_t k = n - i < ECR_COMM_BUCKET ? n - i : ECR_COMM_BUCKET;
        if (c->bcast(c->ctx, (char *)x + i, k, root)) return failed(c, "broadcast");
    }
    if (seconds) *seconds += ecr_now() - t0;
    return ECR_OK;
}
