/* test_model.c — the whole model.
 *
 *  - finite differences of L = lm_scale * loss + <dpooled, pooled> + <dlogits, logits> on a
 *    tiny config (V 64, d 16, 2 layers, 2 heads, B 2 x T 12, several texts per row, padding)
 *    for sampled elements of every tensor, tied and untied; |fd - an| <= 2e-4 + 2e-2 |an|
 *    (fp32 forward, loss summed in double, h = 1e-2 on weights of scale ~0.3);
 *  - the PyTorch reference (tests/fixtures/model_ref.safetensors, written by
 *    tools/torch_ref.py in float64): logits, loss, per-text loss, pooled h, and every
 *    parameter gradient, tied (loss + dpooled term) and untied (+ dlogits term);
 *    tolerances: values 1e-5 relative to the largest magnitude of each tensor, gradients
 *    2e-5 relative to the largest gradient of each tensor (measured ~2e-6); and the
 *    intermediate pooling of the "mid" term: the pooled residual stream after block 1 and
 *    the gradients of the tied objective + <dpooled_mid, pooled_mid> (same tolerances), a
 *    layer outside 1..L-1 refused, nothing pooled once it is turned off;
 *  - packing: a text's logits are the same alone or packed after other texts;
 *    padding slots are finite and do not change real slots;
 *  - KV-cache decoding gives the full forward's logits (1e-5 of the largest logit);
 *  - save -> load is bit-identical; F16/BF16 checkpoints load; bad checkpoints are refused
 *    with messages naming the file and tensor;
 *  - deterministic init and forward/backward (same seed, same thread count);
 *  - a tiny model overfits one batch. */
#include "test.h"
#include "testlib.h"
#include "model_internal.h"
#include "rng.h"

#include <cjson/cJSON.h>
#include <string.h>
#include <unistd.h>

#define FIXTURE "tests/fixtures/model_ref.safetensors"

/* ---- helpers ------------------------------------------------------------------------------- */

static ecr_config tiny_cfg(int tied, int ecr_dim) {
    ecr_config c;
    ecr_config_preset("tiny", &c);
    c.vocab_size = 64, c.dim = 16, c.n_layers = 2, c.n_heads = 2, c.hidden_dim = 32;
    c.max_seq_len = 16, c.tied = tied, c.ecr_dim = ecr_dim;
    return c;
}

/* ---- finite differences of the whole model ---------------------------------------------------- */

static ecr_model *fd_m;
static tl_batch fd_b;
static float *fd_dpooled, *fd_dlogits;
static const float FD_LM = 0.8f;

static double fd_loss(void) {
    ecr_forward_out o;
    ecr_status st = ecr_model_forward(fd_m, &fd_b.b, &o);
    if (st != ECR_OK) return NAN;
    int N = fd_b.b.B * fd_b.b.T, V = ecr_model_config(fd_m)->vocab_size;
    int d = ecr_model_config(fd_m)->dim;
    double L = FD_LM * o.loss_sum / (double)o.n_targets;
    for (int i = 0; i < fd_b.b.n_texts * d; i++) L += (double)fd_dpooled[i] * o.pooled[i];
    for (int i = 0; i < N * V; i++) L += (double)fd_dlogits[i] * o.logits[i];
    return L;
}

