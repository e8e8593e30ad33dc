/* half.c — fp16 (IEEE binary16) and bf16 (bfloat16) <-> fp32 conversions.
 *
 * Narrowing conversions round to nearest, ties to even, like the hardware/NumPy/PyTorch
 * casts: overflow becomes +-inf, values below half the smallest subnormal become +-0,
 * NaN stays NaN (quiet, sign and top payload bits kept). Widening is exact. */
#include "ecr.h"

#include <string.h>

static uint32_t f32_bits(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static float bits_f32(uint32_t b) {
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* Shifts `full` right by `shift` (1..31) rounding to nearest even. */
static uint32_t shift_rne(uint32_t full, int shift) {
    uint32_t q = full >> shift;
    uint32_t rem = full & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return q;
}

uint16_t ecr_f32_to_f16(float x) {
    uint32_t b = f32_bits(x);
    uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
    uint32_t exp = (b >> 23) & 0xFFu, man = b & 0x7FFFFFu;
    if (exp == 0xFFu)                                   /* inf or NaN (quiet it) */
        return (uint16_t)(sign | 0x7C00u | (man ? 0x200u | (man >> 13) : 0u));
    if (exp >= 143u) return (uint16_t)(sign | 0x7C00u); /* >= 2^16: overflow      */
    if (exp >= 113u) {                                  /* f16 normal range       */
        /* (e << 10 | man >> 13) rounded; a carry out of the mantissa bumps the
         * exponent, which is exactly right (and 0x7BFF + 1 = inf).              */
        uint32_t h = ((exp - 112u) << 23 | man) ;
        return (uint16_t)(sign | shift_rne(h, 13));
    }
    if (exp < 102u) return sign;                        /* < 2^-25: rounds to 0   */
    /* f16 subnormal: value / 2^-24 = (1.man * 2^23) >> (126 - exp). Rounding up to
     * 0x400 gives the smallest normal, again the right encoding.              */
    return (uint16_t)(sign | shift_rne(man | 0x800000u, (int)(126u - exp)));
}

float ecr_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (exp == 0x1Fu) return bits_f32(sign | 0x7F800000u | (man << 13));
    if (exp != 0) return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
    float mag = (float)man * 0x1p-24f;                  /* subnormal or zero: exact */
    return sign ? -mag : mag;
}

uint16_t ecr_f32_to_bf16(float x) {
    uint32_t b = f32_bits(x);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u)                /* NaN: keep it a (quiet) NaN */
        return (uint16_t)((b >> 16) | 0x40u);
    b += 0x7FFFu + ((b >> 16) & 1u);                    /* RNE; may carry to inf */
    return (uint16_t)(b >> 16);
}

float ecr_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }
