/* test_ops.c — every op of the model checked on its own: forward against a direct
 * double-precision reference where one is simple, backward against central finite
 * differences of L = sum(R * output) for a random R (loss accumulated in double).
 *
 * Tolerances: a finite-difference check passes when |fd - analytic| <= atol + rtol *
 * max(|fd|, |analytic|); rtol/atol are stated at each check (fp32 forward, so the FD noise
 * is ~1e-7 * |L| / h). Forward references: ~1e-5 relative. */
#include "test.h"
#include "testlib.h"
#include "matmul.h"
#include "ops.h"
#include "rng.h"

#include <string.h>

static ecr_rng g_rng;

static float *randn(size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(ecr_rng_normal(&g_rng) * scale);
    return p;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }
static float *copyf(const float *a, size_t n) {
    float *p = malloc(n * sizeof *p);
    memcpy(p, a, n * sizeof *p);
    return p;
}

/* L = sum R * out, in double. */
static double wsum(const float *R, const float *out, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)R[i] * out[i];
    return s;
}

/* Central differences of loss() over p[0..n) (every `stride`-th element) against grad. */
static void fd_check(const char *what, float *p, size_t n, size_t stride, float h,
                     const float *grad, double rtol, double atol, double (*loss)(void)) {
    double worst = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i += stride) {
        float v = p[i];
        p[i] = v + h;
        double lp = loss();
        p[i] = v - h;
        double lm = loss();
        p[i] = v;
        double fd = (lp - lm) / (2.0 * h);
        double an = grad[i];
        double err = fabs(fd - an);
        double lim = atol + rtol * fmax(fabs(fd), fabs(an));
        if (err / lim > worst) worst = err / lim;
        if (!(err <= lim)) {
            if (bad++ < 5)
                fprintf(stderr, "    %s[%zu]: fd %.7g analytic %.7g\n", what, i, fd, an);
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %zu elements outside tolerance", what, bad, n / stride);
    fprintf(stderr, "    %-28s worst err/tolerance %.3f\n", what, worst);
}

/* ---- expf ----------------------------------------------------------------------------------- */

static void test_expf(void) {
    double worst = 0;
    for (double x = -87.0; x <= 88.0; x += 0.001) {
        float xf = (float)x;
        double ref = exp((double)xf);
        double rel = fabs(ecr_expf(xf) - ref) / ref;
        if (rel > worst) worst = rel;
    }
    fprintf(stderr, "    expf max relative error %.3g\n", worst);
    CHECK(worst < 3e-7);
    CHECK(ecr_expf(-INFINITY) < 1e-37f && ecr_expf(-INFINITY) >= 0.0f);
    CHECK(isnan(ecr_expf(NAN)));
    CHECK(ecr_expf(0.0f) == 1.0f);
}

/* ---- sgemm ---------------------------------------------------------------------------------- */

static void gemm_case(int ta, int tb, int M, int N, int K, float alpha, float beta, int portable) {
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
    float *A = randn((size_t)(ta ? K : M) * lda, 1.0f);
    float *B = randn((size_t)(tb ? N : K) * ldb, 1.0f);
    float *C = randn((size_t)M * ldc, 1.0f);
    float *C0 = copyf(C, (size_t)M * ldc);
    if (beta == 0.0f)
        for (int i = 0; i < M; i++) C[(size_t)i * ldc] = NAN; /* must be ignored */
    (portable ? ecr_sgemm_portable : ecr_sgemm)(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    int bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                s += a * b;
                mag += fabs(a * b);
            }
            double c0 = C0[(size_t)i * ldc + j];
            double ref = alpha * s + (beta != 0.0f ? beta * c0 : 0.0);
            double tol = 1e-6 * (fabs(alpha) * mag + fabs(beta * c0)) + 1e-6;
            if (!(fabs(C[(size_t)i * ldc + j] - ref) <= tol)) bad++;
        }
    /* padding columns beyond N untouched */
    for (int i = 0; i < M; i++)
        if (C[(size_t)i * ldc + N] != C0[(size_t)i * ldc + N]) bad++;
    CHECK_MSG(bad == 0, "%s sgemm ta=%d tb=%d %dx%dx%d alpha %g beta %g: %d bad",
              portable ? "portable" : "dispatch", ta, tb, M, N, K, alpha, beta, bad);
    free(A); free(B); free(C); free(C0);
}

