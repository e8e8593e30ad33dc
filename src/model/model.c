/* model.c — the Llama-style model: config, parameters, precision, packed-batch
 * forward/backward and KV-cache decoding (the model folder is model_io.c).
 *
 * Architecture (exactly Hugging Face LlamaForCausalLM, no biases, weights [out, in]):
 *   x0 = embed_tokens[tokens]
 *   per layer:  x += o_proj(attn(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))
 *               with n1 = input_layernorm(x)
 *               x += down_proj(silu(gate_proj(n2)) * up_proj(n2)),  n2 = post_attention_layernorm(x)
 *   xf = model.norm(x);  logits = lm_head(xf)  (lm_head = embed_tokens when tied)
 *
 * Parameter block layout (one flat float array, the tensor table gives offsets): embed,
 * then per layer [input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down],
 * model.norm, lm_head (untied only), ecr.proj (ecr_dim > 0). q/k/v are adjacent, so they
 * form one [3d, d] matrix and one sgemm; gate/up likewise form one [2h, d] matrix.
 *
 * Activations of the last forward, per layer (N = B*T rows): layer input x, xmid (after
 * attention), both norm outputs, qkv (rotated in place), attention output, gate|up,
 * SwiGLU output, rstd of both norms, attention log-sum-exp. The backward consumes them
 * (gate|up and the logits are overwritten by their gradients). Buffers are allocated for
 * the largest batch seen and reused.
 *
 * Precision (ecr_model_set_precision): in bf16 the products of the linear layers and the
 * head take bf16 inputs. The model then keeps `wb`, the parameter block rounded to bf16
 * (same offsets as `params`; rounded again at a forward after ecr_model_params was
 * called), and the rounded inputs of each product (ln1b, attb, ln2b, actb, xfb) for the
 * backward. The fp32 norm outputs and SwiGLU outputs are then needed only until they are
 * rounded, so a single layer's buffer serves every layer (ln_stride, act_stride = 0). */
#include "ecr.h"
#include "matmul.h"
#include "model_internal.h"
#include "ops.h"
#include "rng.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ==== configuration ========================================================================== */

void ecr_config_base(ecr_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 8192;
    c->max_seq_len = 256;
    c->rope_theta = 10000.0f;
    c->norm_eps = 1e-5f;
    c->tied = 1;
    c->ecr_dim = 0;
}

/* SwiGLU widths: 8/3 * dim rounded up to a multiple of 32 (Llama's rule): 352, 704, 1024. */
ecr_status ecr_config_preset(const char *name, ecr_config *cfg) {
    ecr_config c;
    ecr_config_base(&c);
    if (name && !strcmp(name, "tiny")) {
        c.dim = 128, c.n_layers = 2, c.n_heads = 4, c.hidden_dim = 352;
    } else if (name && !strcmp(name, "small")) {
        c.dim = 256, c.n_layers = 4, c.n_heads = 4, c.hidden_dim = 704;
    } else if (name && !strcmp(name, "base")) {
        c.dim = 384, c.n_layers = 6, c.n_heads = 6, c.hidden_dim = 1024;
    } else {
        return ecr_fail(ECR_E_INVALID, "model: unknown preset '%s' (expected tiny, small or base)",
                        name ? name : "(null)");
    }
    *cfg = c;
    return ECR_OK;
}

static int parse_int(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < -2147483647L || v > 2147483647L) return 0;
    *out = (int)v;
    return 1;
}

static int parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

ecr_status ecr_config_set(ecr_config *cfg, const char *assignment) {
    const char *eq = assignment ? strchr(assignment, '=') : NULL;
    if (!eq || eq == assignment)
        return ecr_fail(ECR_E_INVALID, "config: '%s': expected key=value",
                        assignment ? assignment : "(null)");
    char key[64];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof key) return ecr_fail(ECR_E_INVALID, "config: '%s': key too long", assignment);
    memcpy(key, assignment, kl);
    key[kl] = 0;
    const char *val = eq + 1;
    static const struct { const char *ours, *hf; size_t off; } ints[] = {
        {"vocab_size", "vocab_size", offsetof(ecr_config, vocab_size)},
        {"dim", "hidden_size", offsetof(ecr_config, dim)},
        {"n_layers", "num_hidden_layers", offsetof(ecr_config, n_layers)},
        {"n_heads", "num_attention_heads", offsetof(ecr_config, n_heads)},
        {"hidden_dim", "intermediate_size", offsetof(ecr_config, hidden_dim)},
        {"max_seq_len", "max_position_embeddings", offsetof(ecr_config, max_seq_len)},
        {"ecr_dim", "ecr_dim", offsetof(ecr_config, ecr_dim)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strcmp(key, ints[i].ours) && strcmp(key, ints[i].hf)) continue;
        int v;
        if (!parse_int(val, &v))
            return ecr_fail(ECR_E_INVALID, "config: %s: '%s' is not an integer", key, val);
        *(int *)((char *)cfg + ints[i].off) = v;
        return ECR_OK;
    }
    if (!strcmp(key, "rope_theta") || !strcmp(key, "norm_eps") || !strcmp(key, "rms_norm_eps")) {
        float v;
        if (!parse_float(val, &v))
            return ecr_fail(ECR_E_INVALID, "config: %s: '%s' is not a number", key, val);
        if (!strcmp(key, "rope_theta"))
            cfg->rope_theta = v;
        else
            cfg->norm_eps = v;
        return ECR_OK;
    }
    if (!strcmp(key, "tied") || !strcmp(key, "tie_word_embeddings")) {
        if (!strcmp(val, "1") || !strcmp(val, "true"))
            cfg->tied = 1;
        else if (!strcmp(val, "0") || !strcmp(val, "false"))
            cfg->tied = 0;
        else
            return ecr_fail(ECR_E_INVALID, "config: %s: '%s' is not 0, 1, true or false", key, val);
        return ECR_OK;
    }
    return ecr_fail(ECR_E_INVALID, "config: unknown key '%s'", key);
}

