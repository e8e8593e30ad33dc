/* test_optim.c — AdamW, the learning-rate schedule and gradient clipping.
 *
 *  - AdamW against a double-precision transcription of torch.optim.AdamW on hand-set
 *    gradients (several steps, decay and no-decay tensors, zero gradients): within
 *    1e-6 * (|p| + sum of the step sizes so far);
 *  - end to end against PyTorch (tests/fixtures/model_ref.safetensors): three steps of
 *    forward, backward, clip_grad_norm_ and AdamW on the reference model; gradient norms
 *    within 1e-5 relative, parameters within 2e-6 + 2e-3 * lr of PyTorch's;
 *  - resume: restoring m, v and the step count continues bit-identically;
 *  - the schedule's warm-up, cosine and floor values; clipping's norm and scaling. */
#include "test.h"
#include "testlib.h"

#include <string.h>

#define FIXTURE "tests/fixtures/model_ref.safetensors"

static ecr_config small_cfg(void) {
    ecr_config c;
    ecr_config_preset("tiny", &c);
    c.vocab_size = 10, c.dim = 8, c.n_layers = 1, c.n_heads = 2, c.hidden_dim = 16;
    c.max_seq_len = 8, c.tied = 1, c.ecr_dim = 3;
    return c;
}

/* ---- AdamW formula ----------------------------------------------------------------------------- */

static void test_adamw_formula(void) {
    ecr_config c = small_cfg();
    ecr_model *m = NULL;
    ecr_adamw *opt = NULL;
    CHECK_OK(ecr_model_create(&c, 3, &m));
    ecr_adamw_opts o;
    ecr_adamw_opts_default(&o);
    CHECK(o.beta1 == 0.9f && o.beta2 == 0.95f && o.eps == 1e-8f && o.weight_decay == 0.1f);
    o.weight_decay = 0.2f;
    CHECK_OK(ecr_adamw_create(m, &o, &opt));
    if (!m || !opt) goto done;
    size_t P = ecr_model_num_params(m);
    CHECK(ecr_adamw_size(opt) == P);
    double *p = malloc(P * sizeof *p), *mm = calloc(P, sizeof *mm), *vv = calloc(P, sizeof *vv);
    int *dec = calloc(P, sizeof *dec);
    for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        for (size_t j = 0; j < t->numel; j++) dec[t->offset + j] = t->decay;
    }
    for (size_t i = 0; i < P; i++) p[i] = ecr_model_params(m)[i];
    const float lrs[4] = {1e-2f, 5e-3f, 2e-2f, 1e-3f};
    double worst = 0, lr_sum = 0;
    for (int s = 0; s < 4; s++) {
        float *g = ecr_model_grads(m);
        for (size_t i = 0; i < P; i++) /* varied magnitudes, some exactly zero */
            g[i] = (i % 7 == 3) ? 0.0f : (float)(sin(1.3 * i + s) * pow(10.0, (double)(i % 5) - 3));
        CHECK_OK(ecr_adamw_step(opt, m, lrs[s]));
        double t = s + 1, b1 = o.beta1, b2 = o.beta2, lr = lrs[s];
        lr_sum += lr;
        for (size_t i = 0; i < P; i++) { /* torch.optim.AdamW, single-tensor path */
            if (dec[i]) p[i] *= 1.0 - lr * o.weight_decay;
            mm[i] = b1 * mm[i] + (1 - b1) * g[i];
            vv[i] = b2 * vv[i] + (1 - b2) * (double)g[i] * g[i];
            double denom = sqrt(vv[i]) / sqrt(1 - pow(b2, t)) + o.eps;
            p[i] -= lr / (1 - pow(b1, t)) * mm[i] / denom;
            double e = fabs(ecr_model_params(m)[i] - p[i]) / (fabs(p[i]) + lr_sum);
            worst = tl_nanmax(worst, e);
        }
        CHECK(ecr_adamw_steps(opt) == s + 1);
    }
    fprintf(stderr, "    adamw vs double formula: worst %.2e\n", worst);
    CHECK(worst < 1e-6);
    /* the gradient block is left alone */
    CHECK(ecr_model_grads(m)[3] == 0.0f && ecr_model_grads(m)[1] != 0.0f);
    free(p);
    free(mm);
    free(vv);
    free(dec);
done:
    ecr_adamw_free(opt);
    ecr_model_free(m);
}