static void fd_model(int tied) {
    ecr_config c = tiny_cfg(tied, tied ? 0 : 4);
    CHECK_OK(ecr_model_create(&c, 7, &fd_m));
    if (!fd_m) return;
    tl_scramble(fd_m, 100);
    /* row 0: texts of 4, 3, 2 tokens (5+4+3 = 12 slots); row 1: 6 tokens + 5 padding */
    int lens[] = {4, 3, 2, -1, 6};
    tl_make_batch(&fd_b, 2, 12, lens, 5, c.vocab_size, 11);
    int N = 24, V = c.vocab_size, d = c.dim;
    fd_dpooled = malloc(sizeof(float) * (size_t)fd_b.b.n_texts * d);
    fd_dlogits = malloc(sizeof(float) * (size_t)N * V);
    tl_fill_normal(fd_dpooled, (size_t)fd_b.b.n_texts * d, 1.0, 5);
    tl_fill_normal(fd_dlogits, (size_t)N * V, 0.02, 6);
    ecr_forward_out o;
    CHECK_OK(ecr_model_forward(fd_m, &fd_b.b, &o));
    ecr_model_zero_grad(fd_m);
    CHECK_OK(ecr_model_backward(fd_m, &fd_b.b, FD_LM, fd_dpooled, fd_dlogits));
    /* a second backward without a forward is refused */
    CHECK_STATUS(ecr_model_backward(fd_m, &fd_b.b, FD_LM, NULL, NULL), ECR_E_INVALID);
    size_t P = ecr_model_num_params(fd_m);
    float *g = malloc(P * sizeof(float));
    memcpy(g, ecr_model_grads(fd_m), P * sizeof(float));
    float *p = ecr_model_params(fd_m);
    ecr_rng r;
    ecr_rng_seed(&r, 3);
    const float h = 1e-2f;
    double worst = 0;
    for (size_t ti = 0; ti < ecr_model_num_tensors(fd_m); ti++) {
        const ecr_param_info *t = ecr_model_tensor(fd_m, ti);
        int is_proj = !strcmp(t->name, "ecr.proj.weight");
        /* 6 random elements plus the one with the largest gradient */
        size_t idx[7];
        size_t best = 0;
        for (size_t j = 0; j < t->numel; j++)
            if (fabsf(g[t->offset + j]) > fabsf(g[t->offset + best])) best = j;
        for (int k = 0; k < 6; k++) idx[k] = (size_t)(ecr_rng_u64(&r) % t->numel);
        idx[6] = best;
        if (is_proj) { /* not part of this loss: exactly zero */
            CHECK(tl_max_abs(g + t->offset, t->numel) == 0.0);
            continue;
        }
        CHECK_MSG(fabsf(g[t->offset + best]) > 1e-3f, "%s: gradient suspiciously small", t->name);
        for (int k = 0; k < 7; k++) {
            size_t i = t->offset + idx[k];
            float v = p[i];
            p[i] = v + h;
            double lp = fd_loss();
            p[i] = v - h;
            double lm = fd_loss();
            p[i] = v;
            double fd = (lp - lm) / (2.0 * h), an = g[i];
            double tol = 2e-4 + 2e-2 * fabs(an);
            worst = tl_nanmax(worst, fabs(fd - an) / tol);
            CHECK_MSG(fabs(fd - an) <= tol, "%s[%zu]: fd %.7g analytic %.7g", t->name, idx[k], fd, an);
        }
    }
    fprintf(stderr, "    FD %s: worst err/tolerance %.3f\n", tied ? "tied" : "untied", worst);
    free(g);
    free(fd_dpooled);
    free(fd_dlogits);
    ecr_model_free(fd_m);
    fd_m = NULL;
}

static void test_fd_tied(void) { fd_model(1); }
static void test_fd_untied(void) { fd_model(0); }

/* ---- PyTorch reference ------------------------------------------------------------------------- */

static const char *meta_get(const ecr_st_file *f, const char *key) { return ecr_st_meta(f, key); }

static const float *fx_f32(const ecr_st_file *f, const char *name, size_t numel) {
    const ecr_tensor_view *v = ecr_st_find(f, name);
    CHECK_MSG(v && v->dtype == ECR_F32 && v->numel == numel, "fixture tensor '%s' (%zu floats)", name, numel);
    return v && v->dtype == ECR_F32 && v->numel == numel ? v->data : NULL;
}

static const int32_t *fx_i32(const ecr_st_file *f, const char *name, size_t numel) {
    const ecr_tensor_view *v = ecr_st_find(f, name);
    CHECK_MSG(v && v->dtype == ECR_I32 && v->numel == numel, "fixture tensor '%s'", name);
    return v && v->dtype == ECR_I32 && v->numel == numel ? v->data : NULL;
}

/* Model with the fixture's initial parameters ("param.<name>"; untied adds "untied.lm_head"). */
static ecr_model *fixture_model(const ecr_st_file *f, int tied) {
    ecr_config c = tl_fixture_cfg(f, tied);
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 1, &m));
    if (!m) return NULL;
    for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        char name[160];
        if (!strcmp(t->name, "lm_head.weight"))
            snprintf(name, sizeof name, "untied.lm_head");
        else
            snprintf(name, sizeof name, "param.%s", t->name);
        const float *src = fx_f32(f, name, t->numel);
        if (src) memcpy(ecr_model_params(m) + t->offset, src, t->numel * sizeof(float));
    }
    return m;
}

typedef struct fx_batch {
    ecr_batch b;
    int64_t ids[256];
} fx_batch;

static int fixture_batch(const ecr_st_file *f, fx_batch *fb) {
    memset(fb, 0, sizeof *fb);
    fb->b.B = (int)tl_meta_num(f, "B");
    fb->b.T = (int)tl_meta_num(f, "T");
    fb->b.n_texts = (int)tl_meta_num(f, "n_texts");
    size_t N = (size_t)fb->b.B * fb->b.T;
    fb->b.tokens = (int32_t *)fx_i32(f, "batch.tokens", N);
    fb->b.targets = (int32_t *)fx_i32(f, "batch.targets", N);
    fb->b.pos = (int32_t *)fx_i32(f, "batch.pos", N);
    fb->b.text = (int32_t *)fx_i32(f, "batch.text", N);
    fb->b.text_id = fb->ids;
    return fb->b.tokens && fb->b.targets && fb->b.pos && fb->b.text && fb->b.n_texts <= 256;
}