static void test_sgemm(void) {
    for (int portable = 0; portable < 2; portable++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                gemm_case(ta, tb, 1, 1, 1, 1.0f, 0.0f, portable);
                gemm_case(ta, tb, 7, 5, 3, 0.5f, 1.0f, portable);
                gemm_case(ta, tb, 13, 37, 300, 1.0f, -0.5f, portable);
                gemm_case(ta, tb, 100, 70, 20, -1.0f, 0.0f, portable);
            }
    /* across the NC (2048) column slab and KC (256) depth panel boundaries */
    gemm_case(0, 1, 9, 2100, 260, 1.0f, 0.0f, 1);
    gemm_case(1, 0, 200, 40, 600, 1.0f, 1.0f, 1);
    /* the portable product does not depend on the thread count */
    int M = 150, N = 90, K = 530;
    float *A = randn((size_t)M * K, 1.0f), *B = randn((size_t)K * N, 1.0f);
    float *C1 = zeros((size_t)M * N), *C2 = zeros((size_t)M * N);
    int th = ecr_get_threads();
    ecr_set_threads(1);
    ecr_sgemm_portable(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C1, N);
    ecr_set_threads(2);
    ecr_sgemm_portable(0, 0, M, N, K, 1.0f, A, K, B, N, 0.0f, C2, N);
    ecr_set_threads(th);
    CHECK(memcmp(C1, C2, (size_t)M * N * sizeof(float)) == 0);
    free(A); free(B); free(C1); free(C2);
}

/* ---- linear ----------------------------------------------------------------------------------- */

enum { LN_N = 5, LN_IN = 7, LN_OUT = 6 };
static float *lx, *lw, *ly, *lR;
static double loss_linear(void) {
    ecr_linear_forward(ly, lx, lw, LN_N, LN_IN, LN_OUT, 0.0f);
    return wsum(lR, ly, LN_N * LN_OUT);
}

static void test_linear(void) {
    lx = randn(LN_N * LN_IN, 1.0f);
    lw = randn(LN_OUT * LN_IN, 1.0f);
    ly = zeros(LN_N * LN_OUT);
    lR = randn(LN_N * LN_OUT, 1.0f);
    float *dx = zeros(LN_N * LN_IN), *dw = zeros(LN_OUT * LN_IN);
    /* beta: y = x w^T + 1 * y */
    float *y1 = randn(LN_N * LN_OUT, 1.0f), *y0 = copyf(y1, LN_N * LN_OUT);
    ecr_linear_forward(y1, lx, lw, LN_N, LN_IN, LN_OUT, 1.0f);
    loss_linear();
    double e = 0;
    for (int i = 0; i < LN_N * LN_OUT; i++) e = tl_nanmax(e, fabs(y1[i] - y0[i] - ly[i]));
    CHECK(e < 1e-5);
    ecr_linear_backward(dx, dw, lR, lx, lw, LN_N, LN_IN, LN_OUT, 0.0f);
    fd_check("linear dx", lx, LN_N * LN_IN, 1, 1e-2f, dx, 1e-3, 1e-4, loss_linear);
    fd_check("linear dw", lw, LN_OUT * LN_IN, 1, 1e-2f, dw, 1e-3, 1e-4, loss_linear);
    /* dw accumulates; dx may alias x */
    float *dw2 = copyf(dw, LN_OUT * LN_IN), *xa = copyf(lx, LN_N * LN_IN);
    ecr_linear_backward(xa, dw2, lR, xa, lw, LN_N, LN_IN, LN_OUT, 0.0f);
    e = 0;
    for (int i = 0; i < LN_OUT * LN_IN; i++) e = tl_nanmax(e, fabs(dw2[i] - 2 * dw[i]));
    for (int i = 0; i < LN_N * LN_IN; i++) e = tl_nanmax(e, fabs(xa[i] - dx[i]));
    CHECK(e < 1e-5);
    free(lx); free(lw); free(ly); free(lR); free(dx); free(dw); free(y1); free(y0);
    free(dw2); free(xa);
}

/* Checks y (a product's output for beta 0 or 1 from y0) against the exact A x + beta y0 in
 * double: within the bound of any order of an fp32 sum of K + 1 terms. */
static void check_gemv(const char *what, int M, int K, const float *A, const float *x, const float *y0,
                       int beta, const float *y) {
    double e = 0, scale = 0;
    for (int i = 0; i < M; i++) {
        double ref = beta ? y0[i] : 0.0, mag = 0;
        for (int k = 0; k < K; k++) ref += (double)A[(size_t)i * K + k] * x[k], mag += fabs((double)A[(size_t)i * K + k] * x[k]);
        e = tl_nanmax(e, fabs(y[i] - ref));
        if (mag > scale) scale = mag;
    }
    double gamma = (K + 1) * 0x1p-24 / (1 - (K + 1) * 0x1p-24);
    CHECK_MSG(e <= gamma * (scale + 1.0), "%s %dx%d beta %d: error %g (bound %g)", what, M, K, beta, e,
              gamma * (scale + 1.0));
}

