/* model_gguf.c — a model folder as a GGUF file of llama.cpp's `llama` architecture
 * (contract: ecr.h, ecr_model_export_gguf; the format itself is src/io/gguf.c).
 *
 * Tensors (ecr's [rows, cols] row-major matrices; GGUF lists dims fastest first, so a
 * matrix is ne = {cols, rows}):
 *   model.embed_tokens.weight [V, d]                 token_embd.weight         {d, V}
 *   model.layers.N.input_layernorm.weight [d]        blk.N.attn_norm.weight    F32
 *   model.layers.N.self_attn.q_proj.weight [d, d]    blk.N.attn_q.weight       rows permuted
 *   model.layers.N.self_attn.k_proj.weight [d, d]    blk.N.attn_k.weight       rows permuted
 *   model.layers.N.self_attn.v_proj.weight [d, d]    blk.N.attn_v.weight
 *   model.layers.N.self_attn.o_proj.weight [d, d]    blk.N.attn_output.weight
 *   model.layers.N.post_attention_layernorm [d]      blk.N.ffn_norm.weight     F32
 *   model.layers.N.mlp.gate_proj.weight [h, d]       blk.N.ffn_gate.weight     {d, h}
 *   model.layers.N.mlp.up_proj.weight [h, d]         blk.N.ffn_up.weight       {d, h}
 *   model.layers.N.mlp.down_proj.weight [d, h]       blk.N.ffn_down.weight     {h, d}
 *   model.norm.weight [d]                            output_norm.weight        F32
 *   lm_head.weight [V, d] (untied only)              output.weight             {d, V}
 *   ecr.proj.weight [D, d]                           not in the GGUF: FILE.ecr_proj.npy
 * Rotary pairs: ecr (as Hugging Face) rotates dims (i, i + hd/2) of each head by angle
 * pos * theta^(-2i/hd); llama.cpp's `llama` architecture rotates (2i, 2i + 1) by the same
 * angle. Moving row i of each head of q and k to 2i and row i + hd/2 to 2i + 1 (the
 * `permute` of llama.cpp's convert_hf_to_gguf.py) makes one rotation the other; q.k is
 * unchanged because both get the same permutation. */
#define _POSIX_C_SOURCE 200809L
#include "ecr.h"
#include "model_internal.h"
#include "tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void ecr_gguf_export_opts_default(ecr_gguf_export_opts *o) {
    memset(o, 0, sizeof *o);
    o->type = ECR_GGUF_F32;
}

ecr_status ecr_gguf_projection_path(const char *path, char *buf, size_t cap) {
    size_t n = strlen(path);
    if (n >= 5 && !strcmp(path + n - 5, ".gguf")) n -= 5;
    if ((size_t)snprintf(buf, cap, "%.*s.ecr_proj.npy", (int)n, path) >= cap)
        return ecr_fail(ECR_E_INVALID, "%s: path too long", path);
    return ECR_OK;
}

/* What one export owns until the file is written. */
typedef struct export_ctx {
    const char *dir;
    ecr_model *m;
    ecr_tokenizer *tok;
    ecr_gguf_writer *w;
    void **bufs;              /* converted tensor data, borrowed by the writer              */
    size_t n_bufs;
    const ecr_gguf_export_opts *o;
    ecr_gguf_export_info *info;
} export_ctx;

static ecr_status keep(export_ctx *x, void *p) {
    if (!p) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", x->dir);
    void **b = realloc(x->bufs, (x->n_bufs + 1) * sizeof *b);
    if (!b) {
        free(p);
        return ecr_fail(ECR_E_NOMEM, "%s: out of memory", x->dir);
    }
    x->bufs = b;
    x->bufs[x->n_bufs++] = p;
    return ECR_OK;
}

/* Adds model tensor `src` as GGUF tensor `name`: a vector stays F32; a matrix [rows, cols]
 * becomes ne = {cols, rows} in the export's type (Q8_0 needs cols % 32 == 0, else F16 with a
 * note), with its rows permuted within heads of `head_dim` rows when head_dim > 0. */