static void reference_variant(const ecr_st_file *f, int tied) {
    const char *pre = tied ? "tied" : "untied";
    ecr_model *m = fixture_model(f, tied);
    fx_batch fb;
    if (!m || !fixture_batch(f, &fb)) {
        ecr_model_free(m);
        return;
    }
    const ecr_config *c = ecr_model_config(m);
    size_t N = (size_t)fb.b.B * fb.b.T, V = (size_t)c->vocab_size, d = (size_t)c->dim;
    size_t nt = (size_t)fb.b.n_texts;
    char name[160];
    ecr_forward_out o;
    CHECK_OK(ecr_model_forward(m, &fb.b, &o));
    snprintf(name, sizeof name, "%s.logits", pre);
    const float *ref = fx_f32(f, name, N * V);
    if (ref) {
        double e = tl_rel_err(o.logits, ref, N * V);
        fprintf(stderr, "    %s logits rel err %.2e\n", pre, e);
        CHECK_MSG(e < 1e-5, "%s logits: %g", pre, e);
    }
    snprintf(name, sizeof name, "%s.loss", pre);
    if ((ref = fx_f32(f, name, 1))) CHECK_CLOSE(o.loss, ref[0], 1e-5 * fabs(ref[0]));
    snprintf(name, sizeof name, "%s.pooled", pre);
    if ((ref = fx_f32(f, name, nt * d))) CHECK_MSG(tl_rel_err(o.pooled, ref, nt * d) < 1e-5, "%s pooled", pre);
    snprintf(name, sizeof name, "%s.text_loss", pre);
    if ((ref = fx_f32(f, name, nt))) CHECK_MSG(tl_rel_err(o.text_loss, ref, nt) < 1e-5, "%s text_loss", pre);

    float lm = (float)tl_meta_num(f, "lm_scale");
    const float *dpooled = fx_f32(f, "dpooled", nt * d);
    const float *dlogits = tied ? NULL : fx_f32(f, "dlogits", N * V);
    ecr_model_zero_grad(m);
    CHECK_OK(ecr_model_backward(m, &fb.b, lm, dpooled, dlogits));
    double worst = 0;
    const char *worst_name = "";
    for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        snprintf(name, sizeof name, "%s.grad.%s", pre, t->name);
        const float *g = fx_f32(f, name, t->numel);
        if (!g) continue;
        const float *mine = ecr_model_grads(m) + t->offset;
        double e = tl_rel_err(mine, g, t->numel);
        if (tl_max_abs(g, t->numel) == 0.0) e = tl_max_abs(mine, t->numel); /* ecr.proj: exactly 0 */
        if (e > worst) worst = e, worst_name = t->name;
        CHECK_MSG(e < 2e-5, "%s gradient %s: rel err %g", pre, t->name, e);
    }
    fprintf(stderr, "    %s gradients worst rel err %.2e (%s)\n", pre, worst, worst_name);
    ecr_model_free(m);
}

/* The intermediate pooling (model_internal.h; the objective's "mid" term): the pooled residual
 * stream after block 1 and the gradients of L + sum(dpooled_mid * pooled_mid), tied head;
 * then, with the pooling off again, no pooled_mid and the plain backward's gradients. */
static void reference_mid(const ecr_st_file *f) {
    ecr_model *m = fixture_model(f, 1);
    fx_batch fb;
    if (!m || !fixture_batch(f, &fb)) {
        ecr_model_free(m);
        return;
    }
    size_t d = (size_t)ecr_model_config(m)->dim, nt = (size_t)fb.b.n_texts;
    CHECK_STATUS(ecr_model_set_mid_layer(m, ecr_model_config(m)->n_layers), ECR_E_INVALID);
    CHECK_OK(ecr_model_set_mid_layer(m, 1));
    ecr_forward_out o;
    CHECK_OK(ecr_model_forward(m, &fb.b, &o));
    const float *ref = fx_f32(f, "mid.pooled_mid", nt * d), *pm = ecr_model_pooled_mid(m);
    if (ref && pm) {
        double e = tl_rel_err(pm, ref, nt * d);
        fprintf(stderr, "    mid pooled rel err %.2e\n", e);
        CHECK(e < 1e-5);
    }
    const float *dpooled = fx_f32(f, "dpooled", nt * d), *dmid = fx_f32(f, "dpooled_mid", nt * d);
    ecr_model_zero_grad(m);
    CHECK_OK(ecr_model_backward_mid(m, &fb.b, (float)tl_meta_num(f, "lm_scale"), dpooled, NULL, 1.0f, dmid));
    double worst = 0;
    for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        char name[160];
        snprintf(name, sizeof name, "mid.grad.%s", t->name);
        const float *g = fx_f32(f, name, t->numel);
        if (!g) continue;
        const float *mine = ecr_model_grads(m) + t->offset;
        double e = tl_max_abs(g, t->numel) == 0.0 ? tl_max_abs(mine, t->numel) : tl_rel_err(mine, g, t->numel);
        worst = tl_nanmax(worst, e);
        CHECK_MSG(e < 2e-5, "mid gradient %s: rel err %g", t->name, e);
    }
    fprintf(stderr, "    mid gradients worst rel err %.2e\n", worst);
    CHECK_OK(ecr_model_set_mid_layer(m, 0));
    CHECK_OK(ecr_model_forward(m, &fb.b, &o));
    CHECK(ecr_model_pooled_mid(m) == NULL);
    ecr_model_free(m);
}

