/* test_gguf.c — the GGUF writer (layout read back byte by byte: header, typed keys, tensor
 * infos, 32-byte aligned offsets one after another, data), Q8_0 against hand-computed blocks,
 * the writer's refusals, and ecr_model_export_gguf on a small untied model with an ECR
 * projection: llama.*, tokenizer.ggml.* (tokens, types, "[PADi]" fillers, merges, specials),
 * tensor names and shapes, the Q8_0 fallback to F16, the projection file, and the q/k row
 * permutation: llama.cpp's rotation of adjacent pairs on the exported rows gives ecr's rotation
 * (ecr_rope_forward, pairs i and i + hd/2) of the model's rows. The real llama.cpp runs the
 * exported files in tests/cli_export.sh. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "testlib.h"
#include "ops.h"

#include <string.h>
#include <unistd.h>



/* ---- a GGUF reader, enough for the checks ---------------------------------------------- */

#define MAXK 64
#define MAXT 64

typedef struct gkey {
    char key[128];
    uint32_t type, elem;
    uint64_t n;
    const uint8_t *val;       /* the value's bytes (an array: its first element)           */
} gkey;

typedef struct gtensor {
    char name[64];
    uint32_t ndim, type;
    uint64_t ne[4], off;
} gtensor;

typedef struct gfile {
    uint8_t *buf;
    size_t len, data;         /* data: where the data region starts                        */
    uint32_t version;
    uint64_t n_t, n_k;
    gkey k[MAXK];
    gtensor t[MAXT];
} gfile;

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Bytes that one value of GGUF type `type` at p takes. */
static size_t val_size(uint32_t type, const uint8_t *p) {
    switch (type) {
    case 0: case 1: case 7: return 1;
    case 2: case 3: return 2;
    case 4: case 5: case 6: return 4;
    case 8: return 8 + (size_t)rd64(p);
    default: return 8;
    }
}

static int gguf_read(const char *path, gfile *g) {
    memset(g, 0, sizeof *g);
    if (ecr_read_file(path, (char **)&g->buf, &g->len) != ECR_OK) return 0;
    const uint8_t *p = g->buf;
    if (g->len < 24 || memcmp(p, "GGUF", 4)) return 0;
    g->version = rd32(p + 4);
    g->n_t = rd64(p + 8);
    g->n_k = rd64(p + 16);
    if (g->n_t > MAXT || g->n_k > MAXK) return 0;
    p += 24;
    for (uint64_t i = 0; i < g->n_k; i++) {
        gkey *k = &g->k[i];
        uint64_t kl = rd64(p);
        snprintf(k->key, sizeof k->key, "%.*s", (int)kl, (const char *)p + 8);
        p += 8 + kl;
        k->type = rd32(p);
        p += 4;
        if (k->type == 9) {
            k->elem = rd32(p);
            k->n = rd64(p + 4);
            p += 12;
            k->val = p;
            for (uint64_t j = 0; j < k->n; j++) p += val_size(k->elem, p);
        } else {
            k->val = p;
            p += val_size(k->type, p);
        }
    }
    for (uint64_t i = 0; i < g->n_t; i++) {
        gtensor *t = &g->t[i];
        uint64_t nl = rd64(p);
        snprintf(t->name, sizeof t->name, "%.*s", (int)nl, (const char *)p + 8);
        p += 8 + nl;
        t->ndim = rd32(p);
        p += 4;
        for (uint32_t d = 0; d < t->ndim; d++, p += 8) t->ne[d] = rd64(p);
        t->type = rd32(p);
        t->off = rd64(p + 4);
        p += 12;
    }
    g->data = (size_t)(p - g->buf);
    g->data += (32 - g->data % 32) % 32;
    return g->data <= g->len;
}