/* First step: p -> p (1 - lr wd) - lr * g / (|g| + eps) (sign descent); norms never decay
 * (unless asked for embeddings). */
static void test_adamw_decay_flags(void) {
    ecr_config c = small_cfg();
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 3, &m));
    if (!m) return;
    size_t P = ecr_model_num_params(m);
    float *p0 = malloc(P * 4);
    memcpy(p0, ecr_model_params(m), P * 4);
    for (int emb = 0; emb < 2; emb++) {
        memcpy(ecr_model_params(m), p0, P * 4);
        ecr_model_zero_grad(m);
        ecr_adamw_opts o;
        ecr_adamw_opts_default(&o);
        o.decay_embeddings = emb;
        ecr_adamw *opt = NULL;
        CHECK_OK(ecr_adamw_create(m, &o, &opt));
        if (!opt) break;
        CHECK(ecr_adamw_options(opt)->decay_embeddings == emb);
        CHECK_OK(ecr_adamw_step(opt, m, 0.5f)); /* zero gradients: decay only */
        for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
            const ecr_param_info *t = ecr_model_tensor(m, i);
            int is_emb = !strcmp(t->name, "model.embed_tokens.weight");
            float want = p0[t->offset] * ((t->decay || (emb && is_emb)) ? 1.0f - 0.5f * 0.1f : 1.0f);
            CHECK_MSG(ecr_model_params(m)[t->offset] == want, "%s (decay_embeddings %d)", t->name, emb);
        }
        ecr_adamw_free(opt);
    }
    /* sign descent on the first step */
    memcpy(ecr_model_params(m), p0, P * 4);
    ecr_adamw *opt = NULL;
    ecr_adamw_opts o;
    ecr_adamw_opts_default(&o);
    o.weight_decay = 0.0f;
    CHECK_OK(ecr_adamw_create(m, &o, &opt));
    for (size_t i = 0; i < P; i++) ecr_model_grads(m)[i] = (i & 1) ? 3.0f : -0.25f;
    CHECK_OK(ecr_adamw_step(opt, m, 1e-3f));
    CHECK_CLOSE(ecr_model_params(m)[1], p0[1] - 1e-3, 1e-9 + 1e-7 * fabs(p0[1]));
    CHECK_CLOSE(ecr_model_params(m)[2], p0[2] + 1e-3, 1e-9 + 1e-7 * fabs(p0[2]));
    /* bad options, bad lr, a model of another shape */
    CHECK_STATUS(ecr_adamw_step(opt, m, NAN), ECR_E_INVALID);
    ecr_adamw *bad = NULL;
    o.beta2 = 1.0f;
    CHECK_STATUS(ecr_adamw_create(m, &o, &bad), ECR_E_INVALID);
    CHECK(bad == NULL);
    ecr_config c2 = c;
    c2.dim = 16;
    ecr_model *m2 = NULL;
    CHECK_OK(ecr_model_create(&c2, 1, &m2));
    CHECK_STATUS(ecr_adamw_step(opt, m2, 1e-3f), ECR_E_INVALID);
    ecr_model_free(m2);
    ecr_adamw_free(opt);
    ecr_adamw_free(NULL);
    free(p0);
    ecr_model_free(m);
}

/* ---- resume ----------------------------------------------------------------------------------- */

static void set_grads(ecr_model *m, int s) {
    float *g = ecr_model_grads(m);
    for (size_t i = 0; i < ecr_model_num_params(m); i++) g[i] = (float)cos(0.7 * i + 2.1 * s);
}