static void test_reference(void) {
    ecr_st_file *f = NULL;
    CHECK_OK(ecr_st_open(FIXTURE, &f));
    if (!f) return;
    reference_variant(f, 1);
    reference_variant(f, 0);
    reference_mid(f);
    ecr_st_close(f);
}

/* ---- packing, padding, KV cache --------------------------------------------------------------- */

static void test_packing_and_padding(void) {
    ecr_config c = tiny_cfg(1, 0);
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 3, &m));
    if (!m) return;
    tl_scramble(m, 50);
    int V = c.vocab_size;
    /* text X (5 tokens) alone at the start of a row vs. after two other texts */
    tl_batch alone, packed;
    int la[] = {5};
    tl_make_batch(&alone, 1, 16, la, 1, V, 99);
    int lp[] = {3, 2, 5};
    tl_make_batch(&packed, 1, 16, lp, 3, V, 42);
    /* copy X's slots into packed slots 7..12 */
    for (int j = 0; j < 6; j++) {
        packed.tok[7 + j] = alone.tok[j];
        packed.tgt[7 + j] = alone.tgt[j];
    }
    ecr_forward_out o;
    CHECK_OK(ecr_model_forward(m, &alone.b, &o));
    float *la_logits = malloc(sizeof(float) * 16 * V);
    memcpy(la_logits, o.logits, sizeof(float) * 16 * V);
    float la_loss = o.text_loss[0];
    float la_pooled[16];
    memcpy(la_pooled, o.pooled, sizeof la_pooled);
    CHECK_OK(ecr_model_forward(m, &packed.b, &o));
    CHECK_MSG(tl_rel_err(o.logits + 7 * V, la_logits, 6 * (size_t)V) < 1e-5, "packed text logits differ");
    CHECK_CLOSE(o.text_loss[2], la_loss, 1e-5 * fabs(la_loss));
    CHECK_MSG(tl_rel_err(o.pooled + 2 * 16, la_pooled, 16) < 1e-5, "packed text pooled differs");
    /* padding slots: finite outputs; changing their tokens leaves real slots identical */
    for (int i = 13 * V; i < 16 * V; i++) CHECK(isfinite(o.logits[i]));
    float *keep = malloc(sizeof(float) * 16 * V);
    memcpy(keep, o.logits, sizeof(float) * 16 * V);
    for (int j = 13; j < 16; j++) packed.tok[j] = 7 + j;
    CHECK_OK(ecr_model_forward(m, &packed.b, &o));
    CHECK(memcmp(keep, o.logits, sizeof(float) * 13 * V) == 0);
    /* a malformed batch is refused with row and slot */
    packed.pos[9] = 5;
    CHECK_STATUS(ecr_model_forward(m, &packed.b, &o), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "row 0 slot 9") != NULL);
    packed.pos[9] = 2;
    packed.tok[3] = V;
    CHECK_STATUS(ecr_model_forward(m, &packed.b, &o), ECR_E_INVALID);
    free(la_logits);
    free(keep);
    ecr_model_free(m);
}

static void test_kv_cache(void) {
    ecr_config c = tiny_cfg(0, 3);
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 5, &m));
    if (!m) return;
    tl_scramble(m, 77);
    int V = c.vocab_size;
    tl_batch tb;
    int lens[] = {11};
    tl_make_batch(&tb, 1, 12, lens, 1, V, 8);
    ecr_forward_out o;
    CHECK_OK(ecr_model_forward(m, &tb.b, &o));
    ecr_kv_cache *kv = NULL;
    CHECK_OK(ecr_kv_cache_create(m, 12, &kv));
    if (!kv) {
        ecr_model_free(m);
        return;
    }
    float logits[64];
    double worst = 0;
    for (int rep = 0; rep < 2; rep++) { /* twice: reset works */
        ecr_kv_cache_reset(kv);
        CHECK(ecr_kv_cache_len(kv) == 0);
        for (int t = 0; t < 12; t++) {
            CHECK_OK(ecr_model_step(m, kv, tb.tok[t], logits));
            worst = tl_nanmax(worst, tl_rel_err(logits, o.logits + (size_t)t * V, (size_t)V));
        }
        CHECK(ecr_kv_cache_len(kv) == 12);
    }
    fprintf(stderr, "    kv-cache vs forward: rel err %.2e\n", worst);
    CHECK(worst < 1e-5);
    CHECK_STATUS(ecr_model_step(m, kv, 3, logits), ECR_E_INVALID); /* full */
    ecr_kv_cache_free(kv);
    ecr_kv_cache_free(NULL);
    ecr_model_free(m);
}

