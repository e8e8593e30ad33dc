/* test_ecr_train.c — ECR and the contrastive objective end to end through the trainer.
 *
 *  - isolation: ECR training runs in a folder holding only the prepared data and the
 *    anchors file (the teacher's embeddings were deleted before), writes only its output
 *    folder there, and the model's metadata records the anchors (K, D, tau, source hash);
 *  - it learns: the ECR term falls and the nearest anchor of u agrees with the teacher's
 *    code far above chance (an untrained projection is near chance); the contrastive term
 *    of lm+contrastive falls;
 *  - refusals: anchors whose codes do not cover the data (both files and counts named),
 *    --ecr-soft without soft codes, a step too small for the group size;
 *  - decoding is untouched: the ECR model and a copy without the projection (in memory and
 *    through save/load) generate the same tokens for the same seed, and poisoning P with NaN
 *    changes nothing;
 *  - ecr_embed: one row per text, --raw rows equal the pooled h of the text alone (packing
 *    invariance, 1e-5), u = normalise(P h) (1e-6). */
#include "test.h"
#include "testlib.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_work[512];      /* builds the inputs                                      */
static char g_iso[512];       /* holds only data.safetensors and anchors.safetensors    */
static char g_data[700], g_anchors[700];
static ecr_data *g_d;

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[1 << 16];
    size_t n;
    int ok = a && b;
    while (ok && (n = fread(buf, 1, sizeof buf, a)) > 0) ok = fwrite(buf, 1, n, b) == n;
    if (a) fclose(a);
    if (b && fclose(b) != 0) ok = 0;
    return ok;
}

/* Synthetic teacher embeddings: a vector per group (translations agree) plus a little
 * noise per text, D = 16. */
enum { TD = 16, K = 8 };
static float *teacher_emb(const ecr_data *d) {
    float *e = malloc(d->n_texts * TD * sizeof *e);
    for (size_t i = 0; i < d->n_texts; i++) {
        uint64_t s = (uint64_t)(d->group[i] + 3) * 0x9E3779B97F4A7C15ULL, t = i * 977 + 1;
        for (int j = 0; j < TD; j++) {
            s ^= s >> 29, s *= 0xBF58476D1CE4E5B9ULL, t ^= t >> 31, t *= 0x94D049BB133111EBULL;
            e[i * TD + j] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) +
                            0.05f * (float)((double)(t >> 11) / 9007199254740992.0 - 0.5);
        }
    }
    return e;
}

/* 300 lo10 validation texts (30 groups x 10 languages), a 320-token BPE, prepared; teacher
 * embeddings -> anchors (K 8, soft M 3); then a fresh folder with only the two files. */
static int make_inputs(void) {
    char tok_path[700], data[700], npy[700], anchors[700];
    snprintf(g_work, sizeof g_work, "%s/ecr_test_ecr_work_XXXXXX", P_tmpdir);
    snprintf(g_iso, sizeof g_iso, "%s/ecr_test_ecr_iso_XXXXXX", P_tmpdir);
    if (!tl_lo10_small(g_work, 300, "data.safetensors", tok_path, sizeof tok_path, data, sizeof data) ||
        !mkdtemp(g_iso))
        return 0;
    snprintf(npy, sizeof npy, "%s/teacher.npy", g_work);
    snprintf(anchors, sizeof anchors, "%s/anchors.safetensors", g_work);
    ecr_data *d = NULL;
    CHECK_OK(ecr_data_open(data, &d));
    if (!d) return 0;
    float *e = teacher_emb(d);
    CHECK_OK(ecr_npy_write(npy, e, (int64_t)d->n_texts, TD));
    float *back = NULL;
    int64_t rows = 0, cols = 0;
    CHECK_OK(ecr_npy_read(npy, &back, &rows, &cols)); /* as `ecr anchors` would */
    ecr_anchors_opts ao;
    ecr_anchors_opts_default(&ao);
    ao.k = K, ao.soft = 3, ao.quiet = 1, ao.source = "teacher.npy";
    ecr_anchors *a = NULL;
    if (back) CHECK_OK(ecr_anchors_fit(back, rows, cols, &ao, &a));
    if (a) CHECK_OK(ecr_anchors_save(a, anchors));
    ecr_anchors_free(a);
    free(back);
    free(e);
    ecr_data_free(d);
    /* the isolated folder: the two files, nothing else (the teacher's .npy is gone too) */
    snprintf(g_data, sizeof g_data, "%s/data.safetensors", g_iso);
    snprintf(g_anchors, sizeof g_anchors, "%s/anchors.safetensors", g_iso);
    CHECK(copy_file(data, g_data) && copy_file(anchors, g_anchors));
    tl_rm_tree(g_work);
    CHECK_OK(ecr_data_open(g_data, &g_d));
    return g_d != NULL;
}

