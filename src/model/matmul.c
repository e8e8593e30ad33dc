/* matmul.c — sgemm through BLAS, a portable cache-blocked fallback, our own sgemv, and thread control.
 *
 * The fallback follows the GotoBLAS scheme: C is cut into MC x NB tiles, K into KC-deep
 * panels; for each tile and panel, op(A) is packed into MR-tall micro-panels and op(B)
 * into NR-wide micro-panels, and an MR x NR register-tile kernel (GCC vector extensions,
 * vectorised with -O3 -march=native) accumulates into C. Each element of C is summed in
 * the same order whatever the thread count, so results are reproducible across thread
 * counts. */
#include "ecr.h"
#include "matmul.h"
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#ifdef ECR_HAVE_OMP
#include <omp.h>
#endif
#ifdef ECR_HAVE_BLAS
#include <cblas.h>
#endif

/* ---- threads ------------------------------------------------------------------------- */

void ecr_set_threads(int n) {
#ifdef ECR_HAVE_OMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#ifdef ECR_HAVE_BLAS
    openblas_set_num_threads(n);
#endif
#else
    (void)n; /* one thread; BLAS, if any, keeps its own single-threaded default */
#ifdef ECR_HAVE_BLAS
    openblas_set_num_threads(1);
#endif
#endif
}

int ecr_get_threads(void) {
#ifdef ECR_HAVE_OMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ---- portable sgemm ------------------------------------------------------------------ */

enum { MR = 6, NR = 16, MC = 96, KC = 256, NB = 256 };

/* Element (i, k) of op(A) and (k, j) of op(B). */
#define OPA(i, k) (ta ? A[(size_t)(k) * lda + (i)] : A[(size_t)(i) * lda + (k)])
#define OPB(k, j) (tb ? B[(size_t)(j) * ldb + (k)] : B[(size_t)(k) * ldb + (j)])

/* Packs op(A)[i0:i0+mc, p0:p0+kc] as ceil(mc/MR) micro-panels [kc][MR], zero-padded. */
static void pack_a(float *restrict ap, int ta, const float *A, int lda, int i0, int mc, int p0,
                   int kc) {
    for (int ir = 0; ir < mc; ir += MR) {
        int mr = mc - ir < MR ? mc - ir : MR;
        float *dst = ap + (size_t)ir * kc;
        for (int k = 0; k < kc; k++)
            for (int i = 0; i < MR; i++)
                dst[k * MR + i] = i < mr ? OPA(i0 + ir + i, p0 + k) : 0.0f;
    }
}

/* Packs op(B)[p0:p0+kc, j0+jr:...] micro-panel jr as [kc][NR], zero-padded. */
static void pack_b_panel(float *restrict dst, int tb, const float *B, int ldb, int p0, int kc,
                         int j, int nr) {
    if (!tb && nr == NR) {
        for (int k = 0; k < kc; k++)
            memcpy(dst + k * NR, B + (size_t)(p0 + k) * ldb + j, NR * sizeof(float));
        return;
    }
    for (int k = 0; k < kc; k++)
        for (int c = 0; c < NR; c++) dst[k * NR + c] = c < nr ? OPB(p0 + k, j + c) : 0.0f;
}

/* 8-float vectors (GCC vector extension): AVX/AVX2 registers, or pairs of SSE registers. */
typedef float v8f __attribute__((vector_size(32)));

/* C[0:mr, 0:nr] += alpha * a (micro-panel [kc][MR]) * b (micro-panel [kc][NR], 64-byte
 * aligned). The MR x NR tile lives in 12 vector registers. */
static void kernel(int kc, const float *restrict a, const float *restrict b, float *restrict c,
                   int ldc, int mr, int nr, float alpha) {
    v8f acc[MR][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = (v8f){0};
    for (int k = 0; k < kc; k++) {
        v8f b0, b1;
        memcpy(&b0, b + (size_t)k * NR, sizeof b0);
        memcpy(&b1, b + (size_t)k * NR + 8, sizeof b1);
        const float *ak = a + (size_t)k * MR;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            acc[i][0] += ak[i] * b0;
            acc[i][1] += ak[i] * b1;
        }
    }
    float out[MR][NR];
    memcpy(out, acc, sizeof out);
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) c[(size_t)i * ldc + j] += alpha * out[i][j];
}

static void scale_c(float *C, int ldc, int M, int N, float beta) {
    for (int i = 0; i < M; i++) {
        float *row = C + (size_t)i * ldc;
        if (beta == 0.0f)
            memset(row, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) row[j] *= beta;
    }
}

/* Per-thread packing buffer (A block MC x KC, then B block KC x NB), allocated on a
 * thread's first product and kept for the life of the thread. */
static _Thread_local float *tl_pack;

