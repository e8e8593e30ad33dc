/* ops.c — op kernels of the Llama-style model, forward beside backward (see ops.h).
 *
 * Shapes: N = B*T slots, d = model width, H heads of hd, h = SwiGLU width, V = vocab.
 * Row loops are OpenMP-parallel; sums over a row use eight fixed lanes (vectorised by gcc,
 * same order whatever the thread count). */
#include "ops.h"
#include "matmul.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* Cephes-style expf: x = k ln2 + r, |r| <= ln2/2, exp(r) by a degree-6 polynomial.
 * Written so that gcc vectorises loops calling it (rintf, memcpy punning, selects). */
static inline float fexp(float x) {
    float xin = x;
    x = x > -87.3f ? x : -87.3f; /* NaN -> -87.3 here (the result is NaN below) */
    x = x < 88.3f ? x : 88.3f;
    float fk = rintf(x * 1.44269504088896341f);
    float r = x - fk * 0.693359375f;
    r = r + fk * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)fk + 127) << 23; /* 2^k; fk in [-126, 127] */
    float s;
    memcpy(&s, &bits, sizeof s);
    return xin != xin ? xin : p * s;
}

float ecr_expf(float x) { return fexp(x); }

static inline float dot(const float *restrict a, const float *restrict b, int n) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline float row_max(const float *restrict a, int n) {
    float acc[8];
    int i = 0;
    if (n < 8) {
        float m = a[0];
        for (i = 1; i < n; i++) m = a[i] > m ? a[i] : m;
        return m;
    }
    for (int j = 0; j < 8; j++) acc[j] = a[j];
    for (i = 8; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] = a[i + j] > acc[j] ? a[i + j] : acc[j];
    float m = acc[0];
    for (int j = 1; j < 8; j++) m = acc[j] > m ? acc[j] : m;
    for (; i < n; i++) m = a[i] > m ? a[i] : m;
    return m;
}

/* sum_j exp(a[j] - m) */
static inline float sum_exp(const float *restrict a, int n, float m) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += fexp(a[i + j] - m);
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += fexp(a[i] - m);
    return s;
}

/* y += a * x */
static inline void axpy(float *restrict y, float a, const float *restrict x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* ---- linear ------------------------------------------------------------------------------- */

/* y[N,out] = x[N,in] @ w[out,in]^T + beta*y; one row (a decoding step) as a matrix-vector
 * product, which streams w once (ecr_sgemv) */
void ecr_linear_forward(float *y, const float *x, const float *w, int N, int in, int out,
                        float beta) {
    if (N == 1) ecr_sgemv(out, in, w, x, beta, y);
    else ecr_sgemm(0, 1, N, out, in, 1.0f, x, in, w, in, beta, y, out);
}

/* dw[out,in] += dy^T[out,N] @ x[N,in];  dx[N,in] = dy[N,out] @ w[out,in] + dx_beta*dx */
void ecr_linear_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         int N, int in, int out, float dx_beta) {
    if (dw) ecr_sgemm(1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dw, in);
    if (dx) ecr_sgemm(0, 0, N, in, out, 1.0f, dy, out, w, in, dx_beta, dx, in);
}

/* y[N,out] = xb[N,in] @ wb[out,in]^T + beta*y, bf16 inputs; one row (a decoding step) as a
 * matrix-vector product (ecr_sgemv_bf16) */
ecr_status ecr_linear_forward_bf16(float *y, const uint16_t *xb, const uint16_t *wb, int N, int in,
                                   int out, float beta) {
    if (N == 1) {
        ecr_sgemv_bf16(out, in, wb, xb, beta, y);
        return ECR_OK;
    }
    return ecr_gemm_bf16(0, 1, N, out, in, xb, in, wb, in, beta, y, out);
}

/* dw[out,in] += dyb^T @ xb;  dx[N,in] = dyb @ wb + dx_beta*dx, bf16 inputs */
ecr_status ecr_linear_backward_bf16(float *dx, float *dw, const uint16_t *dyb, const uint16_t *xb,
                                    const uint16_t *wb, int N, int in, int out, float dx_beta) {
    ecr_status st = ECR_OK;
    if (dw) st = ecr_gemm_bf16(1, 0, out, in, N, dyb, out, xb, in, 1.0f, dw, in);
    if (!st && dx) st = ecr_gemm_bf16(0, 0, N, in, out, dyb, out, wb, in, dx_beta, dx, in);
    return st;
}