/* One row (decoding) takes the matrix-vector path, ecr_sgemv (fp32) and ecr_sgemv_bf16 (bf16
 * inputs: the exact products of the rounded values): against a double reference, with beta 0
 * (NaN in y ignored) and 1, on shapes across the kernels' blocking and tails; the same bytes
 * whatever the thread count, and the same as ecr_linear_forward(_bf16) of one row. */
static void test_sgemv(void) {
    static const int shapes[][2] = {{1, 1}, {6, 7}, {384, 384}, {1152, 384}, {8192, 256}, {5, 1000}, {4, 4100}};
    int th = ecr_get_threads();
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        int M = shapes[c][0], K = shapes[c][1];
        float *A = randn((size_t)M * K, 1.0f), *x = randn((size_t)K, 1.0f), *y0 = randn((size_t)M, 1.0f);
        float *y = zeros((size_t)M), *ye = zeros((size_t)M), *Aw = zeros((size_t)M * K), *xw = zeros((size_t)K);
        uint16_t *Ab = malloc((size_t)M * K * sizeof *Ab), *xb = malloc((size_t)K * sizeof *xb);
        ecr_bf16_from_f32(Ab, A, (size_t)M * K);
        ecr_bf16_from_f32(xb, x, (size_t)K);
        ecr_bf16_to_f32_n(Aw, Ab, (size_t)M * K);
        ecr_bf16_to_f32_n(xw, xb, (size_t)K);
        for (int bf = 0; bf < 2; bf++) {
            const char *what = bf ? "sgemv_bf16" : "sgemv";
            for (int beta = 0; beta < 2; beta++) {
                memcpy(y, y0, (size_t)M * sizeof(float));
                if (beta == 0) y[0] = NAN;
                if (bf) ecr_sgemv_bf16(M, K, Ab, xb, (float)beta, y);
                else ecr_sgemv(M, K, A, x, (float)beta, y);
                check_gemv(what, M, K, bf ? Aw : A, bf ? xw : x, y0, beta, y);
            }
            if (bf) ecr_sgemv_bf16(M, K, Ab, xb, 0.0f, ye);
            else ecr_sgemv(M, K, A, x, 0.0f, ye);
            ecr_set_threads(th > 1 ? 1 : 2);
            if (bf) ecr_sgemv_bf16(M, K, Ab, xb, 0.0f, y);
            else ecr_sgemv(M, K, A, x, 0.0f, y);
            ecr_set_threads(th);
            CHECK_MSG(memcmp(y, ye, (size_t)M * sizeof(float)) == 0, "%s %dx%d: differs across thread counts", what, M, K);
            /* the layer's one-row forward is that product (w = A is [out = M, in = K]) */
            if (bf) CHECK_OK(ecr_linear_forward_bf16(y, xb, Ab, 1, K, M, 0.0f));
            else ecr_linear_forward(y, x, A, 1, K, M, 0.0f);
            CHECK_MSG(memcmp(y, ye, (size_t)M * sizeof(float)) == 0, "%s %dx%d: linear forward differs", what, M, K);
        }
        free(A); free(x); free(y0); free(y); free(ye); free(Aw); free(xw); free(Ab); free(xb);
    }
}

/* ---- RMSNorm ---------------------------------------------------------------------------------- */

enum { RN_N = 4, RN_D = 12 };
static float *rx, *rw, *ry, *rrstd, *rR;
static double loss_rms(void) {
    ecr_rmsnorm_forward(ry, rrstd, rx, rw, RN_N, RN_D, 1e-5f);
    return wsum(rR, ry, RN_N * RN_D);
}

