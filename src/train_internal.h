/* train_internal.h — helpers shared by the trainer's files (batcher.c, train.c, embed.c).
 * Not part of the public API. */
#ifndef ECR_TRAIN_INTERNAL_H
#define ECR_TRAIN_INTERNAL_H
#include "ecr.h"

/* ecr_tr_batcher_sequential: a batcher over d in data order (ecr_sampler_sequential), for
 * passes that read every text once (evaluation, embedding): rows of T tokens,
 * tokens_per_batch / T of them (at least 1, at most 65536). On success *out is the caller's
 * (ecr_batcher_free); on failure *out is NULL and the status says why. */
ecr_status ecr_tr_batcher_sequential(const ecr_data *d, int64_t tokens_per_batch, int T, ecr_batcher **out);

/* The model's fp32 parameters, read-only (unlike ecr_model_params, this does not mark the
 * bf16 copy stale: for readers such as the ECR projection). Borrowed. */
const float *ecr_tr_model_params(const ecr_model *m);

#endif