static float *pack_buffer(void) {
    if (!tl_pack) tl_pack = aligned_alloc(64, (size_t)(MC + NB) * KC * sizeof(float));
    return tl_pack;
}

/* One MC x NB tile of C, all of K. */
static void gemm_tile(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                      const float *B, int ldb, float beta, float *C, int ldc, int i0, int j0) {
    int mc = M - i0 < MC ? M - i0 : MC;
    int nc = N - j0 < NB ? N - j0 : NB;
    float *Ct = C + (size_t)i0 * ldc + j0;
    scale_c(Ct, ldc, mc, nc, beta);
    if (K <= 0 || alpha == 0.0f) return;
    float *ap = pack_buffer();
    if (!ap) { /* out of memory: a slow, allocation-free path keeps the result correct */
        for (int i = 0; i < mc; i++)
            for (int j = 0; j < nc; j++) {
                float s = 0.0f;
                for (int k = 0; k < K; k++) s += OPA(i0 + i, k) * OPB(k, j0 + j);
                Ct[(size_t)i * ldc + j] += alpha * s;
            }
        return;
    }
    float *bp = ap + (size_t)MC * KC;
    int n_panels = (nc + NR - 1) / NR;
    for (int p0 = 0; p0 < K; p0 += KC) {
        int kc = K - p0 < KC ? K - p0 : KC;
        pack_a(ap, ta, A, lda, i0, mc, p0, kc);
        for (int jp = 0; jp < n_panels; jp++) {
            int j = j0 + jp * NR;
            pack_b_panel(bp + (size_t)jp * NR * kc, tb, B, ldb, p0, kc, j, N - j < NR ? N - j : NR);
        }
        for (int jp = 0; jp < n_panels; jp++) {
            int nr = nc - jp * NR < NR ? nc - jp * NR : NR;
            for (int ir = 0; ir < mc; ir += MR) {
                int mr = mc - ir < MR ? mc - ir : MR;
                kernel(kc, ap + (size_t)ir * kc, bp + (size_t)jp * NR * kc,
                       Ct + (size_t)ir * ldc + jp * NR, ldc, mr, nr, alpha);
            }
        }
    }
}

/* C is cut into MC x NB tiles handed out dynamically to the threads (one parallel region,
 * no barrier until the end, so a descheduled thread delays nobody); each tile packs its
 * own blocks of op(A) and op(B). */
void ecr_sgemm_portable(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    int nb = (N + NB - 1) / NB, tiles = ((M + MC - 1) / MC) * nb;
    ECR_OMP(parallel for schedule(dynamic, 1) if (tiles > 1 && (double)M * N * K > 1e6))
    for (int t = 0; t < tiles; t++)
        gemm_tile(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, (t / nb) * MC, (t % nb) * NB);
}

#undef OPA
#undef OPB

/* ---- dispatch -------------------------------------------------------------------------- */

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

static inline float hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* y[i0 .. i0+4) = the dot products of rows i0 .. i0+3 of A with x, each row in two 8-wide
 * accumulators (elements k mod 16 < 8 and >= 8) over the 16-multiples of K, then the rest
 * of K one element at a time. Four rows share each load of x. */
static void sgemv_rows4(int K, const float *A, const float *x, float *y) {
    const float *a0 = A, *a1 = a0 + K, *a2 = a1 + K, *a3 = a2 + K;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, t0 = s0, t1 = s0, t2 = s0, t3 = s0;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m256 xa = _mm256_loadu_ps(x + k), xb = _mm256_loadu_ps(x + k + 8);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + k), xa, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + k), xa, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + k), xa, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + k), xa, s3);
        t0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + k + 8), xb, t0);
        t1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + k + 8), xb, t1);
        t2 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + k + 8), xb, t2);
        t3 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + k + 8), xb, t3);
    }
    float r0 = hsum8(_mm256_add_ps(s0, t0)), r1 = hsum8(_mm256_add_ps(s1, t1));
    float r2 = hsum8(_mm256_add_ps(s2, t2)), r3 = hsum8(_mm256_add_ps(s3, t3));
    for (; k < K; k++) {
        r0 += a0[k] * x[k];
        r1 += a1[k] * x[k];
        r2 += a2[k] * x[k];
        r3 += a3[k] * x[k];
    }
    y[0] = r0, y[1] = r1, y[2] = r2, y[3] = r3;
}
#endif

/* One row's dot product with x (the rows sgemv_rows4 leaves, and builds without AVX2). */
static float sgemv_row(int K, const float *a, const float *x) {
    float s = 0.0f;
    for (int k = 0; k < K; k++) s += a[k] * x[k];
    return s;
}

