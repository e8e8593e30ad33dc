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

void ecr_sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc);
void ecr_sgemm_portable(int ta, int tb, int M, int N, int K, float alpha, const float *A,
                        int lda, const float *B, int ldb, float beta, float *C, int ldc);

#endif