static const gkey *gk(const gfile *g, const char *key) {
    for (uint64_t i = 0; i < g->n_k; i++)
        if (!strcmp(g->k[i].key, key)) return &g->k[i];
    return NULL;
}
static const gtensor *gt(const gfile *g, const char *name) {
    for (uint64_t i = 0; i < g->n_t; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}
static uint32_t key_u32(const gfile *g, const char *key) {
    const gkey *k = gk(g, key);
    CHECK_MSG(k && k->type == 4, "key %s missing or not u32", key);
    return k && k->type == 4 ? rd32(k->val) : 0xFFFFFFFFu;
}
static int key_str_is(const gfile *g, const char *key, const char *want) {
    const gkey *k = gk(g, key);
    return k && k->type == 8 && rd64(k->val) == strlen(want) && !memcmp(k->val + 8, want, strlen(want));
}
/* Element j of a string array key, into out. */
static void key_arr_str(const gfile *g, const char *key, uint64_t j, char *out, size_t cap) {
    const gkey *k = gk(g, key);
    out[0] = 0;
    if (!k || k->type != 9 || k->elem != 8 || j >= k->n) return;
    const uint8_t *p = k->val;
    for (uint64_t i = 0; i < j; i++) p += 8 + rd64(p);
    snprintf(out, cap, "%.*s", (int)rd64(p), (const char *)p + 8);
}
static const void *tdata(const gfile *g, const gtensor *t) { return g->buf + g->data + t->off; }

/* ---- the writer ----------------------------------------------------------------------- */

static void test_writer(void) {
    ecr_gguf_writer *w = NULL;
    CHECK_OK(ecr_gguf_writer_create(&w));
    float a[6] = {1, 2, 3, 4, 5, 6}, q[64];
    uint16_t h[3];
    for (int i = 0; i < 64; i++) q[i] = (float)i / 8 - 4;
    for (int i = 0; i < 3; i++) h[i] = ecr_f32_to_f16(a[i]);
    uint8_t q8[68];
    ecr_gguf_quantize_q8_0(q, 64, q8);
    const char *strs[3] = {"a", "", "ccc"};
    int32_t ints[2] = {-5, 7};
    CHECK_OK(ecr_gguf_set_str(w, "general.architecture", "llama"));
    CHECK_OK(ecr_gguf_set_u32(w, "general.alignment", 32));
    CHECK_OK(ecr_gguf_set_f32(w, "x.f", 1.5f));
    CHECK_OK(ecr_gguf_set_bool(w, "x.b", 1));
    CHECK_OK(ecr_gguf_set_str_array(w, "x.s", strs, 3));
    CHECK_OK(ecr_gguf_set_i32_array(w, "x.i", ints, 2));
    CHECK_STATUS(ecr_gguf_set_u32(w, "x.f", 1), ECR_E_INVALID);           /* twice */
    CHECK_STATUS(ecr_gguf_set_u32(w, "general.alignment2", 1), ECR_OK);
    CHECK_STATUS(ecr_gguf_set_u32(w, "", 1), ECR_E_INVALID);
    ecr_gguf_writer *w2 = NULL;
    CHECK_OK(ecr_gguf_writer_create(&w2));
    CHECK_STATUS(ecr_gguf_set_u32(w2, "general.alignment", 64), ECR_E_INVALID);
    ecr_gguf_writer_free(w2);
    int64_t ne_a[2] = {3, 2}, ne_h[1] = {3}, ne_q[2] = {32, 2}, ne_bad[1] = {33};
    CHECK_OK(ecr_gguf_add_tensor(w, "a", ECR_GGUF_F32, 2, ne_a, a));
    CHECK_OK(ecr_gguf_add_tensor(w, "h", ECR_GGUF_F16, 1, ne_h, h));
    CHECK_OK(ecr_gguf_add_tensor(w, "q", ECR_GGUF_Q8_0, 2, ne_q, q8));
    CHECK_STATUS(ecr_gguf_add_tensor(w, "a", ECR_GGUF_F32, 2, ne_a, a), ECR_E_INVALID);
    CHECK_STATUS(ecr_gguf_add_tensor(w, "bad", ECR_GGUF_Q8_0, 1, ne_bad, q8), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "multiple of 32") != NULL);
    CHECK_STATUS(ecr_gguf_add_tensor(w, "bad", ECR_GGUF_F32, 5, ne_a, a), ECR_E_INVALID);
    CHECK_STATUS(ecr_gguf_add_tensor(w, "bad", (ecr_gguf_type)2, 1, ne_h, a), ECR_E_INVALID);
    CHECK_STATUS(ecr_gguf_add_tensor(w, "0123456789012345678901234567890123456789012345678901234567890123",
                                     ECR_GGUF_F32, 1, ne_h, a), ECR_E_INVALID);
    CHECK_OK(ecr_gguf_writer_write(w, tl_tmp_path("w.gguf")));
    CHECK_STATUS(ecr_gguf_writer_write(w, tl_tmp_path("no/such/w.gguf")), ECR_E_IO);
    CHECK(strstr(ecr_last_error(), "no/such/w.gguf") != NULL);
    ecr_gguf_writer_free(w);

    gfile g;
    CHECK(gguf_read(tl_tmp_path("w.gguf"), &g));
    CHECK(g.version == 3 && g.n_t == 3 && g.n_k == 7);
    CHECK(key_str_is(&g, "general.architecture", "llama"));
    CHECK(key_u32(&g, "general.alignment") == 32);
    const gkey *k = gk(&g, "x.f");
    float f = 0;
    if (k) memcpy(&f, k->val, 4);
    CHECK(k && k->type == 6 && f == 1.5f);
    k = gk(&g, "x.b");
    CHECK(k && k->type == 7 && k->val[0] == 1);
    char s[16];
    key_arr_str(&g, "x.s", 2, s, sizeof s);
    CHECK(!strcmp(s, "ccc"));
    key_arr_str(&g, "x.s", 1, s, sizeof s);
    CHECK(gk(&g, "x.s")->n == 3 && s[0] == 0);
    k = gk(&g, "x.i");
    CHECK(k && k->elem == 5 && k->n == 2 && (int32_t)rd32(k->val) == -5 && (int32_t)rd32(k->val + 4) == 7);
    const gtensor *ta = gt(&g, "a"), *th = gt(&g, "h"), *tq = gt(&g, "q");
    CHECK(ta && th && tq);
    if (ta && th && tq) {
        CHECK(ta->type == 0 && ta->ndim == 2 && ta->ne[0] == 3 && ta->ne[1] == 2 && ta->off == 0);
        CHECK(th->type == 1 && th->off == 32 && tq->type == 8 && tq->off == 64); /* 24 -> 32, 6 -> 32 */
        CHECK(g.data % 32 == 0 && g.len == g.data + 64 + 96);                  /* q: 68 -> 96 */
        CHECK(!memcmp(tdata(&g, ta), a, sizeof a) && !memcmp(tdata(&g, th), h, sizeof h));
        CHECK(!memcmp(tdata(&g, tq), q8, sizeof q8));
    }
    CHECK(access(tl_tmp_path("w.gguf.tmp"), F_OK) != 0);
    free(g.buf);
    remove(tl_tmp_path("w.gguf"));
}