static void tiny_opts(ecr_train_opts *o, const char *out) {
    ecr_train_opts_default(o);
    o->precision = ECR_PRECISION_FP32; /* the numbers below are fp32's on every CPU */
    o->data_path = g_data;
    o->out_dir = out;
    CHECK_OK(ecr_config_preset("tiny", &o->config));
    CHECK_OK(ecr_config_set(&o->config, "dim=32"));
    CHECK_OK(ecr_config_set(&o->config, "n_layers=1"));
    CHECK_OK(ecr_config_set(&o->config, "n_heads=2"));
    CHECK_OK(ecr_config_set(&o->config, "hidden_dim=64"));
    CHECK_OK(ecr_config_set(&o->config, "max_seq_len=64"));
    o->config.vocab_size = 0;
    o->tokens_per_step = 512;
    o->lr = 5e-3f;
    o->warmup = 5;
    o->threads = 2;
    o->quiet = 1;
}

/* Mean of a log field over steps [s0, s1]. */
static double log_mean(const char *dir, const char *field, int s0, int s1) {
    char p[700], key[64];
    snprintf(p, sizeof p, "%s/log.jsonl", dir);
    snprintf(key, sizeof key, "\"%s\":", field);
    FILE *fp = fopen(p, "rb");
    char line[1024];
    double sum = 0;
    int n = 0;
    while (fp && fgets(line, sizeof line, fp)) {
        int step = 0;
        char *v = strstr(line, key);
        if (sscanf(line, "{\"step\":%d", &step) == 1 && v && step >= s0 && step <= s1) {
            sum += strtod(v + strlen(key), NULL);
            n++;
        }
    }
    if (fp) fclose(fp);
    return n ? sum / n : NAN;
}

/* Share of texts whose most similar anchor under u is their code. */
static double anchor_agreement(ecr_model *m, const ecr_anchors *a) {
    ecr_embed_opts eo;
    ecr_embed_opts_default(&eo);
    eo.quiet = 1;
    float *u = NULL;
    int64_t cols = 0;
    int proj = 0;
    CHECK_OK(ecr_embed(m, g_d, &eo, &u, &cols, &proj));
    if (!u) return -1;
    CHECK(proj == 1 && cols == a->dim);
    int64_t agree = 0;
    for (size_t i = 0; i < g_d->n_texts; i++) {
        int best = 0;
        double bs = -1e300;
        for (int k = 0; k < a->k; k++) {
            double s = 0;
            for (int j = 0; j < a->dim; j++) s += (double)u[i * cols + j] * a->anchors[k * a->dim + j];
            if (s > bs) bs = s, best = k;
        }
        agree += best == a->codes[i];
    }
    free(u);
    return (double)agree / (double)g_d->n_texts;
}

/* ---- tests ------------------------------------------------------------------------------- */

static char g_model[700]; /* the ECR model, trained by test_isolated_ecr_training */