/* ---- RMSNorm -------------------------------------------------------------------------------- */

/* y[N,d] = x * rstd * w;  rstd[N] */
void ecr_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int d,
                         float eps) {
    ECR_OMP(parallel for schedule(static) if ((size_t)N * d > 32768))
    for (int t = 0; t < N; t++) {
        const float *xr = x + (size_t)t * d;
        float *yr = y + (size_t)t * d;
        float r = 1.0f / sqrtf(dot(xr, xr, d) / (float)d + eps);
        rstd[t] = r;
        for (int j = 0; j < d; j++) yr[j] = xr[j] * r * w[j];
    }
}

/* dx[N,d] += rstd*(g - xhat*mean(g*xhat)), g = dy*w;  dw[d] += sum_t dy*xhat */
void ecr_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                          const float *rstd, const float *w, int N, int d, float *scratch) {
    int per = (N + ECR_NCHUNK - 1) / ECR_NCHUNK;
    ECR_OMP(parallel for schedule(static) if ((size_t)N * d > 32768))
    for (int c = 0; c < ECR_NCHUNK; c++) {
        float *part = scratch + (size_t)c * d;
        memset(part, 0, (size_t)d * sizeof(float));
        int t1 = (c + 1) * per < N ? (c + 1) * per : N;
        for (int t = c * per; t < t1; t++) {
            const float *xr = x + (size_t)t * d, *dyr = dy + (size_t)t * d;
            float *dxr = dx + (size_t)t * d;
            float r = rstd[t];
            float acc[8] = {0};
            int j = 0;
            for (; j + 8 <= d; j += 8)
                for (int k = 0; k < 8; k++) acc[k] += dyr[j + k] * w[j + k] * xr[j + k];
            float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for (; j < d; j++) s += dyr[j] * w[j] * xr[j];
            float m = s * r / (float)d; /* mean(g * xhat) */
            float rr = m * r;
            for (j = 0; j < d; j++) {
                dxr[j] += r * (dyr[j] * w[j]) - rr * (xr[j] * r);
                part[j] += dyr[j] * xr[j] * r;
            }
        }
    }
    for (int c = 0; c < ECR_NCHUNK; c++) {
        const float *part = scratch + (size_t)c * d;
        for (int j = 0; j < d; j++) dw[j] += part[j];
    }
}

/* ---- rotary embedding ----------------------------------------------------------------------- */

void ecr_rope_tables(float *cos_t, float *sin_t, int max_pos, int hd, float theta) {
    int half = hd / 2;
    for (int i = 0; i < half; i++) {
        double inv = pow((double)theta, -2.0 * i / hd);
        for (int p = 0; p < max_pos; p++) {
            double a = p * inv;
            cos_t[(size_t)p * half + i] = (float)cos(a);
            sin_t[(size_t)p * half + i] = (float)sin(a);
        }
    }
}

static void rope_apply(float *x, int N, int ld, int nh, int hd, const int32_t *pos,
                       const float *cos_t, const float *sin_t, float sign) {
    int half = hd / 2;
    ECR_OMP(parallel for schedule(static) if ((size_t)N * nh * hd > 32768))
    for (int t = 0; t < N; t++) {
        const float *c = cos_t + (size_t)pos[t] * half;
        const float *s = sin_t + (size_t)pos[t] * half;
        for (int hh = 0; hh < nh; hh++) {
            float *v = x + (size_t)t * ld + (size_t)hh * hd;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half], si = sign * s[i];
                v[i] = a * c[i] - b * si;
                v[i + half] = b * c[i] + a * si;
            }
        }
    }
}

/* x (first nh heads of each row) rotated by angle(pos) in place */
void ecr_rope_forward(float *x, int N, int ld, int nh, int hd, const int32_t *pos,
                      const float *cos_t, const float *sin_t) {
    rope_apply(x, N, ld, nh, hd, pos, cos_t, sin_t, 1.0f);
}