static void test_rmsnorm(void) {
    rx = randn(RN_N * RN_D, 1.0f);
    rw = randn(RN_D, 0.3f);
    for (int j = 0; j < RN_D; j++) rw[j] += 1.0f;
    ry = zeros(RN_N * RN_D);
    rrstd = zeros(RN_N);
    rR = randn(RN_N * RN_D, 1.0f);
    loss_rms();
    for (int t = 0; t < RN_N; t++) { /* forward reference */
        double ss = 0;
        for (int j = 0; j < RN_D; j++) ss += (double)rx[t * RN_D + j] * rx[t * RN_D + j];
        double r = 1.0 / sqrt(ss / RN_D + 1e-5);
        for (int j = 0; j < RN_D; j++)
            CHECK_CLOSE(ry[t * RN_D + j], rx[t * RN_D + j] * r * rw[j], 1e-5);
    }
    float *dx = zeros(RN_N * RN_D), *dw = zeros(RN_D), *scr = zeros(ECR_NCHUNK * RN_D);
    for (int i = 0; i < RN_N * RN_D; i++) dx[i] = 1.0f; /* dx accumulates */
    ecr_rmsnorm_backward(dx, dw, rR, rx, rrstd, rw, RN_N, RN_D, scr);
    for (int i = 0; i < RN_N * RN_D; i++) dx[i] -= 1.0f;
    fd_check("rmsnorm dx", rx, RN_N * RN_D, 1, 1e-2f, dx, 2e-3, 2e-4, loss_rms);
    fd_check("rmsnorm dw", rw, RN_D, 1, 1e-2f, dw, 2e-3, 2e-4, loss_rms);
    free(rx); free(rw); free(ry); free(rrstd); free(rR); free(dx); free(dw); free(scr);
}

/* ---- RoPE --------------------------------------------------------------------------------------- */

enum { RP_N = 5, RP_NH = 3, RP_HD = 8, RP_LD = 30, RP_MAXP = 20 };
static float *px, *py, *pR, *pcos, *psin;
static int32_t ppos[RP_N] = {0, 3, 19, 7, 1};
static double loss_rope(void) {
    memcpy(py, px, sizeof(float) * RP_N * RP_LD);
    ecr_rope_forward(py, RP_N, RP_LD, RP_NH, RP_HD, ppos, pcos, psin);
    return wsum(pR, py, RP_N * RP_LD);
}

static void test_rope(void) {
    /* Hugging Face convention on a known value: hd 4, theta 1e4 -> inv_freq [1, 0.01];
     * v = [1, 0, 0, 0] at position 3 -> [cos 3, 0, sin 3, 0]; v = [0, 1, 0, 0] ->
     * [0, cos 0.03, 0, sin 0.03]. */
    float c4[8 * 2], s4[8 * 2];
    ecr_rope_tables(c4, s4, 8, 4, 10000.0f);
    float v[8] = {1, 0, 0, 0, 0, 1, 0, 0};
    int32_t p3[1] = {3};
    ecr_rope_forward(v, 1, 8, 2, 4, p3, c4, s4);
    CHECK_CLOSE(v[0], cos(3.0), 1e-6);
    CHECK_CLOSE(v[1], 0.0, 1e-7);
    CHECK_CLOSE(v[2], sin(3.0), 1e-6);
    CHECK_CLOSE(v[5], cos(0.03), 1e-6);
    CHECK_CLOSE(v[7], sin(0.03), 1e-6);
    CHECK_CLOSE(v[4], 0.0, 1e-7);

    pcos = zeros(RP_MAXP * RP_HD / 2);
    psin = zeros(RP_MAXP * RP_HD / 2);
    ecr_rope_tables(pcos, psin, RP_MAXP, RP_HD, 10000.0f);
    px = randn(RP_N * RP_LD, 1.0f);
    py = zeros(RP_N * RP_LD);
    pR = randn(RP_N * RP_LD, 1.0f);
    float *dx = copyf(pR, RP_N * RP_LD);
    ecr_rope_backward(dx, RP_N, RP_LD, RP_NH, RP_HD, ppos, pcos, psin);
    fd_check("rope dx", px, RP_N * RP_LD, 1, 1e-2f, dx, 1e-3, 1e-4, loss_rope);
    /* rotation preserves the norm of each head */
    loss_rope();
    double n0 = 0, n1 = 0;
    for (int i = 0; i < RP_HD; i++) {
        n0 += (double)px[RP_LD + i] * px[RP_LD + i];
        n1 += (double)py[RP_LD + i] * py[RP_LD + i];
    }
    CHECK_CLOSE(n0, n1, 1e-5 * n0);
    free(pcos); free(psin); free(px); free(py); free(pR); free(dx);
}

/* ---- attention ------------------------------------------------------------------------------- */

enum { AT_B = 2, AT_T = 9, AT_H = 2, AT_HD = 4, AT_D = AT_H * AT_HD, AT_N = AT_B * AT_T };
/* row 0: texts of 4, 3, 2 slots; row 1: a text of 6 slots, then 3 padding slots (span 0) */
static int32_t aspan[AT_N] = {0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 1, 2, 3, 4, 5, 0, 0, 0};
static float *aqkv, *aout, *alse, *aR, *ascr;
static double loss_attn(void) {
    ecr_attention_forward(aout, alse, aqkv, aspan, AT_B, AT_T, AT_H, AT_HD, ascr);
    return wsum(aR, aout, AT_N * AT_D);
}