static void test_isolated_ecr_training(void) {
    ecr_train_opts o;
    snprintf(g_model, sizeof g_model, "%s/student", g_iso);
    tiny_opts(&o, g_model);
    o.anchors_path = g_anchors;
    o.ecr_weight = 1.0f;
    o.steps = 150;
    CHECK_OK(ecr_train(&o));
    /* the folder holds the two inputs and the output folder, nothing else */
    DIR *dir = opendir(g_iso);
    int n = 0, other = 0;
    for (struct dirent *e; dir && (e = readdir(dir));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n++;
        other += strcmp(e->d_name, "data.safetensors") && strcmp(e->d_name, "anchors.safetensors") &&
                 strcmp(e->d_name, "student");
    }
    if (dir) closedir(dir);
    CHECK(n == 3 && other == 0);
    /* metadata: the anchors' K, D, tau, source hash */
    ecr_anchors *a = NULL;
    CHECK_OK(ecr_anchors_load(g_anchors, &a));
    char p[800];
    snprintf(p, sizeof p, "%s/model.safetensors", g_model);
    ecr_st_file *f = NULL;
    CHECK_OK(ecr_st_open(p, &f));
    if (f && a) {
        const char *k = ecr_st_meta(f, "ecr_anchors_k"), *dm = ecr_st_meta(f, "ecr_anchors_dim");
        const char *tau = ecr_st_meta(f, "ecr_tau"), *sh = ecr_st_meta(f, "ecr_anchors_source_hash");
        const char *src = ecr_st_meta(f, "ecr_anchors_source");
        CHECK(k && atoi(k) == K && dm && atoi(dm) == TD);
        CHECK(tau && fabs(atof(tau) - (double)a->tau) < 1e-9);
        CHECK(sh && !strcmp(sh, a->source_hash));
        CHECK(src && !strcmp(src, "teacher.npy"));
        const ecr_tensor_view *v = ecr_st_find(f, "ecr.proj.weight");
        CHECK(v && v->ndim == 2 && v->shape[0] == TD && v->shape[1] == 32);
    }
    ecr_st_close(f);
    /* it learned: the ECR term fell, u's nearest anchor is mostly the teacher's code */
    double first = log_mean(g_model, "ecr", 1, 5), last = log_mean(g_model, "ecr", 146, 150);
    ecr_model *m = NULL, *m0 = NULL;
    CHECK_OK(ecr_model_load(g_model, &m));
    ecr_config c0 = *ecr_model_config(m);
    CHECK_OK(ecr_model_create(&c0, 1, &m0));
    double agree = m && a ? anchor_agreement(m, a) : -1, agree0 = m0 && a ? anchor_agreement(m0, a) : -1;
    fprintf(stderr, "    ECR term %.3f -> %.3f over 150 steps; anchor agreement %.2f (untrained %.2f, "
                    "chance %.2f)\n", first, last, agree, agree0, 1.0 / K);
    CHECK(last < 0.7 * first);
    CHECK(agree > 0.6);
    CHECK(agree0 < 0.4);
    ecr_model_free(m);
    ecr_model_free(m0);
    ecr_anchors_free(a);
}

static void test_contrastive_learns(void) {
    ecr_train_opts o;
    char out[700];
    snprintf(out, sizeof out, "%s/teacher", g_iso);
    tiny_opts(&o, out);
    o.objective = ECR_TRAIN_LM_CONTRASTIVE;
    o.group_size = 4;
    o.contrastive_tau = 0.1f;
    o.steps = 60;
    CHECK_OK(ecr_train(&o));
    double first = log_mean(out, "contrastive", 1, 5), last = log_mean(out, "contrastive", 56, 60);
    fprintf(stderr, "    contrastive term %.3f -> %.3f over 60 steps\n", first, last);
    CHECK(last < 0.7 * first);
    /* one epoch = one pass over the 30 groups, 4 texts each */
    snprintf(out, sizeof out, "%s/teacher_epoch", g_iso);
    tiny_opts(&o, out);
    o.objective = ECR_TRAIN_LM_CONTRASTIVE;
    o.group_size = 4;
    o.steps = 0;
    o.epochs = 1;
    CHECK_OK(ecr_train(&o));
    double tok = log_mean(out, "tokens", 1, 1000000);
    CHECK(tok > 0);
    tl_rm_tree(out);
}

static void test_refusals(void) {
    ecr_train_opts o;
    char out[700], other[700];
    /* anchors for another number of texts */
    snprintf(other, sizeof other, "%s/other_anchors.safetensors", g_iso);
    float *e = teacher_emb(g_d);
    ecr_anchors_opts ao;
    ecr_anchors_opts_default(&ao);
    ao.k = 4, ao.quiet = 1;
    ecr_anchors *a = NULL;
    CHECK_OK(ecr_anchors_fit(e, (int64_t)g_d->n_texts - 1, TD, &ao, &a));
    if (a) CHECK_OK(ecr_anchors_save(a, other));
    ecr_anchors_free(a);
    free(e);
    snprintf(out, sizeof out, "%s/refused", g_iso);
    tiny_opts(&o, out);
    o.anchors_path = other;
    o.steps = 2;
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    char n1[32], n2[32];
    snprintf(n1, sizeof n1, "%zu", g_d->n_texts - 1);
    snprintf(n2, sizeof n2, "%zu", g_d->n_texts);
    CHECK_MSG(strstr(ecr_last_error(), "other_anchors.safetensors") && strstr(ecr_last_error(), "data.safetensors") &&
              strstr(ecr_last_error(), n1) && strstr(ecr_last_error(), n2), "message: %s", ecr_last_error());
    /* soft codes requested, none in the file */
    tiny_opts(&o, out);
    o.anchors_path = other;
    o.ecr_soft = 1;
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    remove(other);
    /* a step of 1 row cannot hold groups of 2 */
    tiny_opts(&o, out);
    o.objective = ECR_TRAIN_LM_CONTRASTIVE;
    o.tokens_per_step = 64;
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "group") != NULL);
    tl_rm_tree(out);
}