/* dx rotated by -angle(pos) in place (the transpose of the forward rotation) */
void ecr_rope_backward(float *dx, int N, int ld, int nh, int hd, const int32_t *pos,
                       const float *cos_t, const float *sin_t) {
    rope_apply(dx, N, ld, nh, hd, pos, cos_t, sin_t, -1.0f);
}

/* ---- attention ------------------------------------------------------------------------------ */

/* One query q [hd] against keys/values at k, v (n rows, stride ld): out [hd], returns lse.
 * sc: n floats of scratch. */
static float attend_one(float *restrict out, const float *restrict q, const float *k,
                        const float *v, int ld, int n, int hd, float scale, float *restrict sc) {
    float m = -INFINITY;
    for (int j = 0; j < n; j++) {
        float s = dot(q, k + (size_t)j * ld, hd) * scale;
        sc[j] = s;
        m = s > m ? s : m;
    }
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        float e = fexp(sc[j] - m);
        sc[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    memset(out, 0, (size_t)hd * sizeof(float));
    for (int j = 0; j < n; j++) axpy(out, sc[j] * inv, v + (size_t)j * ld, hd);
    return m + logf(sum);
}

/* Per-thread attention workspace (a segment's score/probability matrix and its gradient),
 * grown on demand and kept for the life of the thread. */
static _Thread_local float *tl_att;
static _Thread_local size_t tl_att_cap;

static float *att_buffer(size_t n_floats) {
    if (n_floats > tl_att_cap) {
        free(tl_att);
        tl_att = aligned_alloc(64, (n_floats * sizeof(float) + 63) / 64 * 64);
        tl_att_cap = tl_att ? n_floats : 0;
    }
    return tl_att;
}

/* Length of the text segment starting at slot i of a row: spans 0, 1, 2, ... */
static inline int segment_len(const int32_t *span_row, int i, int T) {
    int n = 1;
    while (i + n < T && span_row[i + n] == n) n++;
    return n;
}

/* Causal softmax in place on S [n, n] (row stride n): row i keeps p_ij for j <= i (from
 * lse[i*H] when `given`, else computed and stored there) and zeros above the diagonal. */
static void causal_softmax(float *S, int n, float *lse, int H, int given) {
    for (int i = 0; i < n; i++) {
        float *s = S + (size_t)i * n;
        float z;
        if (given) {
            z = lse[(size_t)i * H];
        } else {
            float m = row_max(s, i + 1);
            z = m + logf(sum_exp(s, i + 1, m));
            lse[(size_t)i * H] = z;
        }
        for (int j = 0; j <= i; j++) s[j] = fexp(s[j] - z);
        for (int j = i + 1; j < n; j++) s[j] = 0.0f;
    }
}

/* Forward of one (row, head, segment) of n slots: q/k/v rows of stride ld, out stride d.
 *   S = Q K^T / sqrt(hd)  [n, n];  P = causal softmax(S);  O = P V */
static void attn_segment_fwd(float *out, float *lse, int H, const float *q, const float *k,
                             const float *v, int ld, int d, int n, int hd, float scale,
                             float *S) {
    ecr_sgemm(0, 1, n, n, hd, scale, q, ld, k, ld, 0.0f, S, n);
    causal_softmax(S, n, lse, H, 0);
    ecr_sgemm(0, 0, n, hd, n, 1.0f, S, n, v, ld, 0.0f, out, d);
}

/* Backward of one segment; dq/dk/dv rows (stride ld) are written (=).
 *   P from lse;  dP = dO V^T;  dS = P * (dP - rowsum(dO * O)) / sqrt(hd)
 *   dQ = dS K;  dK = dS^T Q;  dV = P^T dO */
static void attn_segment_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                             const float *lse, int H, const float *q, const float *k,
                             const float *v, int ld, int d, int n, int hd, float scale,
                             float *P) {
    float *dS = P + (size_t)n * n;
    ecr_sgemm(0, 1, n, n, hd, scale, q, ld, k, ld, 0.0f, P, n);
    causal_softmax(P, n, (float *)lse, H, 1);
    ecr_sgemm(0, 1, n, n, hd, 1.0f, dout, d, v, ld, 0.0f, dS, n);
    for (int i = 0; i < n; i++) {
        float D = dot(dout + (size_t)i * d, out + (size_t)i * d, hd);
        float *p = P + (size_t)i * n, *ds = dS + (size_t)i * n;
        for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - D) * scale; /* 0 above diagonal */
    }
    ecr_sgemm(0, 0, n, hd, n, 1.0f, dS, n, k, ld, 0.0f, dq, ld);
    ecr_sgemm(1, 0, n, hd, n, 1.0f, dS, n, q, ld, 0.0f, dk, ld);
    ecr_sgemm(1, 0, n, hd, n, 1.0f, P, n, dout, d, 0.0f, dv, ld);
}