/* Dense double reference with the block-diagonal causal mask. */
static void attn_reference(double *out, const float *qkv) {
    for (int b = 0; b < AT_B; b++)
        for (int h = 0; h < AT_H; h++)
            for (int i = 0; i < AT_T; i++) {
                int t = b * AT_T + i;
                double sc[AT_T], m = -1e300, sum = 0;
                for (int j = 0; j < AT_T; j++) {
                    int allowed = j <= i && j >= i - aspan[t];
                    sc[j] = -1e300;
                    if (!allowed) continue;
                    double s = 0;
                    for (int c = 0; c < AT_HD; c++)
                        s += (double)qkv[t * 3 * AT_D + h * AT_HD + c] *
                             qkv[(b * AT_T + j) * 3 * AT_D + AT_D + h * AT_HD + c];
                    sc[j] = s / sqrt((double)AT_HD);
                    if (sc[j] > m) m = sc[j];
                }
                for (int j = 0; j < AT_T; j++) sum += sc[j] > -1e299 ? exp(sc[j] - m) : 0;
                for (int c = 0; c < AT_HD; c++) {
                    double o = 0;
                    for (int j = 0; j < AT_T; j++)
                        if (sc[j] > -1e299)
                            o += exp(sc[j] - m) / sum *
                                 qkv[(b * AT_T + j) * 3 * AT_D + 2 * AT_D + h * AT_HD + c];
                    out[t * AT_D + h * AT_HD + c] = o;
                }
            }
}

static void test_attention(void) {
    aqkv = randn(AT_N * 3 * AT_D, 1.0f);
    aout = zeros(AT_N * AT_D);
    alse = zeros(AT_N * AT_H);
    aR = randn(AT_N * AT_D, 1.0f);
    ascr = zeros(AT_B * AT_H * AT_T);
    loss_attn();
    double ref[AT_N * AT_D];
    attn_reference(ref, aqkv);
    double e = 0;
    for (int i = 0; i < AT_N * AT_D; i++) e = tl_nanmax(e, fabs(aout[i] - ref[i]));
    CHECK_MSG(e < 1e-5, "attention forward vs dense reference: %g", e);

    /* segment isolation: changing the second text of row 0 (slots 4..6) leaves the first
     * (0..3) and the third (7..8) bit-identical */
    float *o0 = copyf(aout, AT_N * AT_D);
    for (int t = 4; t < 7; t++)
        for (int c = 0; c < 3 * AT_D; c++) aqkv[t * 3 * AT_D + c] += 0.5f;
    loss_attn();
    CHECK(memcmp(o0, aout, 4 * AT_D * sizeof(float)) == 0);
    CHECK(memcmp(o0 + 7 * AT_D, aout + 7 * AT_D, 2 * AT_D * sizeof(float)) == 0);
    CHECK(memcmp(o0 + 4 * AT_D, aout + 4 * AT_D, 3 * AT_D * sizeof(float)) != 0);
    free(o0);

    float *dqkv = randn(AT_N * 3 * AT_D, 1.0f); /* overwritten */
    loss_attn();
    ecr_attention_backward(dqkv, aR, aqkv, aout, alse, aspan, AT_B, AT_T, AT_H, AT_HD, ascr);
    fd_check("attention dqkv", aqkv, AT_N * 3 * AT_D, 1, 1e-2f, dqkv, 2e-3, 2e-4, loss_attn);

    /* the per-query formulation (the fallback) agrees with the per-segment one */
    {
        float *o2 = zeros(AT_N * AT_D), *l2 = zeros(AT_N * AT_H), *d2 = zeros(AT_N * 3 * AT_D);
        loss_attn();
        ecr_attention_forward_query(o2, l2, aqkv, aspan, AT_B, AT_T, AT_H, AT_HD, ascr);
        ecr_attention_backward_query(d2, aR, aqkv, aout, alse, aspan, AT_B, AT_T, AT_H, AT_HD, ascr);
        double eo = 0, el = 0, ed = 0;
        for (int i = 0; i < AT_N * AT_D; i++) eo = tl_nanmax(eo, fabs(o2[i] - aout[i]));
        for (int i = 0; i < AT_N * AT_H; i++) el = tl_nanmax(el, fabs(l2[i] - alse[i]));
        for (int i = 0; i < AT_N * 3 * AT_D; i++) ed = tl_nanmax(ed, fabs(d2[i] - dqkv[i]));
        CHECK_MSG(eo < 1e-6 && el < 1e-6 && ed < 1e-5, "per-query vs per-segment: %g %g %g", eo, el, ed);
        free(o2); free(l2); free(d2);
    }
    /* the one-query step over a cache equals the packed forward (row 1, slot 5) */
    loss_attn();
    float kc[6 * AT_D], vc[6 * AT_D], o[AT_D], scr[6];
    for (int j = 0; j < 6; j++) {
        memcpy(kc + j * AT_D, aqkv + (AT_T + j) * 3 * AT_D + AT_D, sizeof(float) * AT_D);
        memcpy(vc + j * AT_D, aqkv + (AT_T + j) * 3 * AT_D + 2 * AT_D, sizeof(float) * AT_D);
    }
    ecr_attention_step(o, aqkv + (AT_T + 5) * 3 * AT_D, kc, vc, AT_D, 6, AT_H, AT_HD, scr);
    e = 0;
    for (int c = 0; c < AT_D; c++) e = tl_nanmax(e, fabs(o[c] - aout[(AT_T + 5) * AT_D + c]));
    CHECK(e < 1e-6);
    free(aqkv); free(aout); free(alse); free(aR); free(ascr); free(dqkv);
}

