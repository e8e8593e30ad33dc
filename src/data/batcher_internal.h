/* batcher_internal.h — the in-order batcher that evaluation and embedding share (internal;
 * defined in batcher.c). */
#ifndef ECR_BATCHER_INTERNAL_H
#define ECR_BATCHER_INTERNAL_H
#include "ecr.h"

/* ecr_batcher_sequential: a batcher over d in data order (ecr_sampler_sequential), for
 * passes that read every text once (evaluation, embedding): rows of T tokens,
 * tokens_per_batch / T of them (at least 1, at most 65536). On success *out is the caller's
 * (ecr_batcher_free); on failure *out is NULL and the status says why. */
ecr_status ecr_batcher_sequential(const ecr_data *d, int64_t tokens_per_batch, int T, ecr_batcher **out);

#endif
