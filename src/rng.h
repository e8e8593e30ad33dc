/* rng.h — deterministic random numbers for weight initialisation (internal).
 *
 * xoshiro256** seeded through splitmix64; normals by Box-Muller in double precision.
 * The sequence depends only on the seed: same seed, same numbers, on every machine. */
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

#endif