static ecr_status add(export_ctx *x, const char *name, const char *src, int head_dim) {
    const ecr_param_info *t = ecr_model_find_tensor(x->m, src);
    if (!t) return ecr_fail(ECR_E_INVALID, "%s: model has no tensor '%s'", x->dir, src);
    const float *p = ecr_model_params_ro(x->m) + t->offset;
    ecr_status st;
    if (t->ndim == 1) {
        int64_t ne[1] = {t->shape[0]};
        st = ecr_gguf_add_tensor(x->w, name, ECR_GGUF_F32, 1, ne, p);
    } else {
        int64_t rows = t->shape[0], cols = t->shape[1], ne[2] = {cols, rows};
        ecr_gguf_type type = x->o->type;
        if (type == ECR_GGUF_Q8_0 && cols % ECR_GGUF_Q8_0_BLOCK) {
            type = ECR_GGUF_F16;
            x->info->n_fallback++;
            if (!x->o->quiet)
                fprintf(stderr, "export: %s: rows of %lld values are not a whole number of Q8_0 blocks (32): "
                                "written as F16\n", name, (long long)cols);
        }
        if (head_dim > 0) { /* row h*hd + 2i + j <- row h*hd + j*hd/2 + i */
            float *q = malloc((size_t)t->numel * sizeof *q);
            if ((st = keep(x, q))) return st;
            int half = head_dim / 2;
            for (int64_t r = 0; r < rows; r++) {
                int64_t h = r / head_dim, k = r % head_dim, from = h * head_dim + (k % 2) * half + k / 2;
                memcpy(q + r * cols, p + from * cols, (size_t)cols * sizeof *q);
            }
            p = q;
        }
        const void *data = p;
        if (type != ECR_GGUF_F32) {
            size_t rb = ecr_gguf_row_bytes(type, cols);
            uint8_t *b = malloc(rb * (size_t)rows);
            if ((st = keep(x, b))) return st;
            if (type == ECR_GGUF_Q8_0) {
                for (int64_t r = 0; r < rows; r++) ecr_gguf_quantize_q8_0(p + r * cols, cols, b + (size_t)r * rb);
            } else {
                uint16_t *h = (uint16_t *)b;
                for (size_t i = 0; i < t->numel; i++)
                    h[i] = type == ECR_GGUF_F16 ? ecr_f32_to_f16(p[i]) : ecr_f32_to_bf16(p[i]);
            }
            data = b;
        }
        st = ecr_gguf_add_tensor(x->w, name, type, 2, ne, data);
    }
    if (!st) {
        x->info->n_tensors++;
        x->info->n_values += t->numel;
    }
    return st;
}

static ecr_status add_tensors(export_ctx *x) {
    const ecr_config *c = ecr_model_config(x->m);
    int hd = c->dim / c->n_heads;
    ecr_status st = add(x, "token_embd.weight", "model.embed_tokens.weight", 0);
    static const struct { const char *gguf, *hf; int perm; } blk[] = {
        {"attn_norm", "input_layernorm", 0},       {"attn_q", "self_attn.q_proj", 1},
        {"attn_k", "self_attn.k_proj", 1},         {"attn_v", "self_attn.v_proj", 0},
        {"attn_output", "self_attn.o_proj", 0},    {"ffn_norm", "post_attention_layernorm", 0},
        {"ffn_gate", "mlp.gate_proj", 0},          {"ffn_up", "mlp.up_proj", 0},
        {"ffn_down", "mlp.down_proj", 0},
    };
    for (int l = 0; !st && l < c->n_layers; l++)
        for (size_t i = 0; !st && i < sizeof blk / sizeof blk[0]; i++) {
            char g[64], h[96];
            snprintf(g, sizeof g, "blk.%d.%s.weight", l, blk[i].gguf);
            snprintf(h, sizeof h, "model.layers.%d.%s.weight", l, blk[i].hf);
            st = add(x, g, h, blk[i].perm ? hd : 0);
        }
    if (!st) st = add(x, "output_norm.weight", "model.norm.weight", 0);
    if (!st && !c->tied) st = add(x, "output.weight", "lm_head.weight", 0);
    return st;
}

/* bos/eos/pad ids from config.json (bos_token_id, eos_token_id, pad_token_id; absent or null:
 * the tokenizer's end-of-text, end-of-text and pad), each in [0, V). */
static ecr_status special_ids(export_ctx *x, int V, int ids[3]) {
    static const char *keys[3] = {"bos_token_id", "eos_token_id", "pad_token_id"};
    ids[0] = ids[1] = ecr_tokenizer_eot_id(x->tok);
    ids[2] = ecr_tokenizer_pad_id(x->tok);
    char *path = ecr_path_join(x->dir, "config.json"), *text = NULL;
    if (!path) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", x->dir);
    ecr_status st = ecr_read_file(path, &text, NULL);
    cJSON *o = st ? NULL : cJSON_Parse(text);
    if (!st && !o) st = ecr_fail(ECR_E_INVALID, "%s: not a JSON object", path);
    for (int k = 0; !st && k < 3; k++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
        if (!it || cJSON_IsNull(it)) continue;
        double v = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (v != floor(v) || v < 0 || v >= V)
            st = ecr_fail(ECR_E_INVALID, "%s: \"%s\" must be a token id in [0, %d)", path, keys[k], V);
        else
            ids[k] = (int)v;
    }
    cJSON_Delete(o);
    free(text);
    free(path);
    return st;
}