ecr_status ecr_config_validate(const ecr_config *c) {
#define NEED(cond, ...) do { if (!(cond)) return ecr_fail(ECR_E_INVALID, "config: " __VA_ARGS__); } while (0)
    NEED(c->vocab_size >= 2 && c->vocab_size <= (1 << 24), "vocab_size %d out of range [2, 2^24]", c->vocab_size);
    NEED(c->dim >= 2 && c->dim <= 65536, "dim %d out of range [2, 65536]", c->dim);
    NEED(c->n_layers >= 1 && c->n_layers <= 1024, "n_layers %d out of range [1, 1024]", c->n_layers);
    NEED(c->n_heads >= 1 && c->dim % c->n_heads == 0, "n_heads %d does not divide dim %d", c->n_heads, c->dim);
    NEED((c->dim / c->n_heads) % 2 == 0, "head_dim %d (dim / n_heads) must be even", c->dim / c->n_heads);
    NEED(c->hidden_dim >= 1 && c->hidden_dim <= 1 << 20, "hidden_dim %d out of range", c->hidden_dim);
    NEED(c->max_seq_len >= 1 && c->max_seq_len <= 1 << 20, "max_seq_len %d out of range", c->max_seq_len);
    NEED(isfinite(c->rope_theta) && c->rope_theta > 1.0f, "rope_theta %g must be > 1", (double)c->rope_theta);
    NEED(isfinite(c->norm_eps) && c->norm_eps > 0.0f, "norm_eps %g must be > 0", (double)c->norm_eps);
    NEED(c->tied == 0 || c->tied == 1, "tied must be 0 or 1");
    NEED(c->ecr_dim >= 0 && c->ecr_dim <= 65536, "ecr_dim %d out of range [0, 65536]", c->ecr_dim);
    /* each range above is sane alone, not all of them at once: the parameter count, in
     * double (no overflow), against 2^32 (16 GiB of fp32 weights, thrice that to train) */
    double d = c->dim, per_layer = 2 * d + 4 * d * d + 3 * d * c->hidden_dim;
    double total = c->n_layers * per_layer + (c->tied ? 1 : 2) * (double)c->vocab_size * d + d + (double)c->ecr_dim * d;
    NEED(total <= 4294967296.0, "%.3g parameters (dim %d, %d layers, hidden_dim %d, vocab_size %d), more than "
         "the 2^32 ecr supports", total, c->dim, c->n_layers, c->hidden_dim, c->vocab_size);
#undef NEED
    return ECR_OK;
}

/* ==== the model object ======================================================================= */

typedef struct layer_w {
    float *ln1, *wqkv, *wo, *ln2, *wgu, *wdown;
} layer_w;

/* Activations of the last forward and the backward's workspace, for up to cap_n rows. */
typedef struct acts {
    size_t cap_n;
    float *x;        /* [L+1, N, d] layer inputs; x[L] = input of the final norm */
    float *xmid;     /* [L, N, d]   after attention                               */
    float *ln1, *ln2;/* [L, N, d]   norm outputs                                  */
    float *qkv;      /* [L, N, 3d]  projections, q and k rotated                  */
    float *att;      /* [L, N, d]   attention output (before o_proj)              */
    float *gu;       /* [L, N, 2h]  gate | up                                     */
    float *act;      /* [L, N, h]   silu(gate) * up                               */
    float *rstd1, *rstd2; /* [L, N] */
    float *lse_att;  /* [L, N, H] */
    float *xf;       /* [N, d] final norm output */
    float *rstdf;    /* [N] */
    float *logits;   /* [N, V] */
    float *lse_ce, *row_loss; /* [N] */
    int32_t *rpos;   /* [N] position (= attention span) per slot; 0 for padding */
    float *dx, *datt;/* [N, d] backward workspace */
    float *dqkv;     /* [N, 3d] */
    float *att_scratch; /* [N, H] */
    float *rms_scratch; /* [ECR_NCHUNK, d] */
    size_t ln_stride, act_stride; /* layer strides of ln1/ln2 and act: N*d, N*h; 0 in bf16 */
    /* bf16 only (NULL in fp32): rounded inputs of the products, and a product's output
     * gradient rounded for its backward */
    uint16_t *ln1b, *ln2b, *attb; /* [L, N, d] */
    uint16_t *actb;               /* [L, N, h] */
    uint16_t *xfb;                /* [N, d]    */
    uint16_t *dyb;                /* [dyb_len]: N rows of a layer's output gradient (N x 3d,
                                     N x 2h), or a block of rows of the head's (N x V) */
    size_t dyb_len;
} acts;

struct ecr_model {
    ecr_config cfg;
    int d, L, H, hd, h, V;
    size_t n_params;
    float *params, *grads;
    ecr_precision prec;            /* ECR_PRECISION_FP32 or _BF16 */
    uint16_t *wb;                  /* bf16: params rounded [n_params]; NULL in fp32 */
    int wb_fresh;                  /* wb matches params (cleared by ecr_model_params) */
    size_t n_tensors;
    ecr_param_info *tensors;
    char (*names)[80];
    layer_w *lw, *lg;              /* [L] views into params / grads */
    float *embed, *norm_f, *lm_head, *proj;
    float *g_embed, *g_norm_f, *g_lm_head, *g_proj;
    float *rope_cos, *rope_sin;    /* [max_seq_len, hd/2] */
    acts a;
    /* per-text outputs of the last forward */
    int cap_texts;
    float *pooled, *inv_count, *text_loss;
    int mid_layer;                 /* > 0: also pool the output of this block (1..L-1)   */
    float *pooled_mid;             /* [cap_texts, d] that pooling, when mid_layer > 0      */
    /* state of the last forward */
    int fw_ready;                  /* activations valid for one backward */
    int fw_B, fw_T, fw_texts;
    int64_t fw_targets;
};

const ecr_config *ecr_model_config(const ecr_model *m) { return &m->cfg; }
size_t ecr_model_num_params(const ecr_model *m) { return m->n_params; }
float *ecr_model_params(ecr_model *m) {
    m->wb_fresh = 0; /* the caller may write through it: round again before the next product */
    return m->params;
}
const float *ecr_model_params_ro(const ecr_model *m) { return m->params; }
float *ecr_model_grads(ecr_model *m) { return m->grads; }
size_t ecr_model_num_tensors(const ecr_model *m) { return m->n_tensors; }
const ecr_param_info *ecr_model_tensor(const ecr_model *m, size_t i) {
    return i < m->n_tensors ? &m->tensors[i] : NULL;
}
void ecr_model_zero_grad(ecr_model *m) { memset(m->grads, 0, m->n_params * sizeof(float)); }