/* Per-query fallback (no workspace): general windows i - span[t] .. i. */
static void attn_row_fwd_slow(float *out, float *lse, const float *qkv, const int32_t *span,
                              int b, int hh, int T, int H, int hd, float *sc) {
    int d = H * hd, ld = 3 * d;
    float scale = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < T; i++) {
        size_t t = (size_t)b * T + i;
        size_t t0 = t - (size_t)span[t];
        const float *q = qkv + t * ld + (size_t)hh * hd;
        const float *k = qkv + t0 * ld + d + (size_t)hh * hd;
        lse[t * H + hh] = attend_one(out + t * d + (size_t)hh * hd, q, k, k + d, ld, span[t] + 1,
                                     hd, scale, sc);
    }
}

static void attn_row_bwd_slow(float *dqkv, const float *dout, const float *qkv, const float *out,
                              const float *lse, const int32_t *span, int b, int hh, int T, int H,
                              int hd, float *sc) {
    int d = H * hd, ld = 3 * d;
    float scale = 1.0f / sqrtf((float)hd);
    for (int i = 0; i < T; i++) {
        float *row = dqkv + ((size_t)b * T + i) * ld + (size_t)hh * hd;
        memset(row, 0, (size_t)hd * sizeof(float));
        memset(row + d, 0, (size_t)hd * sizeof(float));
        memset(row + 2 * d, 0, (size_t)hd * sizeof(float));
    }
    for (int i = 0; i < T; i++) {
        size_t t = (size_t)b * T + i;
        int n = span[t] + 1;
        size_t t0 = t - (size_t)span[t];
        const float *q = qkv + t * ld + (size_t)hh * hd;
        const float *k = qkv + t0 * ld + d + (size_t)hh * hd;
        const float *v = k + d;
        const float *go = dout + t * d + (size_t)hh * hd;
        float *dq = dqkv + t * ld + (size_t)hh * hd;
        float *dk = dqkv + t0 * ld + d + (size_t)hh * hd;
        float *dv = dk + d;
        float D = dot(go, out + t * d + (size_t)hh * hd, hd);
        float l = lse[t * H + hh];
        for (int j = 0; j < n; j++) {
            float p = fexp(dot(q, k + (size_t)j * ld, hd) * scale - l);
            float dpj = dot(go, v + (size_t)j * ld, hd);
            sc[j] = p * (dpj - D) * scale;
            axpy(dv + (size_t)j * ld, p, go, hd);
        }
        for (int j = 0; j < n; j++) {
            axpy(dq, sc[j], k + (size_t)j * ld, hd);
            axpy(dk + (size_t)j * ld, sc[j], q, hd);
        }
    }
}

void ecr_attention_forward_query(float *out, float *lse, const float *qkv, const int32_t *span,
                                 int B, int T, int H, int hd, float *scratch) {
    ECR_OMP(parallel for collapse(2) schedule(dynamic, 1) if (B * H > 1))
    for (int b = 0; b < B; b++)
        for (int hh = 0; hh < H; hh++)
            attn_row_fwd_slow(out, lse, qkv, span, b, hh, T, H, hd, scratch + ((size_t)b * H + hh) * T);
}