/* general.name: the model folder's last path component. */
static void folder_name(const char *dir, char *out, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t s = n;
    while (s > 0 && dir[s - 1] != '/') s--;
    snprintf(out, cap, "%.*s", (int)(n - s), dir + s);
    if (!out[0] || !strcmp(out, ".") || !strcmp(out, "..") || !strcmp(out, "/")) snprintf(out, cap, "ecr");
}

static ecr_status add_keys(export_ctx *x) {
    const ecr_config *c = ecr_model_config(x->m);
    const ecr_tokenizer *tok = x->tok;
    int V = c->vocab_size, nt = ecr_tokenizer_vocab_size(tok), ids[3];
    if (nt > V)
        return ecr_fail(ECR_E_INVALID, "%s/tokenizer.json: %d tokens, more than the model's vocabulary (%d)",
                        x->dir, nt, V);
    ecr_status st = special_ids(x, V, ids);
    if (st) return st;
    uint32_t ftype = x->o->type == ECR_GGUF_F32 ? 0 : x->o->type == ECR_GGUF_F16 ? 1
                   : x->o->type == ECR_GGUF_Q8_0 ? 7 : 32; /* llama_ftype */
    char name[256];
    if (x->o->name) snprintf(name, sizeof name, "%s", x->o->name);
    else folder_name(x->dir, name, sizeof name);
    ecr_gguf_writer *w = x->w;
    st = ecr_gguf_set_str(w, "general.architecture", "llama");
    if (!st) st = ecr_gguf_set_str(w, "general.name", name);
    if (!st) st = ecr_gguf_set_u32(w, "general.file_type", ftype);
    if (!st && x->o->type == ECR_GGUF_Q8_0) st = ecr_gguf_set_u32(w, "general.quantization_version", 2);
    if (!st) st = ecr_gguf_set_u32(w, "general.alignment", ECR_GGUF_ALIGNMENT);
    if (!st) st = ecr_gguf_set_u32(w, "llama.vocab_size", (uint32_t)V);
    if (!st) st = ecr_gguf_set_u32(w, "llama.context_length", (uint32_t)c->max_seq_len);
    if (!st) st = ecr_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    if (!st) st = ecr_gguf_set_u32(w, "llama.block_count", (uint32_t)c->n_layers);
    if (!st) st = ecr_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
    if (!st) st = ecr_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
    if (!st) st = ecr_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_heads);
    if (!st) st = ecr_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)(c->dim / c->n_heads));
    if (!st) st = ecr_gguf_set_f32(w, "llama.rope.freq_base", c->rope_theta);
    if (!st) st = ecr_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    if (!st) st = ecr_gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (!st) st = ecr_gguf_set_str(w, "tokenizer.ggml.pre", x->o->pre ? x->o->pre : "gpt-2");
    if (st) return st;
    /* Tokens: the tokenizer's strings (byte-to-unicode form, as in tokenizer.json), then
     * "[PADi]" fillers up to the model's vocabulary, as convert_hf_to_gguf.py writes them.
     * Types: 1 normal, 3 control (special), 5 unused (fillers). */
    const char **strs = calloc((size_t)V, sizeof *strs);
    int32_t *types = malloc((size_t)V * sizeof *types);
    char *fill = malloc((size_t)(V - nt) * 24 + 1);
    const char **merges = calloc((size_t)tok->n_merges + 1, sizeof *merges);
    char *mtext = NULL;
    size_t mlen = 0;
    for (int r = 0; r < tok->n_merges; r++)
        mlen += strlen(tok->str[tok->merge[3 * r]]) + strlen(tok->str[tok->merge[3 * r + 1]]) + 2;
    mtext = malloc(mlen + 1);
    if (!strs || !types || !fill || !merges || !mtext) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", x->dir);
    for (int i = 0; !st && i < V; i++) {
        if (i < nt) {
            strs[i] = ecr_tokenizer_token(tok, i);
            types[i] = tok->special[i] ? 3 : 1;
        } else {
            char *f = fill + (size_t)(i - nt) * 24;
            snprintf(f, 24, "[PAD%d]", i);
            strs[i] = f;
            types[i] = 5;
        }
    }
    char *mp = mtext;
    for (int r = 0; !st && r < tok->n_merges; r++) {
        merges[r] = mp;
        mp += sprintf(mp, "%s %s", tok->str[tok->merge[3 * r]], tok->str[tok->merge[3 * r + 1]]) + 1;
    }
    if (!st) st = ecr_gguf_set_str_array(w, "tokenizer.ggml.tokens", strs, (size_t)V);
    if (!st) st = ecr_gguf_set_i32_array(w, "tokenizer.ggml.token_type", types, (size_t)V);
    if (!st) st = ecr_gguf_set_str_array(w, "tokenizer.ggml.merges", merges, (size_t)tok->n_merges);
    if (!st) st = ecr_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)ids[0]);
    if (!st) st = ecr_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)ids[1]);
    if (!st) st = ecr_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)ids[2]);
    /* ecr feeds every text as [EOT, t1..tn]: the BOS (= EOT) is added, no EOS. */
    if (!st) st = ecr_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    if (!st) st = ecr_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", 0);
    free(strs);
    free(types);
    free(fill);
    free(merges);
    free(mtext);
    return st;
}