/* Prefill (the prompt through the matrix-matrix path, in chunks of 64 rows) against one step
 * per token: the logits after the last token, and the cache it leaves (a step after it). */
static void test_prefill(void) {
    ecr_config c = tiny_cfg(0, 0);
    c.max_seq_len = 150; /* 140 tokens: chunks of 64, 64 and 12 */
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 6, &m));
    if (!m) return;
    tl_scramble(m, 78);
    int V = c.vocab_size, n = 140;
    int32_t tok[141];
    uint64_t r = 99;
    for (int t = 0; t < 141; t++) tok[t] = (int32_t)ecr_splitmix64_below(&r, (uint64_t)V);
    ecr_kv_cache *a = NULL, *b = NULL;
    CHECK_OK(ecr_kv_cache_create(m, 150, &a));
    CHECK_OK(ecr_kv_cache_create(m, 150, &b));
    float la[64], lb[64];
    if (!a || !b) goto out;
    for (int t = 0; t < n; t++) CHECK_OK(ecr_model_step(m, a, tok[t], la));
    for (int part = 0; part < 2; part++) { /* in one call, then in two (37 + 103) */
        ecr_kv_cache_reset(b);
        if (part == 0) CHECK_OK(ecr_model_prefill(m, b, tok, (size_t)n, lb));
        else {
            CHECK_OK(ecr_model_prefill(m, b, tok, 37, NULL));
            CHECK_OK(ecr_model_prefill(m, b, tok + 37, (size_t)n - 37, lb));
        }
        CHECK(ecr_kv_cache_len(b) == n);
        double e = tl_rel_err(lb, la, (size_t)V);
        CHECK_MSG(e < 1e-5, "prefill (%s) vs steps: logits rel err %g", part ? "two calls" : "one call", e);
    }
    /* the cache it left: the next step's logits */
    CHECK_OK(ecr_model_step(m, a, tok[n], la));
    CHECK_OK(ecr_model_step(m, b, tok[n], lb));
    double e = tl_rel_err(lb, la, (size_t)V);
    CHECK_MSG(e < 1e-5, "step after prefill vs steps: logits rel err %g", e);
    /* refusals leave the cache as it was */
    int32_t bad[2] = {3, V};
    CHECK_STATUS(ecr_model_prefill(m, b, bad, 2, lb), ECR_E_INVALID);
    CHECK_STATUS(ecr_model_prefill(m, b, tok, 0, lb), ECR_E_INVALID);
    CHECK_STATUS(ecr_model_prefill(m, b, tok, 10, lb), ECR_E_INVALID); /* 141 + 10 > 150 */
    CHECK(ecr_kv_cache_len(b) == n + 1);
    CHECK_OK(ecr_model_prefill(m, b, tok, 9, lb));
    CHECK(ecr_kv_cache_len(b) == 150);
out:
    ecr_kv_cache_free(a);
    ecr_kv_cache_free(b);
    ecr_model_free(m);
}

/* ---- save / load -------------------------------------------------------------------------------- */

static char tmpdir[256];