void ecr_attention_backward_query(float *dqkv, const float *dout, const float *qkv,
                                  const float *out, const float *lse, const int32_t *span, int B,
                                  int T, int H, int hd, float *scratch) {
    ECR_OMP(parallel for collapse(2) schedule(dynamic, 1) if (B * H > 1))
    for (int b = 0; b < B; b++)
        for (int hh = 0; hh < H; hh++)
            attn_row_bwd_slow(dqkv, dout, qkv, out, lse, span, b, hh, T, H, hd,
                              scratch + ((size_t)b * H + hh) * T);
}

/* out[B*T,d], lse[B*T,H] from qkv[B*T,3d]; per (row, head), then per text segment */
void ecr_attention_forward(float *out, float *lse, const float *qkv, const int32_t *span,
                           int B, int T, int H, int hd, float *scratch) {
    int d = H * hd, ld = 3 * d;
    float scale = 1.0f / sqrtf((float)hd);
    ECR_OMP(parallel for collapse(2) schedule(dynamic, 1) if (B * H > 1))
    for (int b = 0; b < B; b++) {
        for (int hh = 0; hh < H; hh++) {
            float *buf = att_buffer((size_t)T * T);
            if (!buf) {
                attn_row_fwd_slow(out, lse, qkv, span, b, hh, T, H, hd,
                                  scratch + ((size_t)b * H + hh) * T);
                continue;
            }
            const int32_t *sp = span + (size_t)b * T;
            for (int i = 0; i < T;) {
                int n = segment_len(sp, i, T);
                size_t t = (size_t)b * T + i;
                const float *q = qkv + t * ld + (size_t)hh * hd;
                attn_segment_fwd(out + t * d + (size_t)hh * hd, lse + t * H + hh, H, q, q + d,
                                 q + 2 * d, ld, d, n, hd, scale, buf);
                i += n;
            }
        }
    }
}

/* dqkv[B*T,3d] (overwritten) from dout[B*T,d], recomputing p = exp(s - lse):
 * dv_j = sum_i p_ij dout_i; ds_ij = p_ij (dout_i.v_j - dout_i.out_i) / sqrt(hd);
 * dq_i = sum_j ds_ij k_j; dk_j = sum_i ds_ij q_i */
void ecr_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, const int32_t *span, int B, int T, int H, int hd,
                            float *scratch) {
    int d = H * hd, ld = 3 * d;
    float scale = 1.0f / sqrtf((float)hd);
    ECR_OMP(parallel for collapse(2) schedule(dynamic, 1) if (B * H > 1))
    for (int b = 0; b < B; b++) {
        for (int hh = 0; hh < H; hh++) {
            float *buf = att_buffer(2 * (size_t)T * T);
            if (!buf) {
                attn_row_bwd_slow(dqkv, dout, qkv, out, lse, span, b, hh, T, H, hd,
                                  scratch + ((size_t)b * H + hh) * T);
                continue;
            }
            const int32_t *sp = span + (size_t)b * T;
            for (int i = 0; i < T;) {
                int n = segment_len(sp, i, T);
                size_t t = (size_t)b * T + i;
                size_t o = t * ld + (size_t)hh * hd;
                attn_segment_bwd(dqkv + o, dqkv + o + d, dqkv + o + 2 * d,
                                 dout + t * d + (size_t)hh * hd, out + t * d + (size_t)hh * hd,
                                 lse + t * H + hh, H, qkv + o, qkv + o + d, qkv + o + 2 * d, ld,
                                 d, n, hd, scale, buf);
                i += n;
            }
        }
    }
}

typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias)); /* unaligned loads */

/* Macros, not functions: a 32-byte vector passed or returned by value changes the ABI in
 * builds without AVX (the sanitizer builds; gcc's -Wpsabi). */
#define V8_LOAD(p) (*(const v8f_u *)(p))
#define V8_SUM(v) ((((v)[0] + (v)[4]) + ((v)[1] + (v)[5])) + (((v)[2] + (v)[6]) + ((v)[3] + (v)[7])))

/* Decoding's attention, written for one query: four cached keys at a time share each load of
 * q (independent accumulators, where attend_one's dot products wait on one another), the
 * exponentials in a loop of their own (vectorised), and the values summed four 8-wide
 * column blocks at a time. The same softmax as attend_one; it sums in another order (fp32
 * rounding apart). Head widths that are not a multiple of 8 go through attend_one. */
