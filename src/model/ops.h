/* ops.h — the model's op kernels, each forward beside its backward (internal).
 *
 * Conventions: row-major fp32; N = rows (B*T slots), d = width; "+=" means the op
 * accumulates into its output, "=" that it overwrites. Backward functions take the
 * gradient of the output (dy) and produce gradients of inputs and weights. Kernels are
 * OpenMP-parallel over rows (or (row, head)); every reduction runs in a fixed order that
 * does not depend on the thread count, so results are reproducible. */
#ifndef ECR_OPS_H
#define ECR_OPS_H
#include <stddef.h>
#include <stdint.h>

#include "ecr.h"
#include "util.h"

/* Row chunks used for deterministic column reductions (RMSNorm weight gradients). */
#define ECR_NCHUNK 32

/* ---- linear (nn.Linear without bias; weight stored [out, in]) ----------------------------
 * forward:  y[N,out] = x[N,in] @ w[out,in]^T  + beta * y
 * backward: dw[out,in] += dy[N,out]^T @ x[N,in]      (first; skipped when dw is NULL)
 *           dx[N,in]    = dy @ w  + dx_beta * dx     (then;  skipped when dx is NULL)
 *           dx may alias x (x is read only by the dw product, which runs first). */
void ecr_linear_forward(float *y, const float *x, const float *w, int N, int in, int out,
                        float beta);
void ecr_linear_backward(float *dx, float *dw, const float *dy, const float *x, const float *w,
                         int N, int in, int out, float dx_beta);

/* ---- linear in bf16 (the same products; inputs already rounded to bf16) -------------------
 * forward:  y[N,out] = xb[N,in] @ wb[out,in]^T + beta * y
 * backward: dw[out,in] += dyb^T @ xb   (first; skipped when dw is NULL)
 *           dx[N,in]    = dyb @ wb + dx_beta * dx   (skipped when dx is NULL)
 * fp32 accumulation and outputs (see ecr_gemm_bf16 for the engines and the error bound).
 * ECR_E_NOMEM only from the reference engine. */
ecr_status ecr_linear_forward_bf16(float *y, const uint16_t *xb, const uint16_t *wb, int N, int in,
                                   int out, float beta);
ecr_status ecr_linear_backward_bf16(float *dx, float *dw, const uint16_t *dyb, const uint16_t *xb,
                                    const uint16_t *wb, int N, int in, int out, float dx_beta);

/* ---- RMSNorm (Hugging Face LlamaRMSNorm) ------------------------------------------------
 * forward:  rstd[N] = 1/sqrt(mean_j x[i,j]^2 + eps);  y[N,d] = x * rstd * w[d]
 * backward: g = dy * w, xhat = x * rstd
 *           dx[N,d] += rstd * (g - xhat * mean_j(g * xhat))
 *           dw[d]   += sum_i dy * xhat
 *           scratch: ECR_NCHUNK * d floats. dx must not alias dy or x. */
void ecr_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int N, int d,
                         float eps);
void ecr_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x,
                          const float *rstd, const float *w, int N, int d, float *scratch);

/* ---- rotary position embedding (Hugging Face rotate_half convention) ---------------------
 * Tables cos/sin [max_pos, hd/2]: angle(p, i) = p * theta^(-2i/hd), computed in double.
 * forward (in place) on the first nh heads of hd columns of each row of x (row stride ld):
 *   for i < hd/2, a = v[i], b = v[i + hd/2], c/s = table[pos[t], i]:
 *   v[i] = a c - b s;  v[i + hd/2] = b c + a s
 * backward (in place on dx): the transpose rotation (angle -> -angle). pos[t] < max_pos. */
void ecr_rope_tables(float *cos_t, float *sin_t, int max_pos, int hd, float theta);
void ecr_rope_forward(float *x, int N, int ld, int nh, int hd, const int32_t *pos,
                      const float *cos_t, const float *sin_t);
void ecr_rope_backward(float *dx, int N, int ld, int nh, int hd, const int32_t *pos,
                       const float *cos_t, const float *sin_t);

