/* rng.c — splitmix64 / xoshiro256** and Box-Muller normals (see rng.h). */
#include "ecr.h"
#include "rng.h"

#include <math.h>

uint64_t ecr_hash_u64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t ecr_splitmix64(uint64_t *state) {
    uint64_t z = ecr_hash_u64(*state);
    *state += 0x9E3779B97F4A7C15ULL;
    return z;
}

uint64_t ecr_splitmix64_below(uint64_t *state, uint64_t n) {
    uint64_t threshold = (0 - n) % n; /* 2^64 mod n: reject the biased low values */
    for (;;) {
        uint64_t r = ecr_splitmix64(state);
        if (r >= threshold) return r % n;
    }
}

double ecr_splitmix64_unit(uint64_t *state) {
    return (double)(ecr_splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t ecr_splitmix64_stream(uint64_t seed, uint64_t stream) {
    uint64_t s = seed ^ 0x6A09E667F3BCC908ULL;
    uint64_t a = ecr_splitmix64(&s);
    s = a ^ (stream * 0xD1B54A32D192ED03ULL);
    return ecr_splitmix64(&s);
}

void ecr_rng_seed(ecr_rng *r, uint64_t seed) {
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++) r->s[i] = ecr_splitmix64(&sm);
    r->has_spare = 0;
    r->spare = 0.0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ecr_rng_u64(ecr_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ecr_rng_uniform(ecr_rng *r) {
    return (double)(ecr_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double ecr_rng_normal(ecr_rng *r) {
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = 1.0 - ecr_rng_uniform(r);     /* (0, 1]: log is finite */
    double u2 = ecr_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586476925 * u2;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}