/* Longer segments (up to 45 slots, head_dim 16, padding): both formulations agree. */
static void test_attention_long(void) {
    enum { B = 2, T = 64, H = 2, HD = 16, D = H * HD, N = B * T };
    int32_t span[N];
    int lens[] = {45, 1, 18, 0, 7, 30, 2, 20};
    int r = 0, c = 0;
    for (int t = 0; t < N; t++) span[t] = 0; /* padding by default */
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        if (lens[k] == 0) { r++, c = 0; continue; }
        for (int j = 0; j < lens[k]; j++) span[r * T + c + j] = j;
        c += lens[k];
    }
    float *qkv = randn(N * 3 * D, 1.5f), *R = randn(N * D, 1.0f), *scr = zeros(B * H * T);
    float *o1 = zeros(N * D), *o2 = zeros(N * D), *l1 = zeros(N * H), *l2 = zeros(N * H);
    float *d1 = zeros(N * 3 * D), *d2 = zeros(N * 3 * D);
    ecr_attention_forward(o1, l1, qkv, span, B, T, H, HD, scr);
    ecr_attention_forward_query(o2, l2, qkv, span, B, T, H, HD, scr);
    ecr_attention_backward(d1, R, qkv, o1, l1, span, B, T, H, HD, scr);
    ecr_attention_backward_query(d2, R, qkv, o2, l2, span, B, T, H, HD, scr);
    double eo = 0, ed = 0, so = 0, sd = 0;
    for (int i = 0; i < N * D; i++) eo = tl_nanmax(eo, fabs(o1[i] - o2[i])), so = tl_nanmax(so, fabs(o2[i]));
    for (int i = 0; i < N * 3 * D; i++) ed = tl_nanmax(ed, fabs(d1[i] - d2[i])), sd = tl_nanmax(sd, fabs(d2[i]));
    CHECK_MSG(eo <= 1e-5 * so && ed <= 1e-5 * sd, "long segments: out %g, dqkv %g", eo / so, ed / sd);
    /* decoding's step (head width a multiple of 8: its own loops, four keys at a time, then
     * the tails) over the first segment's keys and values as a cache equals the forward */
    float kc[45 * D], vc[45 * D], os[D], sc[45];
    for (int j = 0; j < 45; j++) {
        memcpy(kc + j * D, qkv + (size_t)j * 3 * D + D, sizeof(float) * D);
        memcpy(vc + j * D, qkv + (size_t)j * 3 * D + 2 * D, sizeof(float) * D);
    }
    static const int at[] = {0, 1, 2, 3, 4, 6, 7, 44};
    double es = 0;
    for (size_t k = 0; k < sizeof at / sizeof at[0]; k++) {
        int p = at[k];
        ecr_attention_step(os, qkv + (size_t)p * 3 * D, kc, vc, D, p + 1, H, HD, sc);
        for (int i = 0; i < D; i++) es = tl_nanmax(es, fabs(os[i] - o1[p * D + i]));
    }
    CHECK_MSG(es <= 1e-5 * so, "attention step vs forward: %g", es / so);
    free(qkv); free(R); free(scr); free(o1); free(o2); free(l1); free(l2); free(d1); free(d2);
}

/* ---- SwiGLU --------------------------------------------------------------------------------- */

enum { SG_N = 4, SG_H = 6 };
static float *sgu, *sact, *sR;
static double loss_swiglu(void) {
    ecr_swiglu_forward(sact, sgu, SG_N, SG_H);
    return wsum(sR, sact, SG_N * SG_H);
}