static void test_save_load(void) {
    ecr_config c = tiny_cfg(0, 5);
    ecr_model *m = NULL, *m2 = NULL;
    CHECK_OK(ecr_model_create(&c, 9, &m));
    if (!m) return;
    char dir[300], path[400];
    snprintf(dir, sizeof dir, "%s/run/model", tmpdir); /* parents are created */
    /* a tokenizer file to copy */
    snprintf(path, sizeof path, "%s/tok.json", tmpdir);
    FILE *fp = fopen(path, "w");
    fputs("{\"model\":{\"type\":\"BPE\"}}\n", fp);
    fclose(fp);
    const char *meta[] = {"ecr_step", "12", NULL};
    CHECK_OK(ecr_model_save(m, dir, path, meta));
    CHECK_OK(ecr_model_load(dir, &m2));
    if (m2) {
        CHECK(memcmp(ecr_model_config(m), ecr_model_config(m2), sizeof(ecr_config)) == 0);
        CHECK(ecr_model_num_params(m2) == ecr_model_num_params(m));
        CHECK(memcmp(ecr_model_params(m), ecr_model_params(m2), ecr_model_num_params(m) * 4) == 0);
    }
    ecr_model_free(m2);
    m2 = NULL;
    /* config.json carries Hugging Face keys */
    snprintf(path, sizeof path, "%s/config.json", dir);
    fp = fopen(path, "r");
    char buf[4096] = {0};
    size_t n = fp ? fread(buf, 1, sizeof buf - 1, fp) : 0;
    if (fp) fclose(fp);
    cJSON *j = cJSON_Parse(buf);
    CHECK(n > 0 && j != NULL);
    if (j) {
        CHECK(cJSON_GetObjectItem(j, "hidden_size")->valueint == 16);
        CHECK(!strcmp(cJSON_GetObjectItem(j, "model_type")->valuestring, "llama"));
        CHECK(!strcmp(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "architectures"), 0)->valuestring,
                      "LlamaForCausalLM"));
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(j, "tie_word_embeddings")));
        CHECK(cJSON_GetObjectItem(j, "ecr_dim")->valueint == 5);
        CHECK(cJSON_GetObjectItem(j, "num_key_value_heads")->valueint == 2);
        CHECK(cJSON_GetObjectItem(j, "rms_norm_eps")->valuedouble == 1e-5);
        CHECK(cJSON_GetObjectItem(j, "pad_token_id")->valueint == 1);
        cJSON_Delete(j);
    }
    CHECK(strstr(buf, "\"rope_theta\":\t10000.0") != NULL);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(access(path, F_OK) == 0);
    /* safetensors metadata and names */
    ecr_st_file *f = NULL;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_OK(ecr_st_open(path, &f));
    if (f) {
        CHECK(ecr_st_find(f, "model.layers.1.mlp.down_proj.weight") != NULL);
        CHECK(ecr_st_find(f, "lm_head.weight") != NULL);
        CHECK(ecr_st_find(f, "ecr.proj.weight") != NULL);
        CHECK(meta_get(f, "ecr_step") && !strcmp(meta_get(f, "ecr_step"), "12"));
        CHECK(meta_get(f, "format") && !strcmp(meta_get(f, "format"), "pt"));
    }

    /* F16 and BF16 copies load as the rounded values */
    for (int half = 0; half < 2 && f; half++) {
        ecr_st_writer *w = NULL;
        CHECK_OK(ecr_st_writer_create(&w));
        size_t P = ecr_model_num_params(m);
        uint16_t *h16 = malloc(P * 2);
        const float *p = ecr_model_params(m);
        for (size_t i = 0; i < P; i++) h16[i] = half ? ecr_f32_to_bf16(p[i]) : ecr_f32_to_f16(p[i]);
        for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
            const ecr_param_info *t = ecr_model_tensor(m, i);
            CHECK_OK(ecr_st_writer_add(w, t->name, half ? ECR_BF16 : ECR_F16, t->ndim, t->shape, h16 + t->offset));
        }
        CHECK_OK(ecr_st_writer_write(w, path));
        ecr_st_writer_free(w);
        CHECK_OK(ecr_model_load(dir, &m2));
        int bad = 0;
        for (size_t i = 0; m2 && i < P; i++) {
            float want = half ? ecr_bf16_to_f32(h16[i]) : ecr_f16_to_f32(h16[i]);
            bad += ecr_model_params(m2)[i] != want;
        }
        CHECK(m2 && bad == 0);
        ecr_model_free(m2);
        m2 = NULL;
        free(h16);
    }
    ecr_st_close(f);

    /* broken checkpoints: a missing tensor, a wrong shape, an extra tensor */
    for (int k = 0; k < 3; k++) {
        ecr_st_writer *w = NULL;
        CHECK_OK(ecr_st_writer_create(&w));
        for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
            const ecr_param_info *t = ecr_model_tensor(m, i);
            int64_t shape[2] = {t->shape[0], t->shape[1]};
            if (k == 0 && !strcmp(t->name, "model.layers.1.self_attn.k_proj.weight")) continue;
            if (k == 1 && !strcmp(t->name, "model.norm.weight")) shape[0] = 15;
            CHECK_OK(ecr_st_writer_add(w, t->name, ECR_F32, t->ndim, shape, ecr_model_params(m) + t->offset));
        }
        if (k == 2) {
            int64_t s1[1] = {2};
            CHECK_OK(ecr_st_writer_add(w, "model.extra.weight", ECR_F32, 1, s1, ecr_model_params(m)));
        }
        CHECK_OK(ecr_st_writer_write(w, path));
        ecr_st_writer_free(w);
        CHECK_STATUS(ecr_model_load(dir, &m2), ECR_E_INVALID);
        const char *want = k == 0 ? "model.layers.1.self_attn.k_proj.weight"
                         : k == 1 ? "model.norm.weight" : "model.extra.weight";
        CHECK_MSG(strstr(ecr_last_error(), want) && strstr(ecr_last_error(), "model.safetensors"),
                  "message: %s", ecr_last_error());
        CHECK(m2 == NULL);
    }
    /* a bad config.json */
    snprintf(path, sizeof path, "%s/config.json", dir);
    fp = fopen(path, "w");
    fputs("{\"model_type\":\"llama\",\"hidden_size\":16}", fp);
    fclose(fp);
    CHECK_STATUS(ecr_model_load(dir, &m2), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "config.json") != NULL);
    ecr_model_free(m);
}

/* ---- config --------------------------------------------------------------------------------------- */