static void test_q8_0(void) {
    float x[64], y[64];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);   /* amax 16: d = 16 / 127 */
    for (int j = 32; j < 64; j++) x[j] = 0;                 /* d = 0, q = 0 */
    uint8_t b[68];
    ecr_gguf_quantize_q8_0(x, 64, b);
    uint16_t d;
    memcpy(&d, b, 2);
    CHECK(d == ecr_f32_to_f16(16.0f / 127.0f));
    CHECK((int8_t)b[2] == -127 && (int8_t)b[2 + 16] == 0 && (int8_t)b[2 + 31] == 119); /* round(15 * 127/16) */
    CHECK((int8_t)b[2 + 8] == -64);                                                  /* round(-63.5): away from 0 */
    memcpy(&d, b + 34, 2);
    CHECK(d == 0 && b[36] == 0 && b[67] == 0);
    ecr_gguf_dequantize_q8_0(b, 64, y);
    double worst = 0;
    for (int j = 0; j < 32; j++) worst = fmax(worst, fabs(y[j] - x[j]));
    CHECK(worst <= 0.5 * 16.0 / 127.0 * 1.001 && y[40] == 0);
    CHECK(ecr_gguf_row_bytes(ECR_GGUF_Q8_0, 64) == 68 && ecr_gguf_row_bytes(ECR_GGUF_Q8_0, 48) == 0);
    CHECK(ecr_gguf_row_bytes(ECR_GGUF_BF16, 5) == 10 && ecr_gguf_row_bytes(ECR_GGUF_F32, 5) == 20);
    CHECK(!strcmp(ecr_gguf_type_name(ECR_GGUF_Q8_0), "Q8_0") && !strcmp(ecr_gguf_type_name((ecr_gguf_type)7), "?"));
}

