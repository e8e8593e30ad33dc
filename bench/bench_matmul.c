/* bench_matmul.c — the machine's matrix-product rates, in one run: the fp32 FMA peak of
 * this CPU (independent fused multiply-adds on registers), OpenBLAS sgemm, and the bf16
 * product of --precision bf16 (oneDNN) on the shapes of a `base` training step, with the
 * ratios between them.
 *
 *   bench_matmul [--threads N] [--rates]
 *
 * --rates prints one line "PEAK SGEMM BF16" in GFLOP/s for bench_train.sh (BF16 0 when
 * this CPU or build has no bf16 engine). Times are the best of 5 after a warm-up. */
#include "ecr.h"
#include "matmul.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef ECR_HAVE_OMP
#include <omp.h>
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Independent FMA chains: each register of the vector width this build targets holds one
 * chain, as many chains as the register file keeps with room to spare (AVX-512: 12 of 32
 * zmm; AVX2: 10 of 16 ymm), so the loop is bound by the FMA units, not by latency. */
#ifdef __AVX512F__
enum { VW = 16, CHAINS = 12 };
#else
enum { VW = 8, CHAINS = 10 };
#endif
typedef float vec __attribute__((vector_size(VW * 4)));

/* -std=c11 turns contraction off; here a * m + c must be one FMA. */
__attribute__((optimize("fp-contract=fast"))) static double fma_peak(int threads) {
    const long iters = 40000000;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
            vec acc[CHAINS], m, c;
            for (int i = 0; i < VW; i++) m[i] = 1.0f - 1e-7f * (float)i, c[i] = 1e-7f;
            for (int j = 0; j < CHAINS; j++) acc[j] = m * (float)(j + 1);
            for (long k = 0; k < iters; k++)
#pragma GCC unroll 16
                for (int j = 0; j < CHAINS; j++) acc[j] = acc[j] * m + c;
            for (int j = 0; j < CHAINS; j++) sink += acc[j][0] + acc[j][VW - 1];
        }
        double dt = now() - t0;
        double flops = 2.0 * VW * CHAINS * (double)iters * threads;
        if (sink == 12345.0f) fprintf(stderr, "?"); /* keep the loop alive */
        if (flops / dt > best) best = flops / dt;
    }
    return best / 1e9;
}

typedef struct shape { int ta, tb, M, N, K; const char *what; } shape;

/* The products of one base layer on 4,096 token slots (forward, dx, dw), and the head. */
static const shape SHAPES[] = {
    {0, 1, 4096, 1152, 384, "qkv forward   4096x1152x384"},
    {0, 1, 4096, 2048, 384, "gate|up fwd   4096x2048x384"},
    {0, 1, 4096, 384, 1024, "down forward  4096x384x1024"},
    {0, 0, 4096, 384, 2048, "gate|up dx    4096x384x2048"},
    {1, 0, 2048, 384, 4096, "gate|up dw    2048x384x4096"},
    {0, 1, 4096, 8192, 384, "head forward  4096x8192x384"},
};

/* Best-of-5 seconds of one product: fp32 (bf16 = 0) or bf16. */
static double time_product(const shape *s, int bf16, const float *A, const float *B, const uint16_t *A16,
                           const uint16_t *B16, float *C) {
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = now();
        if (bf16) ecr_gemm_bf16(s->ta, s->tb, s->M, s->N, s->K, A16, lda, B16, ldb, 0.0f, C, s->N);
        else ecr_sgemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 0.0f, C, s->N);
        double dt = now() - t0;
        if (rep > 0 && dt < best) best = dt; /* rep 0 warms up (and creates the primitive) */
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = 2, rates = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rates")) rates = 1;
        else {
            fprintf(stderr, "usage: bench_matmul [--threads N] [--rates]\n");
            return 2;
        }
    }
    ecr_set_threads(threads);
    ecr_precision p;
    int have_bf16 = ecr_bf16_onednn() && ecr_precision_resolve(ECR_PRECISION_BF16, &p) == ECR_OK;
    size_t big = (size_t)4096 * 8192;
    float *A = malloc(big * sizeof *A), *B = malloc(big * sizeof *B), *C = malloc(big * sizeof *C);
    uint16_t *A16 = malloc(big * 2), *B16 = malloc(big * 2);
    if (!A || !B || !C || !A16 || !B16) {
        fprintf(stderr, "bench_matmul: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < big; i++) A[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f, B[i] = A[(i * 7) % big];
    ecr_bf16_from_f32(A16, A, big);
    ecr_bf16_from_f32(B16, B, big);

    double peak = fma_peak(threads), flops_all = 0, t32_all = 0, t16_all = 0;
    if (!rates) {
        printf("bench_matmul: %d threads; fp32 FMA peak %.0f GFLOP/s; bf16 engine: %s\n", threads, peak,
               ecr_bf16_engine());
        printf("  %-28s %10s %10s %8s\n", "product", "sgemm", "bf16", "ratio");
    }
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++) {
        const shape *s = &SHAPES[i];
        double flops = 2.0 * s->M * s->N * s->K;
        double t32 = time_product(s, 0, A, B, A16, B16, C);
        double t16 = have_bf16 ? time_product(s, 1, A, B, A16, B16, C) : 0;
        flops_all += flops, t32_all += t32, t16_all += t16;
        if (rates) continue;
        if (have_bf16)
            printf("  %-28s %10.0f %10.0f %7.2fx\n", s->what, flops / t32 / 1e9, flops / t16 / 1e9, t32 / t16);
        else
            printf("  %-28s %10.0f %10s %8s\n", s->what, flops / t32 / 1e9, "n/a", "");
    }
    double r32 = flops_all / t32_all / 1e9, r16 = have_bf16 ? flops_all / t16_all / 1e9 : 0;
    if (rates) {
        printf("%.1f %.1f %.1f\n", peak, r32, r16);
    } else {
        printf("  %-28s %10.0f %10s %8s   (GFLOP/s; sgemm at %.0f%% of the fp32 peak)\n", "all", r32,
               have_bf16 ? "" : "n/a", "", 100 * r32 / peak);
        if (have_bf16)
            printf("bench_matmul: bf16 %.0f GFLOP/s = %.2fx sgemm, %.2fx the fp32 FMA peak\n", r16, r16 / r32,
                   r16 / peak);
    }
    free(A), free(B), free(C), free(A16), free(B16);
    return 0;
}