static void test_swiglu(void) {
    sgu = randn(SG_N * 2 * SG_H, 2.0f);
    sgu[0] = -30.0f; /* saturated sigmoid stays finite */
    sgu[1] = 30.0f;
    sact = zeros(SG_N * SG_H);
    sR = randn(SG_N * SG_H, 1.0f);
    loss_swiglu();
    for (int t = 0; t < SG_N; t++)
        for (int j = 0; j < SG_H; j++) {
            double g = sgu[t * 2 * SG_H + j], u = sgu[t * 2 * SG_H + SG_H + j];
            CHECK_CLOSE(sact[t * SG_H + j], g / (1 + exp(-g)) * u, 1e-5 * (1 + fabs(g * u)));
        }
    float *dgu = zeros(SG_N * 2 * SG_H);
    ecr_swiglu_backward(dgu, sgu, sR, SG_N, SG_H);
    fd_check("swiglu dgu", sgu, SG_N * 2 * SG_H, 1, 1e-3f, dgu, 2e-3, 2e-4, loss_swiglu);
    float *alias = copyf(sgu, SG_N * 2 * SG_H);
    ecr_swiglu_backward(alias, alias, sR, SG_N, SG_H);
    CHECK(memcmp(alias, dgu, sizeof(float) * SG_N * 2 * SG_H) == 0);
    free(sgu); free(sact); free(sR); free(dgu); free(alias);
}

/* ---- embedding -------------------------------------------------------------------------------- */

enum { EM_V = 7, EM_D = 5, EM_N = 6 };
static float *eE, *ex, *eR;
static int32_t etok[EM_N] = {3, 0, 3, 6, 1, 3};
static double loss_embed(void) {
    ecr_embedding_forward(ex, etok, eE, EM_N, EM_D);
    return wsum(eR, ex, EM_N * EM_D);
}

static void test_embedding(void) {
    eE = randn(EM_V * EM_D, 1.0f);
    ex = zeros(EM_N * EM_D);
    eR = randn(EM_N * EM_D, 1.0f);
    loss_embed();
    CHECK(memcmp(ex + 2 * EM_D, eE + 3 * EM_D, sizeof(float) * EM_D) == 0);
    float *dE = zeros(EM_V * EM_D);
    ecr_embedding_backward(dE, eR, etok, EM_N, EM_D);
    fd_check("embedding dE", eE, EM_V * EM_D, 1, 1e-2f, dE, 1e-3, 1e-4, loss_embed);
    for (int j = 0; j < EM_D; j++) CHECK(dE[2 * EM_D + j] == 0.0f); /* token 2 unused */
    free(eE); free(ex); free(eR); free(dE);
}

/* ---- softmax + cross-entropy ------------------------------------------------------------------ */

enum { CE_N = 5, CE_V = 11 };
static float *celog, *closs, *clse, *cextra;
static int32_t ctgt[CE_N] = {3, -1, 0, 10, 7};
static const float CE_SCALE = 0.7f;
static double loss_ce(void) {
    ecr_softmax_ce_forward(closs, clse, celog, ctgt, CE_N, CE_V);
    double s = 0;
    for (int t = 0; t < CE_N; t++) s += CE_SCALE * (double)closs[t];
    return s + wsum(cextra, celog, CE_N * CE_V);
}

