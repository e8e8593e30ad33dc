/* rng.h — deterministic random numbers (internal).
 *
 * Two generators, each depending only on its seed (same seed, same numbers, on every machine):
 * - ecr_rng: xoshiro256** seeded through splitmix64, normals by Box-Muller in double
 *   precision; for weight initialisation, anchors and metrics.
 * - splitmix64 streams, whose whole state is one uint64_t (cheap to save in a checkpoint): the
 *   samplers' data order, the trainer's cursor and sampling in generation. */
#ifndef ECR_RNG_H
#define ECR_RNG_H
#include <stdint.h>

typedef struct ecr_rng {
    uint64_t s[4];
    double spare;             /* second Box-Muller value, valid when has_spare */
    int has_spare;
} ecr_rng;

/* Seeds the generator from one 64-bit value (any value, including 0). */
void ecr_rng_seed(ecr_rng *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t ecr_rng_u64(ecr_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double ecr_rng_uniform(ecr_rng *r);
/* Standard normal N(0, 1). */
double ecr_rng_normal(ecr_rng *r);
/* splitmix64 step: a well-mixed 64-bit value from `*state` (advanced). */
uint64_t ecr_splitmix64(uint64_t *state);
/* Uniform integer in [0, n) from the stream `*state`, without modulo bias; n >= 1. */
uint64_t ecr_splitmix64_below(uint64_t *state, uint64_t n);
/* Uniform double in [0, 1) with 53 random bits from the stream `*state`. */
double ecr_splitmix64_unit(uint64_t *state);
/* The initial state of stream `stream` of seed `seed`: well mixed, distinct per pair. */
uint64_t ecr_splitmix64_stream(uint64_t seed, uint64_t stream);

#endif