typedef struct collect {
    int32_t ids[48];
    int n;
} collect;
static int collect_token(void *p, int32_t id) {
    collect *c = p;
    if (c->n < 48) c->ids[c->n++] = id;
    return 0;
}

static void gen(ecr_model *m, float temperature, collect *c) {
    int32_t prompt[4] = {0, 40, 41, 42};
    ecr_gen_opts go;
    ecr_gen_opts_default(&go);
    go.temperature = temperature;
    go.max_tokens = 40;
    go.seed = 11;
    memset(c, 0, sizeof *c);
    CHECK_OK(ecr_generate(m, prompt, 4, -1, &go, collect_token, c, NULL));
}

/* Generation never reads P: the same tokens without the projection and with P poisoned. */
static void test_decoding_untouched(void) {
    ecr_model *m = NULL, *bare = NULL, *loaded = NULL;
    CHECK_OK(ecr_model_load(g_model, &m));
    if (!m) return;
    ecr_config c = *ecr_model_config(m);
    CHECK(c.ecr_dim == TD);
    c.ecr_dim = 0;
    CHECK_OK(ecr_model_create(&c, 99, &bare));
    if (!bare) { ecr_model_free(m); return; }
    for (size_t i = 0; i < ecr_model_num_tensors(bare); i++) { /* every tensor but the projection */
        const ecr_param_info *t = ecr_model_tensor(bare, i), *s = ecr_model_find_tensor(m, t->name);
        CHECK(s && s->numel == t->numel);
        if (s) memcpy(ecr_model_params(bare) + t->offset, ecr_model_params(m) + s->offset, t->numel * sizeof(float));
    }
    CHECK(ecr_model_find_tensor(bare, "ecr.proj.weight") == NULL);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/bare", g_iso);
    CHECK_OK(ecr_model_save(bare, dir, NULL, NULL));
    CHECK_OK(ecr_model_load(dir, &loaded));
    const ecr_param_info *pr = ecr_model_find_tensor(m, "ecr.proj.weight");
    for (int greedy = 0; greedy <= 1; greedy++) {
        float temp = greedy ? 0.0f : 1.0f;
        collect a, b, l, p;
        gen(m, temp, &a);
        gen(bare, temp, &b);
        if (loaded) gen(loaded, temp, &l);
        /* poison P: generation must not notice */
        float keep = 0;
        if (pr) {
            keep = ecr_model_params(m)[pr->offset];
            for (size_t j = 0; j < pr->numel; j++) ecr_model_params(m)[pr->offset + j] = NAN;
        }
        gen(m, temp, &p);
        CHECK(a.n == 40 && b.n == 40 && p.n == 40);
        CHECK(!memcmp(a.ids, b.ids, sizeof a.ids));
        CHECK(!loaded || !memcmp(a.ids, l.ids, sizeof a.ids));
        CHECK(!memcmp(a.ids, p.ids, sizeof a.ids));
        /* restore P from the file for the next round */
        ecr_model_free(m);
        m = NULL;
        CHECK_OK(ecr_model_load(g_model, &m));
        if (!m) break;
        pr = ecr_model_find_tensor(m, "ecr.proj.weight");
        (void)keep;
    }
    /* the same next-token logits step by step, bit for bit */
    ecr_kv_cache *ca = NULL, *cb = NULL;
    int V = c.vocab_size;
    float *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    if (m) CHECK_OK(ecr_kv_cache_create(m, 16, &ca));
    CHECK_OK(ecr_kv_cache_create(bare, 16, &cb));
    int same = ca && cb;
    for (int t = 0; same && t < 16; t++) {
        int32_t tok = t == 0 ? 0 : 2 + (t * 37) % (V - 2);
        CHECK_OK(ecr_model_step(m, ca, tok, la));
        CHECK_OK(ecr_model_step(bare, cb, tok, lb));
        same = !memcmp(la, lb, (size_t)V * sizeof *la);
    }
    CHECK(same);
    free(la);
    free(lb);
    ecr_kv_cache_free(ca);
    ecr_kv_cache_free(cb);
    ecr_model_free(m);
    ecr_model_free(bare);
    ecr_model_free(loaded);
}