static void test_adamw_resume(void) {
    ecr_config c = small_cfg();
    ecr_model *a = NULL, *b = NULL;
    ecr_adamw *oa = NULL, *ob = NULL;
    CHECK_OK(ecr_model_create(&c, 5, &a));
    CHECK_OK(ecr_model_create(&c, 5, &b));
    CHECK_OK(ecr_adamw_create(a, NULL, &oa));
    CHECK_OK(ecr_adamw_create(b, NULL, &ob));
    if (!a || !b || !oa || !ob) goto done;
    size_t P = ecr_model_num_params(a);
    for (int s = 0; s < 3; s++) {
        set_grads(a, s);
        CHECK_OK(ecr_adamw_step(oa, a, 1e-2f));
    }
    /* b resumes from a's state after 3 steps */
    memcpy(ecr_model_params(b), ecr_model_params(a), P * 4);
    memcpy(ecr_adamw_m(ob), ecr_adamw_m(oa), P * 4);
    memcpy(ecr_adamw_v(ob), ecr_adamw_v(oa), P * 4);
    ecr_adamw_set_steps(ob, ecr_adamw_steps(oa));
    for (int s = 3; s < 5; s++) {
        set_grads(a, s);
        set_grads(b, s);
        CHECK_OK(ecr_adamw_step(oa, a, 1e-2f));
        CHECK_OK(ecr_adamw_step(ob, b, 1e-2f));
    }
    CHECK(memcmp(ecr_model_params(a), ecr_model_params(b), P * 4) == 0);
    CHECK(ecr_adamw_steps(ob) == 5);
done:
    ecr_adamw_free(oa);
    ecr_adamw_free(ob);
    ecr_model_free(a);
    ecr_model_free(b);
}

/* ---- schedule and clipping ---------------------------------------------------------------------- */

static void test_schedule(void) {
    CHECK_CLOSE(ecr_lr_schedule(0, 10, 100, 1e-3f, 1e-4f), 1e-4, 1e-9);
    CHECK_CLOSE(ecr_lr_schedule(4, 10, 100, 1e-3f, 1e-4f), 5e-4, 1e-9);
    CHECK_CLOSE(ecr_lr_schedule(9, 10, 100, 1e-3f, 1e-4f), 1e-3, 1e-9);
    CHECK_CLOSE(ecr_lr_schedule(10, 10, 100, 1e-3f, 1e-4f), 1e-3, 1e-9);
    CHECK_CLOSE(ecr_lr_schedule(55, 10, 100, 1e-3f, 1e-4f), 5.5e-4, 1e-9); /* cosine midpoint */
    CHECK_CLOSE(ecr_lr_schedule(100, 10, 100, 1e-3f, 1e-4f), 1e-4, 1e-9);
    CHECK_CLOSE(ecr_lr_schedule(500, 10, 100, 1e-3f, 1e-4f), 1e-4, 1e-9);
    CHECK_CLOSE(ecr_lr_schedule(0, 0, 100, 1e-3f, 0.0f), 1e-3, 1e-9);
    CHECK_CLOSE(ecr_lr_schedule(25, 0, 100, 1e-3f, 0.0f), 0.5e-3 * (1 + cos(M_PI / 4)), 1e-9);
    /* monotone non-increasing after warm-up */
    float prev = 1.0f;
    int mono = 1;
    for (int s = 10; s <= 120; s++) {
        float lr = ecr_lr_schedule(s, 10, 100, 1e-3f, 1e-4f);
        mono &= lr <= prev;
        prev = lr;
    }
    CHECK(mono);
}

static void test_clip(void) {
    ecr_config c = small_cfg();
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 1, &m));
    if (!m) return;
    size_t P = ecr_model_num_params(m);
    float *g = ecr_model_grads(m);
    for (size_t i = 0; i < P; i++) g[i] = (i % 2) ? 0.5f : -0.5f;
    double want = 0.5 * sqrt((double)P);
    float norm = 0;
    CHECK_OK(ecr_clip_grad_norm(m, 0.0f, &norm)); /* measure only */
    CHECK_CLOSE(norm, want, 1e-6 * want);
    CHECK(g[0] == -0.5f);
    CHECK_OK(ecr_clip_grad_norm(m, 1000.0f, &norm)); /* below: untouched */
    CHECK(g[0] == -0.5f);
    CHECK_OK(ecr_clip_grad_norm(m, 2.0f, &norm));
    CHECK_CLOSE(norm, want, 1e-6 * want);
    CHECK_OK(ecr_clip_grad_norm(m, 0.0f, &norm));
    CHECK_CLOSE(norm, 2.0, 1e-5);
    g[7] = NAN;
    CHECK_STATUS(ecr_clip_grad_norm(m, 1.0f, &norm), ECR_E_RUNTIME);
    CHECK(isnan(norm) && g[0] != 0.0f);
    ecr_model_free(m);
}

/* ---- end to end against PyTorch ------------------------------------------------------------------- */

static const void *fx(const ecr_st_file *f, const char *name, ecr_dtype dt, size_t numel) {
    const ecr_tensor_view *v = ecr_st_find(f, name);
    CHECK_MSG(v && v->dtype == dt && v->numel == numel, "fixture tensor '%s'", name);
    return v && v->dtype == dt && v->numel == numel ? v->data : NULL;
}