/* A kernel of our own rather than cblas_sgemv: on the weight matrices of a `base` decode step
 * (2 cores, AVX2) OpenBLAS 0.3.21's sgemv streamed 14-19 GB/s on 1 thread and 26 on 2, this
 * one 16-21 and 31-33 (best of repeated passes over all the step's weights). Each row is summed by one thread in a fixed order, so y does not
 * depend on the thread count. */
void ecr_sgemv(int M, int K, const float *A, const float *x, float beta, float *y) {
    if (M <= 0) return;
    int blocks = M / 4;
    ECR_OMP(parallel for schedule(static) if ((double)M * K >= 65536.0))
    for (int b = 0; b <= blocks; b++) {
        int i0 = 4 * b, n = b < blocks ? 4 : M - i0;
        float r[4];
#if defined(__AVX2__) && defined(__FMA__)
        if (n == 4) sgemv_rows4(K, A + (size_t)i0 * K, x, r);
        else
#endif
            for (int i = 0; i < n; i++) r[i] = sgemv_row(K, A + (size_t)(i0 + i) * K, x);
        for (int i = 0; i < n; i++) y[i0 + i] = r[i] + (beta != 0.0f ? beta * y[i0 + i] : 0.0f);
    }
}

/* ---- the same product with bf16 inputs ------------------------------------------------ */

static inline float bf16_widen(uint16_t v) {
    uint32_t b = (uint32_t)v << 16;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* Longest row the AVX2 path takes (its widened copy of x is on the stack); longer ones go one
 * element at a time. */
#define SGEMV_BF16_MAX_K 4096

#if defined(__AVX2__) && defined(__FMA__)
/* 8 bf16 values from p, widened to fp32 (exact: a bf16 is the top half of its fp32). */
static inline __m256 bf16x8(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* One row a (bf16) against xw (x widened): four 8-wide accumulators over the 32-multiples of
 * K, then 8 at a time into the first, then one element at a time. One row at a time, not
 * four as sgemv_rows4: with 2-byte weights, one sequential stream ran 1.6x faster. */
static float sgemv_bf16_row8(int K, const uint16_t *a, const float *xw) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        c0 = _mm256_fmadd_ps(bf16x8(a + k), _mm256_loadu_ps(xw + k), c0);
        c1 = _mm256_fmadd_ps(bf16x8(a + k + 8), _mm256_loadu_ps(xw + k + 8), c1);
        c2 = _mm256_fmadd_ps(bf16x8(a + k + 16), _mm256_loadu_ps(xw + k + 16), c2);
        c3 = _mm256_fmadd_ps(bf16x8(a + k + 24), _mm256_loadu_ps(xw + k + 24), c3);
    }
    for (; k + 8 <= K; k += 8) c0 = _mm256_fmadd_ps(bf16x8(a + k), _mm256_loadu_ps(xw + k), c0);
    float r = hsum8(_mm256_add_ps(_mm256_add_ps(c0, c2), _mm256_add_ps(c1, c3)));
    for (; k < K; k++) r += bf16_widen(a[k]) * xw[k];
    return r;
}
#endif

static float sgemv_bf16_row(int K, const uint16_t *a, const uint16_t *x) {
    float s = 0.0f;
    for (int k = 0; k < K; k++) s += bf16_widen(a[k]) * bf16_widen(x[k]);
    return s;
}

/* Half the bytes of ecr_sgemv's weights: decoding in bf16 streams 2 bytes a weight. Every
 * product of two bf16 values is exact in fp32, so this is the bf16 engines' sum in another
 * order (see matmul_bf16.c); oneDNN's matmul for one row would not stream the weights once.
 * On the weights of a `base` decode step (2 cores, AVX2) it streams 16-19 GB/s on 1 thread
 * and 27-30 on 2. Each row summed by one thread: the same bytes for every thread count. */
void ecr_sgemv_bf16(int M, int K, const uint16_t *A, const uint16_t *x, float beta, float *y) {
    if (M <= 0) return;
#if defined(__AVX2__) && defined(__FMA__)
    float xw[SGEMV_BF16_MAX_K];
    int fast = K <= SGEMV_BF16_MAX_K;
    for (int k = 0; fast && k < K; k++) xw[k] = bf16_widen(x[k]);
#endif
    ECR_OMP(parallel for schedule(static) if ((double)M * K >= 65536.0))
    for (int i = 0; i < M; i++) {
        const uint16_t *a = A + (size_t)i * K;
#if defined(__AVX2__) && defined(__FMA__)
        float r = fast ? sgemv_bf16_row8(K, a, xw) : sgemv_bf16_row(K, a, x);
#else
        float r = sgemv_bf16_row(K, a, x);
#endif
        y[i] = r + (beta != 0.0f ? beta * y[i] : 0.0f);
    }
}

void ecr_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef ECR_HAVE_BLAS
    if (K <= 0) {
        scale_c(C, ldc, M, N, beta);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#else
    ecr_sgemm_portable(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}
