/* matmul.h — single-precision matrix products (internal).
 *
 * ecr_sgemm computes C = alpha * op(A) op(B) + beta * C on row-major matrices:
 *   op(A) is M x K: A is [M, K] with row stride lda >= K, or (ta != 0) A is [K, M], lda >= M;
 *   op(B) is K x N: B is [K, N] with row stride ldb >= N, or (tb != 0) B is [N, K], ldb >= K;
 *   C is [M, N] with row stride ldc >= N. beta == 0 ignores C's old contents (NaN too).
 * With ECR_HAVE_BLAS it calls cblas_sgemm, else ecr_sgemm_portable. Called from inside an
 * OpenMP parallel region (the attention kernels do, per text segment) it runs on the calling
 * thread only (OpenBLAS's OpenMP build checks omp_in_parallel; nested regions of the
 * portable path get one thread). Deterministic for a fixed thread count.
 *
 * ecr_sgemm_portable is the cache-blocked OpenMP fallback (always compiled, so the tests
 * check it against a double-precision reference in every build). Its results do not
 * depend on the thread count. */
#ifndef ECR_MATMUL_H
#define ECR_MATMUL_H
#include "ecr.h"

#include <stddef.h>
#include <stdint.h>

void ecr_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
/* y[M] = A[M, K] x[K] + beta y (A row-major, contiguous rows; beta == 0 ignores y's old
 * contents, NaN too). For one row of activations against a weight matrix (decoding): each
 * weight is read once, where sgemm with M = 1 would first copy the whole matrix into its
 * packed layout (OpenBLAS spends four fifths of a decode step there). Our own kernel (AVX2
 * four rows at a time; see matmul.c for why not cblas_sgemv), OpenMP over rows; the same
 * numbers for every thread count. */
void ecr_sgemv(int M, int K, const float *A, const float *x, float beta, float *y);
/* The same with A and x in bf16 (decoding in bf16: half the bytes); the exact products
 * summed in fp32, in a fixed order (not ecr_sgemv's). */
void ecr_sgemv_bf16(int M, int K, const uint16_t *A, const uint16_t *x, float beta, float *y);
void ecr_sgemm_portable(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* ---- bf16 products (matmul_bf16.c) ---------------------------------------------------------
 * ecr_gemm_bf16 computes C = op(A) op(B) + beta * C with A and B in bf16 (same layout
 * rules as ecr_sgemm, alpha = 1), accumulating and writing fp32. It runs on oneDNN when
 * oneDNN makes bf16 primitives on this CPU (ecr_bf16_onednn), else on the reference
 * engine. ECR_E_NOMEM when the reference engine cannot get its fp32 copies. Call it
 * outside OpenMP parallel regions; concurrent calls are serialised.
 *
 * Error bound against the exact product (both inputs already bf16): every term a*b is
 * exact in fp32, so |C - exact| <= gamma_K * sum_k |a_ik b_kj| with gamma_K = K u/(1 - K u),
 * u = 2^-24, whatever the engine. Against the fp32 product of the unrounded inputs, add
 * (2 v + v^2) * sum_k |a_ik b_kj|, v = 2^-8 (each input's rounding to bf16).
 *
 * ecr_gemm_bf16_reference always runs the reference engine (the tests compare both).
 * ecr_sgemm_onednn runs an fp32 product through the same oneDNN plumbing (primitive cache,
 * strides, transposition, beta), so the tests exercise it where bf16 kernels are missing;
 * it returns 0 when built without oneDNN or when oneDNN fails. */
ecr_status ecr_gemm_bf16(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda,
                         const uint16_t *B, int ldb, float beta, float *C, int ldc);
ecr_status ecr_gemm_bf16_reference(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda,
                                   const uint16_t *B, int ldb, float beta, float *C, int ldc);
int ecr_sgemm_onednn(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc);
/* 1 when oneDNN makes bf16 matmul primitives on this CPU. */
int ecr_bf16_onednn(void);
/* dst[i] = bf16 of src[i] (round to nearest even, as ecr_f32_to_bf16) / widened back. */
void ecr_bf16_from_f32(uint16_t *dst, const float *src, size_t n);
void ecr_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n);

#endif