void ecr_attention_step(float *out, const float *q, const float *kc, const float *vc, int ld,
                        int n, int H, int hd, float *scratch) {
    float scale = 1.0f / sqrtf((float)hd);
    if (hd % 8) {
        for (int hh = 0; hh < H; hh++)
            attend_one(out + (size_t)hh * hd, q + (size_t)hh * hd, kc + (size_t)hh * hd,
                       vc + (size_t)hh * hd, ld, n, hd, scale, scratch);
        return;
    }
    float *sc = scratch;
    for (int hh = 0; hh < H; hh++) {
        const float *qh = q + (size_t)hh * hd, *kh = kc + (size_t)hh * hd, *vh = vc + (size_t)hh * hd;
        float *o = out + (size_t)hh * hd;
        int j = 0;
        for (; j + 4 <= n; j += 4) { /* sc[j..j+4) = q . k_j */
            const float *k0 = kh + (size_t)j * ld, *k1 = k0 + ld, *k2 = k1 + ld, *k3 = k2 + ld;
            v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
            for (int c = 0; c < hd; c += 8) {
                v8f qv = V8_LOAD(qh + c);
                a0 += qv * V8_LOAD(k0 + c);
                a1 += qv * V8_LOAD(k1 + c);
                a2 += qv * V8_LOAD(k2 + c);
                a3 += qv * V8_LOAD(k3 + c);
            }
            sc[j] = V8_SUM(a0) * scale, sc[j + 1] = V8_SUM(a1) * scale;
            sc[j + 2] = V8_SUM(a2) * scale, sc[j + 3] = V8_SUM(a3) * scale;
        }
        for (; j < n; j++) sc[j] = dot(qh, kh + (size_t)j * ld, hd) * scale;
        float m = row_max(sc, n), sum = 0.0f;
        for (j = 0; j < n; j++) sc[j] = fexp(sc[j] - m);
        for (j = 0; j < n; j++) sum += sc[j];
        float inv = 1.0f / sum;
        for (int c = 0; c < hd; c += 32) { /* o[c..c+32) = sum_j p_j v_j, 8 columns per block */
            int nb = hd - c < 32 ? (hd - c) / 8 : 4;
            v8f b[4] = {{0}, {0}, {0}, {0}};
            for (j = 0; j < n; j++) {
                const float *v = vh + (size_t)j * ld + c;
                for (int u = 0; u < nb; u++) b[u] += sc[j] * V8_LOAD(v + 8 * u);
            }
            for (int u = 0; u < nb; u++) {
                v8f r = b[u] * inv;
                memcpy(o + c + 8 * u, &r, sizeof r);
            }
        }
    }
}

/* ---- SwiGLU --------------------------------------------------------------------------------- */

/* act[N,h] = silu(gu[:, :h]) * gu[:, h:] */
void ecr_swiglu_forward(float *act, const float *gu, int N, int h) {
    ECR_OMP(parallel for schedule(static) if ((size_t)N * h > 32768))
    for (int t = 0; t < N; t++) {
        const float *g = gu + (size_t)t * 2 * h, *u = g + h;
        float *a = act + (size_t)t * h;
        for (int j = 0; j < h; j++) a[j] = g[j] / (1.0f + fexp(-g[j])) * u[j];
    }
}

/* dgu[N,2h] = [dact*u*s*(1 + g*(1-s)) | dact*g*s], s = sigmoid(g); dgu may alias gu */
void ecr_swiglu_backward(float *dgu, const float *gu, const float *dact, int N, int h) {
    ECR_OMP(parallel for schedule(static) if ((size_t)N * h > 32768))
    for (int t = 0; t < N; t++) {
        const float *g = gu + (size_t)t * 2 * h, *u = g + h;
        const float *da = dact + (size_t)t * h;
        float *dg = dgu + (size_t)t * 2 * h, *du = dg + h;
        for (int j = 0; j < h; j++) {
            float gj = g[j], uj = u[j];
            float s = 1.0f / (1.0f + fexp(-gj));
            float dgj = da[j] * uj * s * (1.0f + gj * (1.0f - s));
            float duj = da[j] * gj * s;
            dg[j] = dgj;
            du[j] = duj;
        }
    }
}