/* ---- packed causal self-attention --------------------------------------------------------
 * qkv [B*T, 3d] rows [q | k | v], d = H * hd, head h at columns h*hd of each part.
 * Slot t (row b, index i) attends to slots i - span[t] .. i of its own row: block-diagonal
 * causal attention, span = position in the text (0 for padding). Spans must form text
 * segments: span[t] is 0 (a segment starts) or span[t-1] + 1 in the same row.
 * forward:  out[B*T, d] = softmax(q k^T / sqrt(hd)) v per (row, head, window);
 *           lse[B*T, H] = log-sum-exp of each query's scores (kept for the backward).
 * backward: dqkv[B*T, 3d] = gradients of q, k, v (overwritten), recomputing the
 *           probabilities from lse; out is the forward output.
 * Work runs per (row, head, segment), parallel over (row, head), vectorised over keys;
 * per-thread workspace is O(T*hd + n_max^2) floats (kept between calls); never a full
 * B x H x T x T tensor. scratch: B*H*T floats, used only if that workspace cannot be
 * allocated (then a per-query path runs). */
void ecr_attention_forward(float *out, float *lse, const float *qkv, const int32_t *span,
                           int B, int T, int H, int hd, float *scratch);
void ecr_attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, const int32_t *span, int B, int T, int H, int hd,
                            float *scratch);
/* The per-query formulation (general windows, no workspace; the fallback of the two
 * above, kept callable so the tests compare both). Same contracts. */
void ecr_attention_forward_query(float *out, float *lse, const float *qkv, const int32_t *span,
                                 int B, int T, int H, int hd, float *scratch);
void ecr_attention_backward_query(float *dqkv, const float *dout, const float *qkv,
                                  const float *out, const float *lse, const int32_t *span, int B,
                                  int T, int H, int hd, float *scratch);
/* One query against n cached keys/values (KV-cache decoding): q [d]; kc, vc [n, ld] rows
 * (head h at column h*hd); out [d]; scratch n floats. Same arithmetic as the forward. */
void ecr_attention_step(float *out, const float *q, const float *kc, const float *vc, int ld,
                        int n, int H, int hd, float *scratch);

/* ---- SwiGLU ---------------------------------------------------------------------------------
 * gu [N, 2h] rows [gate | up] (gate_proj and up_proj outputs side by side).
 * forward:  act[N,h] = silu(gate) * up,  silu(g) = g * sigmoid(g)
 * backward: dgu[N,2h] = [dact * up * silu'(g) | dact * silu(g)]  (overwritten; dgu may alias gu) */
void ecr_swiglu_forward(float *act, const float *gu, int N, int h);
void ecr_swiglu_backward(float *dgu, const float *gu, const float *dact, int N, int h);

/* ---- token embedding ------------------------------------------------------------------------
 * forward:  x[N,d] = E[tok[t], :];   backward: dE[tok[t], :] += dx[t, :] (in slot order). */
void ecr_embedding_forward(float *x, const int32_t *tok, const float *E, int N, int d);
void ecr_embedding_backward(float *dE, const float *dx, const int32_t *tok, int N, int d);

/* ---- fused softmax + cross-entropy over the vocabulary ----------------------------------
 * forward:  lse[N] = logsumexp(logits[t, :]); row_loss[t] = lse - logits[t, target[t]]
 *           (0 where target < 0).
 * backward: dlogits[t, v] = scale * (softmax(logits[t])_v - [v == target])  (rows with
 *           target >= 0; 0 elsewhere) + extra_scale * extra[t, v] when extra != NULL.
 *           Overwrites dlogits, which may alias logits. */
void ecr_softmax_ce_forward(float *row_loss, float *lse, const float *logits,
                            const int32_t *targets, int N, int V);
void ecr_softmax_ce_backward(float *dlogits, const float *logits, const float *lse,
                             const int32_t *targets, const float *extra, float extra_scale,
                             float scale, int N, int V);

/* ---- mean pooling per text --------------------------------------------------------------
 * forward:  pooled[i, :] = mean of x[t, :] over slots t with text[t] == i and pos[t] >= 1;
 *           inv_count[i] = 1/count (0 and a zero row when the text has no such slot).
 * backward: dx[t, :] += dpooled[text[t], :] * inv_count[text[t]] on those slots. */
void ecr_pool_forward(float *pooled, float *inv_count, const float *x, const int32_t *text,
                      const int32_t *pos, int N, int d, int n_texts);
void ecr_pool_backward(float *dx, const float *dpooled, const float *inv_count,
                       const int32_t *text, const int32_t *pos, int N, int d);

/* ---- helpers --------------------------------------------------------------------------------- */
/* exp(x) in fp32, ~2 ulp, vectorisable; inputs clamped to [-87.3, 88.3]; NaN propagates. */
float ecr_expf(float x);

#endif