/* ecr_embed: rows, --raw h equals the text's pooled h alone, u = normalise(P h). */
static void test_embed(void) {
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_load(g_model, &m));
    if (!m) return;
    int d = ecr_model_config(m)->dim;
    ecr_embed_opts eo;
    ecr_embed_opts_default(&eo);
    eo.quiet = 1;
    eo.raw = 1;
    float *h = NULL, *u = NULL;
    int64_t ch = 0, cu = 0;
    int ph = -1, pu = -1;
    CHECK_OK(ecr_embed(m, g_d, &eo, &h, &ch, &ph));
    eo.raw = 0;
    CHECK_OK(ecr_embed(m, g_d, &eo, &u, &cu, &pu));
    CHECK(ch == d && ph == 0 && cu == TD && pu == 1);
    if (!h || !u) { free(h); free(u); ecr_model_free(m); return; }
    /* a few texts, each alone in a batch of one row */
    ecr_batch *b = NULL;
    CHECK_OK(ecr_batch_create(1, 64, &b));
    double worst = 0, scale = 0;
    for (size_t k = 0; b && k < g_d->n_texts; k += 37) {
        int n = (int)(g_d->offsets[k + 1] - g_d->offsets[k]);
        if (n > 63) n = 63;
        for (int s = 0; s < 64; s++) {
            b->tokens[s] = 1, b->targets[s] = -1, b->pos[s] = 0, b->text[s] = -1;
            if (s > n) continue;
            b->tokens[s] = s == 0 ? 0 : (int32_t)ecr_data_token(g_d, (size_t)g_d->offsets[k] + (size_t)s - 1);
            b->pos[s] = s, b->text[s] = 0;
        }
        b->n_texts = 1;
        b->text_id[0] = (int64_t)k;
        const float *pooled = NULL;
        CHECK_OK(ecr_model_encode(m, b, &pooled));
        for (int j = 0; pooled && j < d; j++) {
            double e = fabs((double)pooled[j] - h[k * d + j]);
            worst = e > worst ? e : worst;
            scale = fabs(pooled[j]) > scale ? fabs(pooled[j]) : scale;
        }
    }
    fprintf(stderr, "    embed: text alone vs packed, max |diff| %.2e (values up to %.2f)\n", worst, scale);
    CHECK(worst < 1e-5 && scale > 0.1);
    /* u = P h / |P h| */
    const ecr_param_info *pr = ecr_model_find_tensor(m, "ecr.proj.weight");
    const float *P = ecr_model_params(m) + pr->offset;
    double werr = 0;
    for (size_t i = 0; i < g_d->n_texts; i++) {
        double z[TD], nz = 0;
        for (int a = 0; a < TD; a++) {
            z[a] = 0;
            for (int j = 0; j < d; j++) z[a] += (double)P[a * d + j] * h[i * d + j];
            nz += z[a] * z[a];
        }
        for (int a = 0; a < TD; a++) {
            double e = fabs(z[a] / sqrt(nz) - u[i * TD + a]);
            werr = e > werr ? e : werr;
        }
    }
    CHECK(werr < 1e-6);
    /* without a projection, the raw h; project refuses */
    ecr_config c = *ecr_model_config(m);
    c.ecr_dim = 0;
    ecr_model *bare = NULL;
    CHECK_OK(ecr_model_create(&c, 1, &bare));
    float *x = NULL;
    if (bare) CHECK_OK(ecr_embed(bare, g_d, &eo, &x, &cu, &pu));
    CHECK(cu == d && pu == 0);
    float tmp[TD];
    if (bare) CHECK_STATUS(ecr_model_project(bare, h, 1, tmp), ECR_E_INVALID);
    free(x);
    ecr_model_free(bare);
    ecr_batch_free(b);
    free(h);
    free(u);
    ecr_model_free(m);
}

int main(void) {
    if (make_inputs()) {
        RUN(test_isolated_ecr_training);
        RUN(test_contrastive_learns);
        RUN(test_refusals);
        RUN(test_decoding_untouched);
        RUN(test_embed);
    }
    ecr_data_free(g_d);
    if (g_iso[0]) tl_rm_tree(g_iso);
    if (g_work[0]) tl_rm_tree(g_work);
    return test_finish("test_ecr_train");
}