static void test_softmax_ce(void) {
    celog = randn(CE_N * CE_V, 2.0f);
    closs = zeros(CE_N);
    clse = zeros(CE_N);
    cextra = randn(CE_N * CE_V, 0.1f);
    loss_ce();
    for (int t = 0; t < CE_N; t++) { /* reference in double */
        double m = -1e300, s = 0;
        for (int v = 0; v < CE_V; v++) m = tl_nanmax(m, celog[t * CE_V + v]);
        for (int v = 0; v < CE_V; v++) s += exp(celog[t * CE_V + v] - m);
        double lse = m + log(s);
        CHECK_CLOSE(clse[t], lse, 1e-5 * (1 + fabs(lse)));
        CHECK_CLOSE(closs[t], ctgt[t] >= 0 ? lse - celog[t * CE_V + ctgt[t]] : 0.0, 1e-5);
    }
    float *g = zeros(CE_N * CE_V);
    ecr_softmax_ce_backward(g, celog, clse, ctgt, cextra, 1.0f, CE_SCALE, CE_N, CE_V);
    fd_check("softmax-ce dlogits", celog, CE_N * CE_V, 1, 1e-2f, g, 2e-3, 2e-4, loss_ce);
    /* in place (dlogits aliasing logits) gives the same */
    loss_ce(); /* fd_check left lse of the last perturbation */
    float *al = copyf(celog, CE_N * CE_V);
    ecr_softmax_ce_backward(al, al, clse, ctgt, cextra, 1.0f, CE_SCALE, CE_N, CE_V);
    double ea = 0;
    for (int i = 0; i < CE_N * CE_V; i++) ea = tl_nanmax(ea, fabs(al[i] - g[i]));
    CHECK_MSG(ea < 1e-6, "in-place softmax-ce differs by %g", ea);
    /* extra_scale s: the same as the extra multiplied by s beforehand */
    float *half = copyf(cextra, CE_N * CE_V), *gs = zeros(CE_N * CE_V), *gh = zeros(CE_N * CE_V);
    for (int i = 0; i < CE_N * CE_V; i++) half[i] *= 0.375f;
    ecr_softmax_ce_backward(gs, celog, clse, ctgt, cextra, 0.375f, CE_SCALE, CE_N, CE_V);
    ecr_softmax_ce_backward(gh, celog, clse, ctgt, half, 1.0f, CE_SCALE, CE_N, CE_V);
    double es = 0;
    for (int i = 0; i < CE_N * CE_V; i++) es = tl_nanmax(es, fabs(gs[i] - gh[i]));
    CHECK_MSG(es == 0, "softmax-ce with extra_scale differs by %g", es);
    free(half);
    free(gs);
    free(gh);
    /* huge logits: finite loss, exact value */
    float big[4] = {1000.0f, 999.0f, -1000.0f, 0.0f}, bl, bz;
    int32_t bt[1] = {1};
    ecr_softmax_ce_forward(&bl, &bz, big, bt, 1, 4);
    CHECK_CLOSE(bl, 1.0 + log(1.0 + exp(-1.0)), 1e-5);
    free(celog); free(closs); free(clse); free(cextra); free(g); free(al);
}

/* ---- pooling ---------------------------------------------------------------------------------- */

enum { PL_N = 11, PL_D = 3, PL_TEXTS = 4 };
static int32_t pltext[PL_N] = {0, 0, 0, 1, 1, -1, 2, 2, 2, 2, 3};
static int32_t plpos[PL_N] = {0, 1, 2, 0, 1, 0, 0, 1, 2, 3, 0};
static float *plx, *plp, *plinv, *plR;
static double loss_pool(void) {
    ecr_pool_forward(plp, plinv, plx, pltext, plpos, PL_N, PL_D, PL_TEXTS);
    return wsum(plR, plp, PL_TEXTS * PL_D);
}

static void test_pool(void) {
    plx = randn(PL_N * PL_D, 1.0f);
    plp = zeros(PL_TEXTS * PL_D);
    plinv = zeros(PL_TEXTS);
    plR = randn(PL_TEXTS * PL_D, 1.0f);
    loss_pool();
    for (int j = 0; j < PL_D; j++) {
        CHECK_CLOSE(plp[j], (plx[1 * PL_D + j] + plx[2 * PL_D + j]) / 2.0, 1e-6);
        CHECK_CLOSE(plp[PL_D + j], plx[4 * PL_D + j], 1e-6);
        CHECK_CLOSE(plp[2 * PL_D + j],
                    (plx[7 * PL_D + j] + plx[8 * PL_D + j] + plx[9 * PL_D + j]) / 3.0, 1e-6);
        CHECK(plp[3 * PL_D + j] == 0.0f); /* a text with no tokens pools to zero */
    }
    float *dx = zeros(PL_N * PL_D);
    ecr_pool_backward(dx, plR, plinv, pltext, plpos, PL_N, PL_D);
    fd_check("pool dx", plx, PL_N * PL_D, 1, 1e-2f, dx, 1e-3, 1e-4, loss_pool);
    free(plx); free(plp); free(plinv); free(plR); free(dx);
}

static void test_threads(void) {
    ecr_set_threads(1);
    CHECK(ecr_get_threads() == 1);
    ecr_set_threads(0); /* all cores */
    CHECK(ecr_get_threads() >= 1);
#ifdef ECR_HAVE_OMP
    ecr_set_threads(3);
    CHECK(ecr_get_threads() == 3);
#endif
    ecr_set_threads(2);
}

int main(void) {
    ecr_rng_seed(&g_rng, 1234);
    RUN(test_threads);
    ecr_set_threads(2);
    RUN(test_expf);
    RUN(test_sgemm);
    RUN(test_linear);
    RUN(test_sgemv);
    RUN(test_rmsnorm);
    RUN(test_rope);
    RUN(test_attention);
    RUN(test_attention_long);
    RUN(test_swiglu);
    RUN(test_embedding);
    RUN(test_softmax_ce);
    RUN(test_pool);
    return test_finish("test_ops");
}