const ecr_param_info *ecr_model_find_tensor(const ecr_model *m, const char *name) {
    for (size_t i = 0; i < m->n_tensors; i++)
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    return NULL;
}

/* 64-byte aligned floats; blocks of 4 MiB and more are aligned to 2 MiB and marked for
 * transparent huge pages (Linux's default "madvise" mode gives them only on request):
 * decoding streams every weight once per token, and with 4 KiB pages a `base` step walks
 * 13,000 page-table entries. */
static void *falloc(size_t n_floats) {
    size_t bytes = (n_floats * sizeof(float) + 63) / 64 * 64;
#ifdef MADV_HUGEPAGE
    const size_t huge = (size_t)2 << 20;
    if (bytes >= 2 * huge) {
        bytes = (bytes + huge - 1) / huge * huge;
        void *p = aligned_alloc(huge, bytes);
        if (p) madvise(p, bytes, MADV_HUGEPAGE); /* advice: a refusal changes nothing */
        return p;
    }
#endif
    return aligned_alloc(64, bytes ? bytes : 64);
}

static void acts_free(acts *a) {
    float **fl[] = {&a->x, &a->xmid, &a->ln1, &a->ln2, &a->qkv, &a->att, &a->gu, &a->act,
                    &a->rstd1, &a->rstd2, &a->lse_att, &a->xf, &a->rstdf, &a->logits,
                    &a->lse_ce, &a->row_loss, &a->dx, &a->datt, &a->dqkv, &a->att_scratch,
                    &a->rms_scratch};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++) {
        free(*fl[i]);
        *fl[i] = NULL;
    }
    uint16_t **hl[] = {&a->ln1b, &a->ln2b, &a->attb, &a->actb, &a->xfb, &a->dyb};
    for (size_t i = 0; i < sizeof hl / sizeof hl[0]; i++) {
        free(*hl[i]);
        *hl[i] = NULL;
    }
    free(a->rpos);
    a->rpos = NULL;
    a->cap_n = 0;
}

/* Makes room for n rows (reallocating only when the batch is larger than any before). */
static ecr_status acts_reserve(ecr_model *m, size_t n) {
    acts *a = &m->a;
    if (n <= a->cap_n) return ECR_OK;
    acts_free(a);
    size_t L = (size_t)m->L, d = (size_t)m->d, h = (size_t)m->h, H = (size_t)m->H;
    int bf16 = m->prec == ECR_PRECISION_BF16;
    size_t Ln = bf16 ? 1 : L; /* layers of ln1, ln2 and act kept in fp32 */
    a->x = falloc((L + 1) * n * d);
    a->xmid = falloc(L * n * d);
    a->ln1 = falloc(Ln * n * d);
    a->ln2 = falloc(Ln * n * d);
    a->qkv = falloc(L * n * 3 * d);
    a->att = falloc(L * n * d);
    a->gu = falloc(L * n * 2 * h);
    a->act = falloc(Ln * n * h);
    a->ln_stride = bf16 ? 0 : n * d;
    a->act_stride = bf16 ? 0 : n * h;
    int bf_ok = 1;
    if (bf16) {
        size_t wide = 3 * d > 2 * h ? 3 * d : 2 * h;
        a->dyb_len = n * wide;
        a->ln1b = malloc(L * n * d * sizeof(uint16_t));
        a->ln2b = malloc(L * n * d * sizeof(uint16_t));
        a->attb = malloc(L * n * d * sizeof(uint16_t));
        a->actb = malloc(L * n * h * sizeof(uint16_t));
        a->xfb = malloc(n * d * sizeof(uint16_t));
        a->dyb = malloc(a->dyb_len * sizeof(uint16_t));
        bf_ok = a->ln1b && a->ln2b && a->attb && a->actb && a->xfb && a->dyb;
    }
    a->rstd1 = falloc(L * n);
    a->rstd2 = falloc(L * n);
    a->lse_att = falloc(L * n * H);
    a->xf = falloc(n * d);
    a->rstdf = falloc(n);
    a->logits = falloc(n * (size_t)m->V);
    a->lse_ce = falloc(n);
    a->row_loss = falloc(n);
    a->dx = falloc(n * d);
    a->datt = falloc(n * d);
    a->dqkv = falloc(n * 3 * d);
    a->att_scratch = falloc(n * H);
    a->rms_scratch = falloc((size_t)ECR_NCHUNK * d);
    a->rpos = malloc(n * sizeof(int32_t));
    if (!a->x || !a->xmid || !a->ln1 || !a->ln2 || !a->qkv || !a->att || !a->gu || !a->act ||
        !a->rstd1 || !a->rstd2 || !a->lse_att || !a->xf || !a->rstdf || !a->logits ||
        !a->lse_ce || !a->row_loss || !a->dx || !a->datt || !a->dqkv || !a->att_scratch ||
        !a->rms_scratch || !a->rpos || !bf_ok) {
        acts_free(a);
        return ecr_fail(ECR_E_NOMEM, "model: out of memory for activations of %zu slots", n);
    }
    a->cap_n = n;
    return ECR_OK;
}

static ecr_status texts_reserve(ecr_model *m, int n) {
    if (n <= m->cap_texts) return ECR_OK;
    int cap = n < 64 ? 64 : n;
    free(m->pooled);
    free(m->inv_count);
    free(m->text_loss);
    free(m->pooled_mid);
    m->pooled = falloc((size_t)cap * m->d);
    m->inv_count = falloc((size_t)cap);
    m->text_loss = falloc((size_t)cap);
    m->pooled_mid = falloc((size_t)cap * m->d);
    m->cap_texts = 0;
    if (!m->pooled || !m->inv_count || !m->text_loss || !m->pooled_mid)
        return ecr_fail(ECR_E_NOMEM, "model: out of memory for %d texts", n);
    m->cap_texts = cap;
    return ECR_OK;
}

void ecr_model_free(ecr_model *m) {
    if (!m) return;
    acts_free(&m->a);
    free(m->params);
    free(m->grads);
    free(m->wb);
    free(m->tensors);
    free(m->names);
    free(m->lw);
    free(m->lg);
    free(m->rope_cos);
    free(m->rope_sin);
    free(m->pooled);
    free(m->inv_count);
    free(m->text_loss);
    free(m->pooled_mid);
    free(m);
}