/* ---- embedding ------------------------------------------------------------------------------ */

/* x[N,d] = E[tok] */
void ecr_embedding_forward(float *x, const int32_t *tok, const float *E, int N, int d) {
    ECR_OMP(parallel for schedule(static) if ((size_t)N * d > 65536))
    for (int t = 0; t < N; t++)
        memcpy(x + (size_t)t * d, E + (size_t)tok[t] * d, (size_t)d * sizeof(float));
}

/* dE[tok] += dx[N,d], slots in order (sequential: cheap, and collisions need an order) */
void ecr_embedding_backward(float *dE, const float *dx, const int32_t *tok, int N, int d) {
    for (int t = 0; t < N; t++) axpy(dE + (size_t)tok[t] * d, 1.0f, dx + (size_t)t * d, d);
}

/* ---- softmax + cross-entropy ---------------------------------------------------------------- */

/* lse[N], row_loss[N] from logits[N,V] */
void ecr_softmax_ce_forward(float *row_loss, float *lse, const float *logits,
                            const int32_t *targets, int N, int V) {
    ECR_OMP(parallel for schedule(static) if ((size_t)N * V > 32768))
    for (int t = 0; t < N; t++) {
        const float *l = logits + (size_t)t * V;
        float m = row_max(l, V);
        float ls = logf(sum_exp(l, V, m));
        lse[t] = m + ls;
        row_loss[t] = targets[t] >= 0 ? (m - l[targets[t]]) + ls : 0.0f; /* no cancellation */
    }
}

/* dlogits[N,V] = scale*(softmax - onehot) (+ extra_scale * extra); may alias logits */
void ecr_softmax_ce_backward(float *dlogits, const float *logits, const float *lse,
                             const int32_t *targets, const float *extra, float extra_scale,
                             float scale, int N, int V) {
    ECR_OMP(parallel for schedule(static) if ((size_t)N * V > 32768))
    for (int t = 0; t < N; t++) {
        const float *l = logits + (size_t)t * V;
        float *g = dlogits + (size_t)t * V;
        const float *e = extra ? extra + (size_t)t * V : NULL;
        if (targets[t] >= 0) {
            float z = lse[t];
            float lt = l[targets[t]];
            for (int v = 0; v < V; v++) g[v] = scale * fexp(l[v] - z);
            g[targets[t]] = scale * (fexp(lt - z) - 1.0f);
        } else {
            memset(g, 0, (size_t)V * sizeof(float));
        }
        if (e)
            for (int v = 0; v < V; v++) g[v] += extra_scale * e[v];
    }
}

/* ---- pooling -------------------------------------------------------------------------------- */

/* pooled[n_texts,d] = mean of x over each text's slots with pos >= 1 */
void ecr_pool_forward(float *pooled, float *inv_count, const float *x, const int32_t *text,
                      const int32_t *pos, int N, int d, int n_texts) {
    memset(pooled, 0, (size_t)n_texts * d * sizeof(float));
    memset(inv_count, 0, (size_t)n_texts * sizeof(float));
    for (int t = 0; t < N; t++) {
        if (text[t] < 0 || pos[t] < 1) continue;
        axpy(pooled + (size_t)text[t] * d, 1.0f, x + (size_t)t * d, d);
        inv_count[text[t]] += 1.0f;
    }
    for (int i = 0; i < n_texts; i++) {
        if (inv_count[i] == 0.0f) continue;
        float inv = 1.0f / inv_count[i];
        inv_count[i] = inv;
        for (int j = 0; j < d; j++) pooled[(size_t)i * d + j] *= inv;
    }
}

/* dx[t] += dpooled[text[t]] * inv_count[text[t]] on pooled slots */
void ecr_pool_backward(float *dx, const float *dpooled, const float *inv_count,
                       const int32_t *text, const int32_t *pos, int N, int d) {
    ECR_OMP(parallel for schedule(static) if ((size_t)N * d > 65536))
    for (int t = 0; t < N; t++) {
        if (text[t] < 0 || pos[t] < 1) continue;
        axpy(dx + (size_t)t * d, inv_count[text[t]], dpooled + (size_t)text[t] * d, d);
    }
}