static void test_config(void) {
    ecr_config c;
    CHECK_OK(ecr_config_preset("base", &c));
    CHECK(c.dim == 384 && c.n_layers == 6 && c.n_heads == 6 && c.hidden_dim == 1024);
    CHECK(c.vocab_size == 8192 && c.max_seq_len == 256 && c.tied == 1);
    CHECK_OK(ecr_config_preset("small", &c));
    CHECK(c.dim == 256 && c.n_layers == 4 && c.hidden_dim == 704);
    CHECK_OK(ecr_config_preset("tiny", &c));
    CHECK(c.dim == 128 && c.n_layers == 2 && c.n_heads == 4 && c.hidden_dim == 352);
    CHECK_STATUS(ecr_config_preset("huge", &c), ECR_E_INVALID);
    CHECK_OK(ecr_config_set(&c, "hidden_size=64"));
    CHECK_OK(ecr_config_set(&c, "n_layers=3"));
    CHECK_OK(ecr_config_set(&c, "tie_word_embeddings=false"));
    CHECK_OK(ecr_config_set(&c, "rms_norm_eps=1e-6"));
    CHECK_OK(ecr_config_set(&c, "ecr_dim=32"));
    CHECK(c.dim == 64 && c.n_layers == 3 && c.tied == 0 && c.norm_eps == 1e-6f && c.ecr_dim == 32);
    CHECK_STATUS(ecr_config_set(&c, "dim=abc"), ECR_E_INVALID);
    CHECK_STATUS(ecr_config_set(&c, "colour=3"), ECR_E_INVALID);
    CHECK_STATUS(ecr_config_set(&c, "dim"), ECR_E_INVALID);
    CHECK_OK(ecr_config_validate(&c));
    CHECK_OK(ecr_config_set(&c, "n_heads=5"));
    CHECK_STATUS(ecr_config_validate(&c), ECR_E_INVALID);
    ecr_model *m = NULL;
    CHECK_STATUS(ecr_model_create(&c, 1, &m), ECR_E_INVALID);
    CHECK(m == NULL);
    /* the base model's size and tensor table */
    CHECK_OK(ecr_config_preset("base", &c));
    CHECK_OK(ecr_model_create(&c, 1, &m));
    if (!m) return;
    CHECK(ecr_model_num_params(m) == 13767552);
    CHECK(ecr_model_num_tensors(m) == 1 + 6 * 9 + 1);
    const ecr_param_info *t = ecr_model_find_tensor(m, "model.layers.5.mlp.down_proj.weight");
    CHECK(t && t->shape[0] == 384 && t->shape[1] == 1024 && t->decay == 1);
    t = ecr_model_find_tensor(m, "model.embed_tokens.weight");
    CHECK(t && t->offset == 0 && t->decay == 0);
    t = ecr_model_find_tensor(m, "model.norm.weight");
    CHECK(t && t->decay == 0 && t->offset + t->numel == ecr_model_num_params(m));
    CHECK(ecr_model_find_tensor(m, "lm_head.weight") == NULL);
    /* init statistics: embeddings sd 0.02, o_proj sd 0.02/sqrt(12), norms 1 */
    t = ecr_model_find_tensor(m, "model.embed_tokens.weight");
    double s = 0;
    for (size_t i = 0; i < t->numel; i++) s += (double)ecr_model_params(m)[i] * ecr_model_params(m)[i];
    CHECK_CLOSE(sqrt(s / t->numel), 0.02, 0.0005);
    t = ecr_model_find_tensor(m, "model.layers.2.self_attn.o_proj.weight");
    s = 0;
    for (size_t i = 0; i < t->numel; i++) s += pow(ecr_model_params(m)[t->offset + i], 2);
    CHECK_CLOSE(sqrt(s / t->numel), 0.02 / sqrt(12.0), 0.0002);
    t = ecr_model_find_tensor(m, "model.layers.2.input_layernorm.weight");
    CHECK(ecr_model_params(m)[t->offset] == 1.0f && ecr_model_params(m)[t->offset + 383] == 1.0f);
    ecr_model_free(m);
}

/* ---- determinism ------------------------------------------------------------------------------------ */