ecr_status ecr_model_set_mid_layer(ecr_model *m, int layer) {
    if (layer < 0 || layer >= m->L)
        return ecr_fail(ECR_E_INVALID, "model: intermediate layer %d is outside 1..%d (the model has %d layers)",
                        layer, m->L - 1, m->L);
    m->mid_layer = layer;
    m->fw_ready = 0;
    return ECR_OK;
}

const float *ecr_model_pooled_mid(const ecr_model *m) { return m->mid_layer > 0 ? m->pooled_mid : NULL; }

/* Appends a tensor to the table at the running offset. */
static void table_add(ecr_model *m, size_t *off, int decay, int ndim, int64_t s0, int64_t s1,
                      const char *fmt, int layer) {
    size_t i = m->n_tensors++;
    ecr_param_info *t = &m->tensors[i];
    snprintf(m->names[i], sizeof m->names[i], fmt, layer);
    t->name = m->names[i];
    t->offset = *off;
    t->ndim = ndim;
    t->shape[0] = s0;
    t->shape[1] = ndim == 2 ? s1 : 0;
    t->numel = (size_t)s0 * (ndim == 2 ? (size_t)s1 : 1);
    t->decay = decay;
    *off += t->numel;
}

/* Builds the tensor table and the layer views; allocates parameters (uninitialised) and
 * zeroed gradients. */
