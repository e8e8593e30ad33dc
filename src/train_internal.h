/* train_internal.h — helpers shared by the trainer's files (batcher.c, train.c,
 * generate.c). Not part of the public API. */
#ifndef ECR_TRAIN_INTERNAL_H
#define ECR_TRAIN_INTERNAL_H
#include "ecr.h"

/* A small deterministic PRNG (splitmix64). The state is one uint64_t. */
uint64_t ecr_tr_rng_next(uint64_t *state);
/* Uniform integer in [0, n) without modulo bias; n >= 1. */
uint64_t ecr_tr_rng_below(uint64_t *state, uint64_t n);
/* Uniform double in [0, 1). */
double ecr_tr_rng_unit(uint64_t *state);
/* A well-mixed state from two 64-bit inputs (seed, stream). */
uint64_t ecr_tr_rng_seed(uint64_t seed, uint64_t stream);

#endif