static void test_determinism(void) {
    ecr_config c = tiny_cfg(1, 4);
    c.dim = 32, c.hidden_dim = 64, c.vocab_size = 100;
    ecr_model *a = NULL, *b = NULL, *z = NULL;
    CHECK_OK(ecr_model_create(&c, 42, &a));
    CHECK_OK(ecr_model_create(&c, 42, &b));
    CHECK_OK(ecr_model_create(&c, 43, &z));
    if (!a || !b || !z) goto done;
    size_t P = ecr_model_num_params(a);
    CHECK(memcmp(ecr_model_params(a), ecr_model_params(b), P * 4) == 0);
    CHECK(memcmp(ecr_model_params(a), ecr_model_params(z), P * 4) != 0);
    /* the ECR projection does not shift the other tensors' initial values */
    ecr_config c0 = c;
    c0.ecr_dim = 0;
    ecr_model *n = NULL;
    CHECK_OK(ecr_model_create(&c0, 42, &n));
    if (n) CHECK(memcmp(ecr_model_params(a), ecr_model_params(n), ecr_model_num_params(n) * 4) == 0);
    ecr_model_free(n);
    tl_batch tb;
    int lens[] = {5, 3, 4, -1, 9, 2, -1, 14};
    tl_make_batch(&tb, 3, 16, lens, 8, c.vocab_size, 1);
    float *dp = malloc(sizeof(float) * (size_t)tb.b.n_texts * c.dim);
    tl_fill_normal(dp, (size_t)tb.b.n_texts * c.dim, 1.0, 2);
    float loss[2];
    for (int r = 0; r < 2; r++) {
        ecr_model *m = r ? b : a;
        ecr_forward_out o;
        CHECK_OK(ecr_model_forward(m, &tb.b, &o));
        loss[r] = o.loss;
        CHECK_OK(ecr_model_backward(m, &tb.b, 1.0f, dp, NULL));
    }
    CHECK(loss[0] == loss[1]);
    /* encode (no LM head) pools exactly as the forward; no backward after it */
    const float *pe = NULL;
    ecr_forward_out of;
    float *pf = malloc(sizeof(float) * (size_t)tb.b.n_texts * c.dim);
    CHECK_OK(ecr_model_forward(z, &tb.b, &of));
    memcpy(pf, of.pooled, sizeof(float) * (size_t)tb.b.n_texts * c.dim);
    CHECK_OK(ecr_model_encode(z, &tb.b, &pe));
    CHECK(pe && memcmp(pe, pf, sizeof(float) * (size_t)tb.b.n_texts * c.dim) == 0);
    CHECK_STATUS(ecr_model_backward(z, &tb.b, 1.0f, NULL, NULL), ECR_E_INVALID);
    free(pf);
    CHECK(memcmp(ecr_model_grads(a), ecr_model_grads(b), P * 4) == 0);
    /* backward accumulates: a second forward+backward doubles the gradient */
    float *g1 = malloc(P * 4);
    memcpy(g1, ecr_model_grads(a), P * 4);
    ecr_forward_out o;
    CHECK_OK(ecr_model_forward(a, &tb.b, &o));
    CHECK_OK(ecr_model_backward(a, &tb.b, 1.0f, dp, NULL));
    double e = 0;
    for (size_t i = 0; i < P; i++) e = tl_nanmax(e, fabs(ecr_model_grads(a)[i] - 2.0 * g1[i]));
    CHECK(e <= 1e-6 * tl_max_abs(g1, P));
    /* lm_scale 0 and no dlogits: only the pooled term, the head is skipped; the gradient
     * matches the difference of two full backwards (scale 1 with and without dpooled) */
    ecr_model_zero_grad(a);
    CHECK_OK(ecr_model_forward(a, &tb.b, &o));
    CHECK_OK(ecr_model_backward(a, &tb.b, 0.0f, dp, NULL));
    memcpy(g1, ecr_model_grads(a), P * 4);
    ecr_model_zero_grad(b);
    CHECK_OK(ecr_model_forward(b, &tb.b, &o));
    CHECK_OK(ecr_model_backward(b, &tb.b, 1.0f, NULL, NULL));
    float *g2 = malloc(P * 4);
    memcpy(g2, ecr_model_grads(b), P * 4);
    ecr_model_zero_grad(b);
    CHECK_OK(ecr_model_forward(b, &tb.b, &o));
    CHECK_OK(ecr_model_backward(b, &tb.b, 1.0f, dp, NULL));
    e = 0;
    for (size_t i = 0; i < P; i++) e = tl_nanmax(e, fabs(g1[i] - (ecr_model_grads(b)[i] - g2[i])));
    CHECK_MSG(e <= 1e-5 * tl_max_abs(g1, P), "pooled-only gradient: %g", e);
    free(g2);
    free(g1);
    free(dp);
done:
    ecr_model_free(a);
    ecr_model_free(b);
    ecr_model_free(z);
}

/* ---- overfitting one batch ------------------------------------------------------------------------- */

static void test_overfit(void) {
    ecr_config c = tiny_cfg(1, 0);
    c.dim = 32, c.hidden_dim = 64;
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 1, &m));
    float first = 0, last = 0;
    CHECK_MSG(m && tl_overfit(m, 100, &first, &last), "%s", ecr_last_error());
    fprintf(stderr, "    overfit: loss %.3f -> %.4f in 100 steps\n", first, last);
    CHECK(first > 3.5f); /* ~ln 64 at init */
    CHECK(last < 0.05f);
    ecr_model_free(m);
}

int main(void) {
    ecr_set_threads(2);
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/ecr_test_model_XXXXXX", base && *base ? base : P_tmpdir);
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_config);
    RUN(test_fd_tied);
    RUN(test_fd_untied);
    RUN(test_reference);
    RUN(test_packing_and_padding);
    RUN(test_kv_cache);
    RUN(test_prefill);
    RUN(test_save_load);
    RUN(test_determinism);
    RUN(test_overfit);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmpdir);
    return test_finish("test_model");
}