static ecr_model *fixture_model(const ecr_st_file *f, int tied) {
    ecr_config c = tl_fixture_cfg(f, tied);
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&c, 1, &m));
    for (size_t i = 0; m && i < ecr_model_num_tensors(m); i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        char name[160];
        snprintf(name, sizeof name, "param.%s", t->name);
        const float *src = fx(f, name, ECR_F32, t->numel);
        if (src) memcpy(ecr_model_params(m) + t->offset, src, t->numel * sizeof(float));
    }
    return m;
}

static void test_adamw_vs_torch(void) {
    ecr_st_file *f = NULL;
    CHECK_OK(ecr_st_open(FIXTURE, &f));
    if (!f) return;
    ecr_model *m = fixture_model(f, 1);
    ecr_adamw *opt = NULL;
    ecr_adamw_opts o;
    ecr_adamw_opts_default(&o);
    o.beta1 = (float)tl_meta_num(f, "adam_beta1");
    o.beta2 = (float)tl_meta_num(f, "adam_beta2");
    o.eps = (float)tl_meta_num(f, "adam_eps");
    o.weight_decay = (float)tl_meta_num(f, "adam_wd");
    if (m) CHECK_OK(ecr_adamw_create(m, &o, &opt));
    ecr_batch b = {0};
    int64_t ids[64] = {0};
    b.B = (int)tl_meta_num(f, "B"), b.T = (int)tl_meta_num(f, "T"), b.n_texts = (int)tl_meta_num(f, "n_texts");
    size_t N = (size_t)b.B * b.T;
    b.tokens = (int32_t *)fx(f, "batch.tokens", ECR_I32, N);
    b.targets = (int32_t *)fx(f, "batch.targets", ECR_I32, N);
    b.pos = (int32_t *)fx(f, "batch.pos", ECR_I32, N);
    b.text = (int32_t *)fx(f, "batch.text", ECR_I32, N);
    b.text_id = ids;
    const float *gn = fx(f, "adam.gnorm", ECR_F32, 3);
    float lm = (float)tl_meta_num(f, "lm_scale"), clip = (float)tl_meta_num(f, "clip_norm");
    if (!m || !opt || !b.tokens || !b.targets || !b.pos || !b.text || !gn) goto done;
    const float *dpooled = fx(f, "dpooled", ECR_F32, (size_t)b.n_texts * ecr_model_config(m)->dim);
    float lr = 0;
    for (int s = 0; s < 3; s++) {
        char key[32];
        snprintf(key, sizeof key, "adam_lr_%d", s);
        lr = (float)tl_meta_num(f, key);
        ecr_forward_out out;
        CHECK_OK(ecr_model_forward(m, &b, &out));
        ecr_model_zero_grad(m);
        CHECK_OK(ecr_model_backward(m, &b, lm, dpooled, NULL));
        float norm = 0;
        CHECK_OK(ecr_clip_grad_norm(m, clip, &norm));
        CHECK_CLOSE(norm, gn[s], 1e-5 * gn[s]);
        CHECK_OK(ecr_adamw_step(opt, m, lr));
    }
    double worst = 0;
    for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        char name[160];
        snprintf(name, sizeof name, "adam.%s", t->name);
        const float *want = fx(f, name, ECR_F32, t->numel);
        if (!want) continue;
        const float *have = ecr_model_params(m) + t->offset;
        double e = 0;
        for (size_t j = 0; j < t->numel; j++) e = tl_nanmax(e, fabs((double)have[j] - want[j]));
        worst = tl_nanmax(worst, e);
        CHECK_MSG(e <= 2e-6 + 2e-3 * lr, "%s after 3 steps: max |diff| %g", t->name, e);
    }
    fprintf(stderr, "    params after 3 AdamW steps vs torch: max |diff| %.2e (lr %g)\n", worst, lr);
done:
    ecr_adamw_free(opt);
    ecr_model_free(m);
    ecr_st_close(f);
}

int main(void) {
    ecr_set_threads(2);
    RUN(test_adamw_formula);
    RUN(test_adamw_decay_flags);
    RUN(test_adamw_resume);
    RUN(test_schedule);
    RUN(test_clip);
    RUN(test_adamw_vs_torch);
    return test_finish("test_optim");
}