ecr_status ecr_model_alloc(const ecr_config *cfg, ecr_model **out) {
    *out = NULL;
    ecr_status st = ecr_config_validate(cfg);
    if (st != ECR_OK) return st;
    ecr_model *m = calloc(1, sizeof *m);
    if (!m) return ecr_fail(ECR_E_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    m->prec = ECR_PRECISION_FP32;
    m->d = cfg->dim, m->L = cfg->n_layers, m->H = cfg->n_heads;
    m->hd = cfg->dim / cfg->n_heads, m->h = cfg->hidden_dim, m->V = cfg->vocab_size;
    size_t max_t = 1 + 9 * (size_t)m->L + 1 + 1 + 1;
    m->tensors = calloc(max_t, sizeof *m->tensors);
    m->names = calloc(max_t, sizeof *m->names);
    m->lw = calloc((size_t)m->L, sizeof *m->lw);
    m->lg = calloc((size_t)m->L, sizeof *m->lg);
    if (!m->tensors || !m->names || !m->lw || !m->lg) goto nomem;
    size_t off = 0;
    int64_t d = m->d, h = m->h, V = m->V;
    table_add(m, &off, 0, 2, V, d, "model.embed_tokens.weight", 0);
    for (int l = 0; l < m->L; l++) {
        table_add(m, &off, 0, 1, d, 0, "model.layers.%d.input_layernorm.weight", l);
        table_add(m, &off, 1, 2, d, d, "model.layers.%d.self_attn.q_proj.weight", l);
        table_add(m, &off, 1, 2, d, d, "model.layers.%d.self_attn.k_proj.weight", l);
        table_add(m, &off, 1, 2, d, d, "model.layers.%d.self_attn.v_proj.weight", l);
        table_add(m, &off, 1, 2, d, d, "model.layers.%d.self_attn.o_proj.weight", l);
        table_add(m, &off, 0, 1, d, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        table_add(m, &off, 1, 2, h, d, "model.layers.%d.mlp.gate_proj.weight", l);
        table_add(m, &off, 1, 2, h, d, "model.layers.%d.mlp.up_proj.weight", l);
        table_add(m, &off, 1, 2, d, h, "model.layers.%d.mlp.down_proj.weight", l);
    }
    table_add(m, &off, 0, 1, d, 0, "model.norm.weight", 0);
    if (!cfg->tied) table_add(m, &off, 1, 2, V, d, "lm_head.weight", 0);
    if (cfg->ecr_dim > 0) table_add(m, &off, 1, 2, cfg->ecr_dim, d, "ecr.proj.weight", 0);
    m->n_params = off;
    m->params = falloc(off);
    m->grads = falloc(off);
    size_t half = (size_t)m->hd / 2;
    m->rope_cos = falloc((size_t)cfg->max_seq_len * half);
    m->rope_sin = falloc((size_t)cfg->max_seq_len * half);
    if (!m->params || !m->grads || !m->rope_cos || !m->rope_sin) goto nomem;
    memset(m->grads, 0, off * sizeof(float));
    ecr_rope_tables(m->rope_cos, m->rope_sin, cfg->max_seq_len, m->hd, cfg->rope_theta);

    /* views */
    float *P = m->params, *G = m->grads;
    size_t ti = 0;
    m->embed = P + m->tensors[ti].offset, m->g_embed = G + m->tensors[ti].offset;
    ti++;
    for (int l = 0; l < m->L; l++, ti += 9) {
        const ecr_param_info *t = &m->tensors[ti];
        m->lw[l] = (layer_w){P + t[0].offset, P + t[1].offset, P + t[4].offset, P + t[5].offset,
                             P + t[6].offset, P + t[8].offset};
        m->lg[l] = (layer_w){G + t[0].offset, G + t[1].offset, G + t[4].offset, G + t[5].offset,
                             G + t[6].offset, G + t[8].offset};
    }
    m->norm_f = P + m->tensors[ti].offset, m->g_norm_f = G + m->tensors[ti].offset;
    ti++;
    if (cfg->tied) {
        m->lm_head = m->embed, m->g_lm_head = m->g_embed;
    } else {
        m->lm_head = P + m->tensors[ti].offset, m->g_lm_head = G + m->tensors[ti].offset;
        ti++;
    }
    if (cfg->ecr_dim > 0) m->proj = P + m->tensors[ti].offset, m->g_proj = G + m->tensors[ti].offset;
    *out = m;
    return ECR_OK;
nomem:
    ecr_model_free(m);
    return ecr_fail(ECR_E_NOMEM, "model: out of memory");
}

/* FNV-1a of a string: each tensor gets its own random stream, so adding or removing a
 * tensor (lm_head, ecr.proj) leaves the others' initial values unchanged. */
static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

ecr_status ecr_model_create(const ecr_config *cfg, uint64_t seed, ecr_model **out) {
    ecr_status st = ecr_model_alloc(cfg, out);
    if (st != ECR_OK) return st;
    ecr_model *m = *out;
    double out_scale = 0.02 / sqrt(2.0 * m->L);
    for (size_t i = 0; i < m->n_tensors; i++) {
        const ecr_param_info *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (t->ndim == 1) { /* RMSNorm weights */
            for (size_t j = 0; j < t->numel; j++) p[j] = 1.0f;
            continue;
        }
        double sd = 0.02;
        if (strstr(t->name, "o_proj") || strstr(t->name, "down_proj")) sd = out_scale;
        if (!strcmp(t->name, "ecr.proj.weight")) sd = 1.0 / sqrt((double)m->d);
        uint64_t s = seed ^ ECR_SEED_INIT;
        uint64_t mixed = ecr_splitmix64(&s) ^ name_hash(t->name);
        ecr_rng r;
        ecr_rng_seed(&r, mixed);
        for (size_t j = 0; j < t->numel; j++) p[j] = (float)(ecr_rng_normal(&r) * sd);
    }
    return ECR_OK;
}

/* ==== precision ============================================================================== */

ecr_precision ecr_model_precision(const ecr_model *m) { return m->prec; }

/* Rounds the parameters to bf16 unless the copy is current (bf16 only). */
static void refresh_wb(ecr_model *m) {
    if (m->prec != ECR_PRECISION_BF16 || m->wb_fresh) return;
    ecr_bf16_from_f32(m->wb, m->params, m->n_params);
    m->wb_fresh = 1;
}

ecr_status ecr_model_set_precision(ecr_model *m, ecr_precision p) {
    ecr_precision r;
    ecr_status st = ecr_precision_resolve(p, &r);
    if (st) return st;
    if (r == m->prec) return ECR_OK;
    acts_free(&m->a); /* the activation layout differs between precisions */
    m->fw_ready = 0;
    free(m->wb);
    m->wb = NULL;
    m->wb_fresh = 0;
    if (r == ECR_PRECISION_BF16 && !(m->wb = falloc((m->n_params + 1) / 2)) /* n_params bf16 values, huge pages like params */) {
        m->prec = ECR_PRECISION_FP32;
        return ecr_fail(ECR_E_NOMEM, "model: out of memory for a bf16 copy of %zu parameters", m->n_params);
    }
    m->prec = r;
    refresh_wb(m);
    return ECR_OK;
}

/* y = x @ w^T + beta y in the model's precision; w points into m->params. In bf16, x is
 * rounded into xb first (kept for the backward). */
static ecr_status lin_forward(ecr_model *m, float *y, const float *x, uint16_t *xb, const float *w,
                              int N, int in, int out, float beta) {
    if (m->prec != ECR_PRECISION_BF16) {
        ecr_linear_forward(y, x, w, N, in, out, beta);
        return ECR_OK;
    }
    ecr_bf16_from_f32(xb, x, (size_t)N * in);
    return ecr_linear_forward_bf16(y, xb, m->wb + (w - m->params), N, in, out, beta);
}

/* dw += dy^T x; dx = dy w, in the model's precision (x in fp32, xb its rounded copy from
 * lin_forward; dx may alias x, see ecr_linear_backward). In bf16, dy is rounded in blocks of
 * the rows that dyb holds: all N for the layers, about N max(3d, 2h) / V rows at a time for
 * the head, whose N x V gradient would otherwise need its own rounded copy. */
static ecr_status lin_backward(ecr_model *m, float *dx, float *dw, const float *dy, const float *x,
                               const uint16_t *xb, const float *w, int N, int in, int out) {
    if (m->prec != ECR_PRECISION_BF16) {
        ecr_linear_backward(dx, dw, dy, x, w, N, in, out, 0.0f);
        return ECR_OK;
    }
    size_t fit = m->a.dyb_len / (size_t)out;
    int rows = fit < 1 ? 1 : fit > (size_t)N ? N : (int)fit;
    const uint16_t *wb = m->wb + (w - m->params);
    ecr_status st = ECR_OK;
    for (int r0 = 0; r0 < N && !st; r0 += rows) {
        int n = N - r0 < rows ? N - r0 : rows;
        ecr_bf16_from_f32(m->a.dyb, dy + (size_t)r0 * out, (size_t)n * out);
        st = ecr_linear_backward_bf16(dx ? dx + (size_t)r0 * in : NULL, dw, m->a.dyb, xb + (size_t)r0 * in,
                                      wb, n, in, out, 0.0f);
    }
    return st;
}

/* Layer l's slice of a bf16 buffer of `width` columns (NULL in fp32). */
static uint16_t *bslice(uint16_t *base, int l, int N, int width) {
    return base ? base + (size_t)l * N * width : NULL;
}

/* ==== forward / backward ===================================================================== */

/* Checks a batch against the model; fills rpos (position, 0 for padding), which must
 * have room for B*T slots. */
static ecr_status check_batch(ecr_model *m, const ecr_batch *b) {
    if (!b || b->B < 1 || b->T < 1 || !b->tokens || !b->targets || !b->pos || !b->text)
        return ecr_fail(ECR_E_INVALID, "batch: missing arrays or B, T < 1");
    if (b->T > m->cfg.max_seq_len)
        return ecr_fail(ECR_E_INVALID, "batch: T = %d exceeds max_seq_len %d", b->T, m->cfg.max_seq_len);
    if (b->n_texts < 0) return ecr_fail(ECR_E_INVALID, "batch: n_texts %d < 0", b->n_texts);
    int32_t *rp = m->a.rpos;
    for (int r = 0; r < b->B; r++) {
        for (int i = 0; i < b->T; i++) {
            size_t t = (size_t)r * b->T + i;
            int32_t tok = b->tokens[t], tg = b->targets[t], tx = b->text[t], p = b->pos[t];
            if (tok < 0 || tok >= m->V)
                return ecr_fail(ECR_E_INVALID, "batch: row %d slot %d: token %d outside [0, %d)", r, i, tok, m->V);
            if (tg < -1 || tg >= m->V)
                return ecr_fail(ECR_E_INVALID, "batch: row %d slot %d: target %d outside [-1, %d)", r, i, tg, m->V);
            if (tx < -1 || tx >= b->n_texts)
                return ecr_fail(ECR_E_INVALID, "batch: row %d slot %d: text %d outside [-1, %d)", r, i, tx, b->n_texts);
            if (tx < 0) {
                rp[t] = 0;
                continue;
            }
            int ok = p == 0 || (i > 0 && b->text[t - 1] == tx && b->pos[t - 1] == p - 1);
            if (!ok || p < 0)
                return ecr_fail(ECR_E_INVALID,
                                "batch: row %d slot %d: position %d does not continue text %d", r, i, p, tx);
            rp[t] = p;
        }
    }
    return ECR_OK;
}

/* Validates the batch and runs embeddings, blocks and the final norm; pools. */
static ecr_status forward_trunk(ecr_model *m, const ecr_batch *b) {
    m->fw_ready = 0;
    if (!b || b->B < 1 || b->T < 1 || (int64_t)b->B * b->T > (1 << 28))
        return ecr_fail(ECR_E_INVALID, "batch: B, T out of range");
    ecr_status st = acts_reserve(m, (size_t)b->B * b->T);
    if (st == ECR_OK) st = check_batch(m, b);
    if (st == ECR_OK) st = texts_reserve(m, b->n_texts);
    if (st != ECR_OK) return st;
    acts *a = &m->a;
    int N = b->B * b->T, d = m->d, h = m->h, H = m->H, hd = m->hd;
    size_t Nd = (size_t)N * d;
    refresh_wb(m);

    ecr_embedding_forward(a->x, b->tokens, m->embed, N, d);
    for (int l = 0; l < m->L && !st; l++) {
        const layer_w *w = &m->lw[l];
        float *x = a->x + l * Nd, *xmid = a->xmid + l * Nd, *xnext = a->x + (l + 1) * Nd;
        float *ln1 = a->ln1 + l * a->ln_stride, *ln2 = a->ln2 + l * a->ln_stride;
        float *att = a->att + l * Nd, *qkv = a->qkv + l * 3 * Nd;
        float *gu = a->gu + (size_t)l * N * 2 * h, *act = a->act + l * a->act_stride;
        /* attention block */
        ecr_rmsnorm_forward(ln1, a->rstd1 + (size_t)l * N, x, w->ln1, N, d, m->cfg.norm_eps);
        st = lin_forward(m, qkv, ln1, bslice(a->ln1b, l, N, d), w->wqkv, N, d, 3 * d, 0.0f); /* [N, 3d] */
        if (st) break;
        ecr_rope_forward(qkv, N, 3 * d, 2 * H, hd, a->rpos, m->rope_cos, m->rope_sin);
        ecr_attention_forward(att, a->lse_att + (size_t)l * N * H, qkv, a->rpos, b->B, b->T, H,
                              hd, a->att_scratch);
        memcpy(xmid, x, Nd * sizeof(float));
        st = lin_forward(m, xmid, att, bslice(a->attb, l, N, d), w->wo, N, d, d, 1.0f); /* residual */
        if (st) break;
        /* MLP block */
        ecr_rmsnorm_forward(ln2, a->rstd2 + (size_t)l * N, xmid, w->ln2, N, d, m->cfg.norm_eps);
        st = lin_forward(m, gu, ln2, bslice(a->ln2b, l, N, d), w->wgu, N, d, 2 * h, 0.0f); /* [N, 2h] */
        if (st) break;
        ecr_swiglu_forward(act, gu, N, h);
        memcpy(xnext, xmid, Nd * sizeof(float));
        st = lin_forward(m, xnext, act, bslice(a->actb, l, N, h), w->wdown, N, h, d, 1.0f); /* residual */
    }
    if (st) return st;
    ecr_rmsnorm_forward(a->xf, a->rstdf, a->x + (size_t)m->L * Nd, m->norm_f, N, d, m->cfg.norm_eps);
    if (m->mid_layer > 0) /* the residual stream after block mid_layer (same counts as below) */
        ecr_pool_forward(m->pooled_mid, m->inv_count, a->x + (size_t)m->mid_layer * Nd, b->text, b->pos, N, d,
                         b->n_texts);
    ecr_pool_forward(m->pooled, m->inv_count, a->xf, b->text, b->pos, N, d, b->n_texts);
    return ECR_OK;
}

ecr_status ecr_model_forward(ecr_model *m, const ecr_batch *b, ecr_forward_out *out) {
    ecr_status st = forward_trunk(m, b);
    if (st != ECR_OK) return st;
    acts *a = &m->a;
    int N = b->B * b->T, V = m->V;
    st = lin_forward(m, a->logits, a->xf, a->xfb, m->lm_head, N, m->d, V, 0.0f); /* [N, V] */
    if (st) return st;
    ecr_softmax_ce_forward(a->row_loss, a->lse_ce, a->logits, b->targets, N, V);

    double sum = 0;
    int64_t n_tg = 0;
    if (b->n_texts) memset(m->text_loss, 0, (size_t)b->n_texts * sizeof(float));
    for (int t = 0; t < N; t++) {
        if (b->targets[t] < 0) continue;
        sum += a->row_loss[t];
        n_tg++;
        if (b->text[t] >= 0) m->text_loss[b->text[t]] += a->row_loss[t];
    }
    m->fw_ready = 1;
    m->fw_B = b->B, m->fw_T = b->T, m->fw_texts = b->n_texts, m->fw_targets = n_tg;
    if (out) {
        out->loss = n_tg ? (float)(sum / (double)n_tg) : 0.0f;
        out->loss_sum = sum;
        out->n_targets = n_tg;
        out->text_loss = m->text_loss;
        out->pooled = m->pooled;
        out->logits = a->logits;
    }
    return ECR_OK;
}

ecr_status ecr_model_encode(ecr_model *m, const ecr_batch *b, const float **pooled) {
    ecr_status st = forward_trunk(m, b);
    if (st != ECR_OK) return st;
    if (pooled) *pooled = m->pooled;
    return ECR_OK;
}

ecr_status ecr_model_backward(ecr_model *m, const ecr_batch *b, float lm_scale,
                              const float *dpooled, const float *dlogits) {
    return ecr_model_backward_mid(m, b, lm_scale, dpooled, dlogits, 1.0f, NULL);
}

ecr_status ecr_model_backward_mid(ecr_model *m, const ecr_batch *b, float lm_scale, const float *dpooled,
                                  const float *dlogits, float dlogits_scale, const float *dpooled_mid) {
    if (!m->fw_ready || !b || b->B != m->fw_B || b->T != m->fw_T || b->n_texts != m->fw_texts)
        return ecr_fail(ECR_E_INVALID, "model: backward needs the forward of the same batch "
                                       "(and runs once per forward)");
    m->fw_ready = 0;
    acts *a = &m->a;
    int N = b->B * b->T, d = m->d, h = m->h, H = m->H, hd = m->hd, V = m->V;
    size_t Nd = (size_t)N * d;
    float *scr = a->rms_scratch;

    /* head: dlogits (in place over the logits), then through lm_head and the final norm */
    float scale = m->fw_targets ? lm_scale / (float)m->fw_targets : 0.0f;
    float *dxf = a->xf; /* xf is read by the lm_head weight gradient first, then overwritten */
    ecr_status st = ECR_OK;
    if (scale != 0.0f || dlogits) {
        ecr_softmax_ce_backward(a->logits, a->logits, a->lse_ce, b->targets, dlogits, dlogits_scale, scale, N, V);
        st = lin_backward(m, dxf, m->g_lm_head, a->logits, a->xf, a->xfb, m->lm_head, N, d, V);
        if (st) return st;
    } else { /* no gradient reaches the logits: skip the head */
        memset(dxf, 0, Nd * sizeof(float));
    }
    if (dpooled) ecr_pool_backward(dxf, dpooled, m->inv_count, b->text, b->pos, N, d);
    memset(a->dx, 0, Nd * sizeof(float));
    ecr_rmsnorm_backward(a->dx, m->g_norm_f, dxf, a->x + (size_t)m->L * Nd, a->rstdf, m->norm_f,
                         N, d, scr);

    for (int l = m->L - 1; l >= 0; l--) {
        const layer_w *w = &m->lw[l], *g = &m->lg[l];
        float *x = a->x + l * Nd, *xmid = a->xmid + l * Nd;
        if (dpooled_mid && m->mid_layer == l + 1) /* dx: the gradient of block l's output */
            ecr_pool_backward(a->dx, dpooled_mid, m->inv_count, b->text, b->pos, N, d);
        float *ln1 = a->ln1 + l * a->ln_stride, *ln2 = a->ln2 + l * a->ln_stride;
        float *att = a->att + l * Nd, *qkv = a->qkv + l * 3 * Nd;
        float *gu = a->gu + (size_t)l * N * 2 * h, *act = a->act + l * a->act_stride;
        /* MLP block: dx is the gradient of this layer's output */
        st = lin_backward(m, act, g->wdown, a->dx, act, bslice(a->actb, l, N, h), w->wdown, N, h, d);
        if (st) return st;                                                      /* act <- dact */
        ecr_swiglu_backward(gu, gu, act, N, h);                                 /* gu <- dgu */
        st = lin_backward(m, ln2, g->wgu, gu, ln2, bslice(a->ln2b, l, N, d), w->wgu, N, d, 2 * h);
        if (st) return st;                                                      /* ln2 <- dln2 */
        ecr_rmsnorm_backward(a->dx, g->ln2, ln2, xmid, a->rstd2 + (size_t)l * N, w->ln2, N, d, scr);
        /* attention block: dx is now the gradient of xmid */
        st = lin_backward(m, a->datt, g->wo, a->dx, att, bslice(a->attb, l, N, d), w->wo, N, d, d);
        if (st) return st;
        ecr_attention_backward(a->dqkv, a->datt, qkv, att, a->lse_att + (size_t)l * N * H,
                               a->rpos, b->B, b->T, H, hd, a->att_scratch);
        ecr_rope_backward(a->dqkv, N, 3 * d, 2 * H, hd, a->rpos, m->rope_cos, m->rope_sin);
        st = lin_backward(m, ln1, g->wqkv, a->dqkv, ln1, bslice(a->ln1b, l, N, d), w->wqkv, N, d, 3 * d);
        if (st) return st;                                                      /* ln1 <- dln1 */
        ecr_rmsnorm_backward(a->dx, g->ln1, ln1, x, a->rstd1 + (size_t)l * N, w->ln1, N, d, scr);
    }
    ecr_embedding_backward(m->g_embed, a->dx, b->tokens, N, d);
    return ECR_OK;
}

/* ==== KV-cache decoding ====================================================================== */

/* Rows a prefill call runs through the matrix-matrix path at once; longer inputs go in chunks
 * of this many (the cache's scratch is sized for one chunk). 64 rows make the products of the
 * presets compute-bound; more buys little and costs scratch. */
#define KV_CHUNK 64

struct ecr_kv_cache {
    ecr_config cfg;
    int max_len, n;
    int rows;                            /* KV_CHUNK, or max_len when that is smaller           */
    float *k, *v;                        /* [L, max_len, d] keys (rotated) and values          */
    /* scratch for `rows` positions at a time */
    float *x, *xb, *qkv, *att, *gu, *act; /* [rows, d], [rows, d], [rows, 3d], [rows, d], [rows, 2h], [rows, h] */
    float *rstd;                         /* [rows]                                              */
    float *scores;                       /* [rows, max_len] attention weights, one row per position */
    int32_t *pos;                        /* [rows] positions of the chunk                       */
    uint16_t *in16;                      /* [rows, max(d, h)] a product's input in bf16         */
};

void ecr_kv_cache_free(ecr_kv_cache *c) {
    if (!c) return;
    free(c->k);
    free(c->v);
    free(c->x);
    free(c->xb);
    free(c->qkv);
    free(c->att);
    free(c->gu);
    free(c->act);
    free(c->rstd);
    free(c->scores);
    free(c->pos);
    free(c->in16);
    free(c);
}

ecr_status ecr_kv_cache_create(const ecr_model *m, int max_len, ecr_kv_cache **out) {
    *out = NULL;
    if (max_len < 1 || max_len > m->cfg.max_seq_len)
        return ecr_fail(ECR_E_INVALID, "kv cache: max_len %d outside [1, max_seq_len %d]", max_len,
                        m->cfg.max_seq_len);
    ecr_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return ecr_fail(ECR_E_NOMEM, "kv cache: out of memory");
    c->cfg = m->cfg;
    c->max_len = max_len;
    c->rows = max_len < KV_CHUNK ? max_len : KV_CHUNK;
    size_t d = (size_t)m->d, h = (size_t)m->h, r = (size_t)c->rows, kv = (size_t)m->L * max_len * d;
    c->k = falloc(kv);
    c->v = falloc(kv);
    c->x = falloc(r * d);
    c->xb = falloc(r * d);
    c->qkv = falloc(r * 3 * d);
    c->att = falloc(r * d);
    c->gu = falloc(r * 2 * h);
    c->act = falloc(r * h);
    c->rstd = falloc(r);
    c->scores = falloc(r * (size_t)max_len);
    c->pos = malloc(r * sizeof *c->pos);
    c->in16 = malloc(r * (h > d ? h : d) * sizeof *c->in16);
    if (!c->k || !c->v || !c->x || !c->xb || !c->qkv || !c->att || !c->gu || !c->act || !c->rstd ||
        !c->scores || !c->pos || !c->in16) {
        ecr_kv_cache_free(c);
        return ecr_fail(ECR_E_NOMEM, "kv cache: out of memory");
    }
    *out = c;
    return ECR_OK;
}

void ecr_kv_cache_reset(ecr_kv_cache *c) {
    if (c) c->n = 0;
}

int ecr_kv_cache_len(const ecr_kv_cache *c) { return c ? c->n : 0; }

/* Feeds tokens[0..n) (n <= c->rows, positions c->n ...) through the layers, every product
 * over the n rows at once (one row: the matrix-vector path of ecr_linear_forward), appends
 * their keys and values to the cache and, when logits is non-NULL, writes the last row's
 * next-token logits [V]. The caller has checked the tokens and the room. */
static ecr_status kv_forward(ecr_model *m, ecr_kv_cache *c, const int32_t *tokens, int n, float *logits) {
    int d = m->d, h = m->h, H = m->H, hd = m->hd, p0 = c->n;
    float eps = m->cfg.norm_eps;
    ecr_status st = ECR_OK;
    refresh_wb(m);
    for (int i = 0; i < n; i++) c->pos[i] = p0 + i;
    ecr_embedding_forward(c->x, tokens, m->embed, n, d);                          /* [n, d] */
    for (int l = 0; l < m->L && !st; l++) {
        const layer_w *w = &m->lw[l];
        float *kc = c->k + (size_t)l * c->max_len * d, *vc = c->v + (size_t)l * c->max_len * d;
        ecr_rmsnorm_forward(c->xb, c->rstd, c->x, w->ln1, n, d, eps);
        if ((st = lin_forward(m, c->qkv, c->xb, c->in16, w->wqkv, n, d, 3 * d, 0.0f))) break; /* [n, 3d] */
        ecr_rope_forward(c->qkv, n, 3 * d, 2 * H, hd, c->pos, m->rope_cos, m->rope_sin);
        for (int i = 0; i < n; i++) {
            const float *r = c->qkv + (size_t)i * 3 * d;
            memcpy(kc + (size_t)(p0 + i) * d, r + d, (size_t)d * sizeof(float));
            memcpy(vc + (size_t)(p0 + i) * d, r + 2 * d, (size_t)d * sizeof(float));
        }
        /* row i attends to positions 0 .. p0 + i (causal; the chunk's own keys are in the cache) */
        ECR_OMP(parallel for schedule(dynamic, 1) if (n > 1))
        for (int i = 0; i < n; i++)
            ecr_attention_step(c->att + (size_t)i * d, c->qkv + (size_t)i * 3 * d, kc, vc, d, p0 + i + 1, H, hd,
                               c->scores + (size_t)i * c->max_len);
        if ((st = lin_forward(m, c->x, c->att, c->in16, w->wo, n, d, d, 1.0f))) break; /* x += att Wo */
        ecr_rmsnorm_forward(c->xb, c->rstd, c->x, w->ln2, n, d, eps);
        if ((st = lin_forward(m, c->gu, c->xb, c->in16, w->wgu, n, d, 2 * h, 0.0f))) break; /* [n, 2h] */
        ecr_swiglu_forward(c->act, c->gu, n, h);
        st = lin_forward(m, c->x, c->act, c->in16, w->wdown, n, h, d, 1.0f);          /* x += act Wdown */
    }
    if (st) return st;
    c->n += n;
    if (!logits) return ECR_OK;
    const float *last = c->x + (size_t)(n - 1) * d;
    ecr_rmsnorm_forward(c->xb, c->rstd, last, m->norm_f, 1, d, eps);
    return lin_forward(m, logits, c->xb, c->in16, m->lm_head, 1, d, m->V, 0.0f);     /* [V] */
}

/* Shared checks of ecr_model_step and ecr_model_prefill. */
static ecr_status kv_check(const ecr_model *m, const ecr_kv_cache *c, const int32_t *tokens, size_t n,
                           const char *who) {
    if (memcmp(&c->cfg, &m->cfg, sizeof c->cfg) != 0)
        return ecr_fail(ECR_E_INVALID, "kv cache: made for a model of another shape");
    if (n > (size_t)(c->max_len - c->n))
        return ecr_fail(ECR_E_INVALID, "kv cache: full (%d positions, %d used, %zu more asked)", c->max_len,
                        c->n, n);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->V)
            return ecr_fail(ECR_E_INVALID, "%s: token %zu is id %d, outside [0, %d)", who, i, tokens[i], m->V);
    return ECR_OK;
}

ecr_status ecr_model_step(ecr_model *m, ecr_kv_cache *c, int32_t token, float *logits) {
    ecr_status st = kv_check(m, c, &token, 1, "model step");
    return st ? st : kv_forward(m, c, &token, 1, logits);
}

ecr_status ecr_model_prefill(ecr_model *m, ecr_kv_cache *c, const int32_t *tokens, size_t n, float *logits) {
    if (n < 1) return ecr_fail(ECR_E_INVALID, "prefill: no tokens");
    ecr_status st = kv_check(m, c, tokens, n, "prefill");
    for (size_t i = 0; i < n && !st; i += (size_t)c->rows) {
        int k = n - i < (size_t)c->rows ? (int)(n - i) : c->rows;
        st = kv_forward(m, c, tokens + i, k, i + (size_t)k == n ? logits : NULL);
    }
    return st;
}
