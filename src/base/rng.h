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

/* Random-stream tags and seed mixers. Each stochastic consumer draws from its own stream of
 * the run's seed; these constants fix every published result (init, data order, anchors,
 * samples): never change one, add a new tag for a new consumer. */
#define ECR_STREAM_TRAINER 0x7472616eULL      /* "tran": the trainer's reserved stream (saved) */
#define ECR_STREAM_GENERATE 0x67656eULL       /* "gen": sampling in ecr generate              */
#define ECR_STREAM_GROUPS 0x67726F7570ULL     /* "group": the group sampler, xor the epoch;
                                                 the text order uses the epoch alone         */
#define ECR_SEED_INIT 0x9E3779B97F4A7C15ULL   /* weight init: splitmix64(seed ^ this), then
                                                 xor the FNV-1a hash of each tensor's name   */
#define ECR_SEED_KMEANS 0x632BE59BD9B4E019ULL /* anchors: restart r seeds from
                                                 splitmix64(seed + this * r)                 */

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