/* Refuses a path that is not a model folder with ECR_E_INVALID naming it. */
static ecr_status check_folder(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return errno == ENOENT ? ecr_fail(ECR_E_INVALID, "%s: no such model folder", dir)
                               : ecr_fail(ECR_E_IO, "%s: cannot open: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return ecr_fail(ECR_E_INVALID, "%s: not a model folder (a file)", dir);
    static const char *need[3] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        char *p = ecr_path_join(dir, need[i]);
        if (!p) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", dir);
        int there = ecr_file_exists(p);
        free(p);
        if (!there)
            return ecr_fail(ECR_E_INVALID, "%s: not a model folder (no %s)%s", dir, need[i],
                            i == 2 ? "; a GGUF file carries the tokenizer" : "");
    }
    return ECR_OK;
}

ecr_status ecr_model_export_gguf(const char *dir, const char *path, const ecr_gguf_export_opts *opts,
                                 ecr_gguf_export_info *info) {
    ecr_gguf_export_opts o;
    if (opts) o = *opts;
    else ecr_gguf_export_opts_default(&o);
    ecr_gguf_export_info inf_local;
    if (!info) info = &inf_local;
    memset(info, 0, sizeof *info);
    if (o.type != ECR_GGUF_F32 && o.type != ECR_GGUF_F16 && o.type != ECR_GGUF_BF16 && o.type != ECR_GGUF_Q8_0)
        return ecr_fail(ECR_E_INVALID, "%s: GGUF export: type %d is not F32, F16, BF16 or Q8_0", path, (int)o.type);
    if (o.pre && !o.pre[0]) return ecr_fail(ECR_E_INVALID, "%s: GGUF export: empty pre-tokenizer name", path);
    char proj[4096];
    ecr_status st = ecr_gguf_projection_path(path, proj, sizeof proj);
    if (!st) st = check_folder(dir);
    export_ctx x = {.dir = dir, .o = &o, .info = info};
    char *tok_path = st ? NULL : ecr_path_join(dir, "tokenizer.json");
    if (!st && !tok_path) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", dir);
    if (!st) st = ecr_model_load(dir, &x.m);
    if (!st) st = ecr_tokenizer_load(tok_path, &x.tok);
    if (!st) st = ecr_gguf_writer_create(&x.w);
    if (!st) st = add_keys(&x);
    if (!st) st = add_tensors(&x);
    const ecr_param_info *pt = st ? NULL : ecr_model_find_tensor(x.m, "ecr.proj.weight");
    if (pt) { /* u = P h / |P h| needs P [D, d]: beside the GGUF, which has no place for it */
        st = ecr_npy_write(proj, ecr_model_params_ro(x.m) + pt->offset, pt->shape[0], pt->shape[1]);
        if (!st) info->projection = 1;
    }
    if (!st) {
        st = ecr_gguf_writer_write(x.w, path);
        if (st && info->projection) { /* keep the pair whole: no projection without its model */
            remove(proj);
            info->projection = 0;
        }
    }
    for (size_t i = 0; i < x.n_bufs; i++) free(x.bufs[i]);
    free(x.bufs);
    free(tok_path);
    ecr_gguf_writer_free(x.w);
    ecr_tokenizer_free(x.tok);
    ecr_model_free(x.m);
    return st;
}