static void test_projection_path(void) {
    char b[64];
    CHECK_OK(ecr_gguf_projection_path("dir/s.gguf", b, sizeof b));
    CHECK(!strcmp(b, "dir/s.ecr_proj.npy"));
    CHECK_OK(ecr_gguf_projection_path("model.bin", b, sizeof b));
    CHECK(!strcmp(b, "model.bin.ecr_proj.npy"));
    CHECK_STATUS(ecr_gguf_projection_path("a-rather-long-name.gguf", b, 16), ECR_E_INVALID);
}

/* ---- the model ------------------------------------------------------------------------ */

/* llama.cpp's rotary of the `llama` architecture (pairs 2i, 2i + 1) on x [nh * hd] at pos. */
static void rope_adjacent(float *x, int nh, int hd, int pos, float theta) {
    for (int h = 0; h < nh; h++)
        for (int i = 0; i < hd / 2; i++) {
            double a = pos * pow((double)theta, -2.0 * i / hd);
            float c = (float)cos(a), s = (float)sin(a), *v = x + h * hd + 2 * i, x0 = v[0], x1 = v[1];
            v[0] = x0 * c - x1 * s;
            v[1] = x0 * s + x1 * c;
        }
}

static void test_export(void) {
    static const char *texts[] = {"the cat sat on the mat", "the dog's toy", "a cat, a dog and a mat"};
    ecr_tokenizer_train_opts to;
    ecr_tokenizer_train_opts_default(&to);
    to.vocab_size = 300;
    to.min_frequency = 1;
    to.quiet = 1;
    ecr_tokenizer *tok = NULL;
    CHECK_OK(ecr_tokenizer_train(texts, 3, &to, &tok));
    if (!tok) return;
    int nt = ecr_tokenizer_vocab_size(tok);
    CHECK_OK(ecr_tokenizer_save(tok, tl_tmp_path("tok.json")));
    ecr_config c;
    ecr_config_preset("tiny", &c);
    c.vocab_size = nt + 3; /* three "[PADi]" fillers */
    c.dim = 64, c.n_heads = 2, c.n_layers = 1, c.hidden_dim = 100, c.tied = 0, c.ecr_dim = 8;
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 7, &m));
    if (!m) { ecr_tokenizer_free(tok); return; }
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tl_tmp_path("model"));
    CHECK_OK(ecr_model_save(m, dir, tl_tmp_path("tok.json"), NULL));

    ecr_gguf_export_opts o;
    ecr_gguf_export_opts_default(&o);
    o.quiet = 1;
    ecr_gguf_export_info info;
    CHECK_OK(ecr_model_export_gguf(dir, tl_tmp_path("m.gguf"), &o, &info));
    CHECK(info.n_tensors == 12 && info.n_fallback == 0 && info.projection == 1);
    CHECK(info.n_values == ecr_model_num_params(m) - 8 * 64);
    o.type = ECR_GGUF_Q8_0;
    o.name = "q8";
    CHECK_OK(ecr_model_export_gguf(dir, tl_tmp_path("q8.gguf"), &o, &info));
    CHECK(info.n_fallback == 1); /* ffn_down: rows of 100 */
    CHECK_STATUS(ecr_model_export_gguf(tl_tmp_path("nothing"), tl_tmp_path("x.gguf"), &o, NULL), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "no such model folder") != NULL);
    CHECK_STATUS(ecr_model_export_gguf(tl_scratch(NULL), tl_tmp_path("x.gguf"), &o, NULL), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "not a model folder (no config.json)") != NULL);
    CHECK(access(tl_tmp_path("x.gguf"), F_OK) != 0);

    /* The projection file: P [D, d] as in the model. */
    float *P = NULL;
    int64_t r = 0, cc = 0;
    CHECK_OK(ecr_npy_read(tl_tmp_path("m.ecr_proj.npy"), &P, &r, &cc));
    const ecr_param_info *pt = ecr_model_find_tensor(m, "ecr.proj.weight");
    CHECK(P && r == 8 && cc == 64 && !memcmp(P, ecr_model_params(m) + pt->offset, 8 * 64 * sizeof(float)));
    free(P);

    gfile g;
    CHECK(gguf_read(tl_tmp_path("m.gguf"), &g));
    CHECK(key_str_is(&g, "general.architecture", "llama") && key_str_is(&g, "general.name", "model"));
    CHECK(key_u32(&g, "general.file_type") == 0 && key_u32(&g, "llama.block_count") == 1);
    CHECK(key_u32(&g, "llama.embedding_length") == 64 && key_u32(&g, "llama.feed_forward_length") == 100);
    CHECK(key_u32(&g, "llama.attention.head_count") == 2 && key_u32(&g, "llama.attention.head_count_kv") == 2);
    CHECK(key_u32(&g, "llama.rope.dimension_count") == 32 && key_u32(&g, "llama.context_length") == 256);
    CHECK(key_u32(&g, "llama.vocab_size") == (uint32_t)c.vocab_size);
    CHECK(key_str_is(&g, "tokenizer.ggml.model", "gpt2") && key_str_is(&g, "tokenizer.ggml.pre", "gpt-2"));
    CHECK(key_u32(&g, "tokenizer.ggml.bos_token_id") == 0 && key_u32(&g, "tokenizer.ggml.eos_token_id") == 0);
    CHECK(key_u32(&g, "tokenizer.ggml.padding_token_id") == 1);
    const gkey *ab = gk(&g, "tokenizer.ggml.add_bos_token"), *tt = gk(&g, "tokenizer.ggml.token_type");
    CHECK(ab && ab->type == 7 && ab->val[0] == 1);
    CHECK(tt && tt->n == (uint64_t)c.vocab_size && (int32_t)rd32(tt->val) == 3 && (int32_t)rd32(tt->val + 4) == 3 &&
          (int32_t)rd32(tt->val + 8) == 1 && (int32_t)rd32(tt->val + 4 * (size_t)nt) == 5);
    char s[64], want[64];
    key_arr_str(&g, "tokenizer.ggml.tokens", 0, s, sizeof s);
    CHECK(!strcmp(s, "<|endoftext|>"));
    key_arr_str(&g, "tokenizer.ggml.tokens", (uint64_t)nt + 2, s, sizeof s);
    snprintf(want, sizeof want, "[PAD%d]", nt + 2);
    CHECK(!strcmp(s, want));
    key_arr_str(&g, "tokenizer.ggml.tokens", 2 + 't', s, sizeof s); /* byte tokens follow the specials */
    CHECK(!strcmp(s, ecr_tokenizer_token(tok, 2 + 't')));
    CHECK(gk(&g, "tokenizer.ggml.merges") && gk(&g, "tokenizer.ggml.merges")->n == (uint64_t)(nt - 258));
    key_arr_str(&g, "tokenizer.ggml.merges", 0, s, sizeof s);
    CHECK(strchr(s, ' ') != NULL);

    static const char *names[] = {"token_embd.weight", "blk.0.attn_norm.weight", "blk.0.attn_q.weight",
        "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_norm.weight",
        "blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight", "output_norm.weight",
        "output.weight"};
    CHECK(g.n_t == 12);
    for (size_t i = 0; i < 12; i++) CHECK_MSG(gt(&g, names[i]) != NULL, "tensor %s", names[i]);
    const gtensor *te = gt(&g, "token_embd.weight"), *tq = gt(&g, "blk.0.attn_q.weight"),
                  *tk = gt(&g, "blk.0.attn_k.weight"), *td = gt(&g, "blk.0.ffn_down.weight");
    if (te && tq && tk && td) {
        CHECK(te->ne[0] == 64 && te->ne[1] == (uint64_t)c.vocab_size && td->ne[0] == 100 && td->ne[1] == 64);
        const float *E = ecr_model_params(m) + ecr_model_find_tensor(m, "model.embed_tokens.weight")->offset;
        CHECK(!memcmp(tdata(&g, te), E, (size_t)c.vocab_size * 64 * sizeof(float)));
        /* q and k: llama.cpp's rotation of the exported rows = ecr's of the model's rows. */
        const char *src[2] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"};
        const gtensor *dst[2] = {tq, tk};
        float x[64], ye[64], yl[64], ct[64 * 16], st_[64 * 16];
        for (int i = 0; i < 64; i++) x[i] = (float)sin(0.37 * i + 1);
        ecr_rope_tables(ct, st_, 64, 32, c.rope_theta);
        for (int w = 0; w < 2; w++) {
            const float *W = ecr_model_params(m) + ecr_model_find_tensor(m, src[w])->offset;
            const float *Wg = tdata(&g, dst[w]);
            for (int pos = 0; pos < 64; pos += 21) {
                for (int o2 = 0; o2 < 64; o2++) {
                    double se = 0, sl = 0;
                    for (int i = 0; i < 64; i++) se += (double)W[o2 * 64 + i] * x[i], sl += (double)Wg[o2 * 64 + i] * x[i];
                    ye[o2] = (float)se;
                    yl[o2] = (float)sl;
                }
                int32_t p = pos;
                ecr_rope_forward(ye, 1, 64, 2, 32, &p, ct, st_);
                rope_adjacent(yl, 2, 32, pos, c.rope_theta);
                double worst = 0;
                for (int h = 0; h < 2; h++)
                    for (int i = 0; i < 16; i++) {
                        worst = fmax(worst, fabs(yl[h * 32 + 2 * i] - ye[h * 32 + i]));
                        worst = fmax(worst, fabs(yl[h * 32 + 2 * i + 1] - ye[h * 32 + i + 16]));
                    }
                CHECK_MSG(worst < 1e-5, "%s at position %d: %g", src[w], pos, worst);
            }
        }
    }
    free(g.buf);
    CHECK(gguf_read(tl_tmp_path("q8.gguf"), &g));
    CHECK(key_str_is(&g, "general.name", "q8") && key_u32(&g, "general.file_type") == 7);
    td = gt(&g, "blk.0.ffn_down.weight");
    const gtensor *tn = gt(&g, "output_norm.weight"), *tu = gt(&g, "blk.0.ffn_up.weight");
    CHECK(td && td->type == 1 && tn && tn->type == 0 && tu && tu->type == 8);
    free(g.buf);
    ecr_model_free(m);
    ecr_tokenizer_free(tok);
    static const char *files[] = {"model/config.json", "model/model.safetensors", "model/tokenizer.json", "m.gguf",
                                  "m.ecr_proj.npy", "q8.gguf", "q8.ecr_proj.npy", "tok.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) remove(tl_tmp_path(files[i]));
    rmdir(dir);
}

int main(void) {
    tl_scratch("gguf");
    RUN(test_writer);
    RUN(test_q8_0);
    RUN(test_projection_path);
    RUN(test_export);
    rmdir(tl_scratch(NULL));
    return test_finish("test_gguf");
}
