/* test_train.c — the trainer on a tiny model and a small prepared file: exact resume (also
 * with the contrastive objective, the ECR regulariser and the baselines KD, feat and RKD),
 * NaN stop with the checkpoint
 * intact, falling loss, option checks, LM evaluation and generation with the KV cache. */
#include "test.h"
#include "testlib.h"

#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[512];        /* temp folder of this test run              */
static char g_data[600];       /* prepared training data                     */
static char g_tok[600];

/* ---- fixture: the first 400 lo10 validation texts, a 320-token BPE, prepared ------------ */

static int make_fixture(void) {
    snprintf(g_dir, sizeof g_dir, "%s/ecr_test_train_XXXXXX", P_tmpdir);
    return tl_lo10_small(g_dir, 400, "small.safetensors", g_tok, sizeof g_tok, g_data, sizeof g_data);
}

/* Options of a very small run into g_dir/name. */
static void small_opts(ecr_train_opts *o, const char *name, char *out, size_t cap) {
    ecr_train_opts_default(o);
    o->precision = ECR_PRECISION_FP32; /* fp32 on every CPU; test_resume_bf16 sets bf16 */
    snprintf(out, cap, "%s/%s", g_dir, name);
    o->data_path = g_data;
    o->out_dir = out;
    CHECK_OK(ecr_config_preset("tiny", &o->config));
    CHECK_OK(ecr_config_set(&o->config, "dim=32"));
    CHECK_OK(ecr_config_set(&o->config, "n_layers=1"));
    CHECK_OK(ecr_config_set(&o->config, "n_heads=2"));
    CHECK_OK(ecr_config_set(&o->config, "hidden_dim=64"));
    CHECK_OK(ecr_config_set(&o->config, "max_seq_len=64"));
    o->config.vocab_size = 0;
    o->tokens_per_step = 256; /* 4 rows of 64 */
    o->lr = 3e-3f;
    o->warmup = 2;
    o->steps = 20;
    o->threads = 1;
    o->quiet = 1;
}

static char *file_text(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, fp) != (size_t)n) { free(b); b = NULL; }
    fclose(fp);
    if (b) { b[n] = 0; if (len) *len = (size_t)n; }
    return b;
}

/* 1 if every tensor of a/FILE and b/FILE has the same bytes. */
static int same_tensors(const char *dir_a, const char *dir_b, const char *file) {
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/%s", dir_a, file);
    snprintf(pb, sizeof pb, "%s/%s", dir_b, file);
    ecr_st_file *a = NULL, *b = NULL;
    CHECK_OK(ecr_st_open(pa, &a));
    CHECK_OK(ecr_st_open(pb, &b));
    int same = a && b && ecr_st_count(a) == ecr_st_count(b) && ecr_st_count(a) > 0;
    for (size_t i = 0; same && i < ecr_st_count(a); i++) {
        const ecr_tensor_view *x = ecr_st_at(a, i), *y = ecr_st_find(b, x->name);
        same = y && x->nbytes == y->nbytes && !memcmp(x->data, y->data, x->nbytes);
        if (!same) fprintf(stderr, "    tensor %s differs between %s and %s\n", x->name, pa, pb);
    }
    ecr_st_close(a);
    ecr_st_close(b);
    return same;
}

/* Losses of the step records of a log, by step (loss[s] for s in 1..max). */
static int log_losses(const char *dir, double *loss, int max, int *n_val) {
    char p[700];
    snprintf(p, sizeof p, "%s/log.jsonl", dir);
    char *t = file_text(p, NULL);
    int n = 0;
    *n_val = 0;
    for (char *line = t; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int step = 0;
        double x = 0;
        if (sscanf(line, "{\"step\":%d,\"loss\":%lf", &step, &x) == 2 && step >= 1 && step <= max) {
            loss[step] = x;
            n++;
        } else if (strstr(line, "\"val_loss\"")) {
            (*n_val)++;
        }
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(t);
    return n;
}

static int64_t state_step(const char *dir) {
    char p[700];
    snprintf(p, sizeof p, "%s/train_state.safetensors", dir);
    ecr_st_file *f = NULL;
    if (ecr_st_open(p, &f)) return -1;
    const ecr_tensor_view *v = ecr_st_find(f, "step");
    int64_t s = -1;
    if (v && v->dtype == ECR_I64 && v->numel == 1) memcpy(&s, v->data, sizeof s);
    ecr_st_close(f);
    return s;
}

/* ---- tests --------------------------------------------------------------------------- */

/* 20 steps straight into a (PREFIXstraight) and 10 steps, a stop, then --resume to 20 into
 * b (PREFIXresumed), 2 threads (parallel reductions too must repeat exactly), in precision
 * p: b's parameters and AdamW state equal a's bit for bit. *o is left as b's resume. */
static void straight_and_resumed(ecr_train_opts *o, ecr_precision p, const char *prefix, char a[600],
                                 char b[600]) {
    char name[64];
    snprintf(name, sizeof name, "%sstraight", prefix);
    small_opts(o, name, a, 600);
    o->precision = p;
    o->threads = 2;
    CHECK_OK(ecr_train(o));
    snprintf(name, sizeof name, "%sresumed", prefix);
    small_opts(o, name, b, 600);
    o->precision = p;
    o->threads = 2;
    o->stop_after = 10;
    CHECK_OK(ecr_train(o));
    CHECK(state_step(b) == 10);
    o->stop_after = 0;
    o->resume = 1;
    CHECK_OK(ecr_train(o));
    CHECK(state_step(b) == 20);
    CHECK(same_tensors(a, b, "model.safetensors"));
    CHECK(same_tensors(a, b, "train_state.safetensors"));
}

/* 20 steps straight == 10 steps, stop, --resume to 20 (bit-identical parameters and AdamW
 * state, same losses). And: a NaN at step 13 after a checkpoint at step 10 keeps that
 * checkpoint; resuming from it truncates the log and again matches the straight run. */
static void test_resume_exact(void) {
    ecr_train_opts o;
    char a[600], b[600], c[600];
    straight_and_resumed(&o, ECR_PRECISION_FP32, "", a, b);

    small_opts(&o, "crashed", c, sizeof c);
    o.threads = 2;
    o.save_every = 5;
    o.nan_at_step = 13;
    CHECK_STATUS(ecr_train(&o), ECR_E_RUNTIME);
    CHECK_MSG(strstr(ecr_last_error(), "step 13: loss is NaN; last good checkpoint at step 10 kept") != NULL,
              "message: %s", ecr_last_error());
    CHECK(state_step(c) == 10);
    o.nan_at_step = 0;
    o.resume = 1;
    CHECK_OK(ecr_train(&o));
    CHECK(same_tensors(a, c, "model.safetensors"));
    CHECK(same_tensors(a, c, "train_state.safetensors"));

    double la[21] = {0}, lb[21] = {0}, lc[21] = {0};
    int va = 0, vb = 0, vc = 0;
    CHECK(log_losses(a, la, 20, &va) == 20);
    CHECK(log_losses(b, lb, 20, &vb) == 20); /* one record per step, none twice */
    CHECK(log_losses(c, lc, 20, &vc) == 20);
    int same = 1;
    for (int s = 1; s <= 20; s++) same &= la[s] == lb[s] && la[s] == lc[s];
    CHECK(same);
    CHECK(la[20] < la[1]);
}

/* Anchors for the fixture data: synthetic teacher vectors that depend on the text's group
 * (plus noise), K = 6, soft codes M = 3, written to g_dir/anchors.safetensors; the vectors
 * themselves to g_dir/teacher.npy (for --feat / --rkd). */
static char g_anchors[600], g_vectors[600];
static int make_anchors(void) {
    ecr_data *d = NULL;
    CHECK_OK(ecr_data_open(g_data, &d));
    if (!d) return 0;
    enum { D = 12 };
    float *emb = malloc(d->n_texts * D * sizeof *emb);
    for (size_t i = 0; i < d->n_texts; i++) {
        uint64_t s = (uint64_t)(d->group[i] + 7) * 0x9E3779B97F4A7C15ULL, t = i * 31 + 5;
        for (int j = 0; j < D; j++) {
            s ^= s >> 29, s *= 0xBF58476D1CE4E5B9ULL, t ^= t >> 31, t *= 0x94D049BB133111EBULL;
            emb[i * D + j] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) +
                             0.1f * (float)((double)(t >> 11) / 9007199254740992.0 - 0.5);
        }
    }
    ecr_anchors_opts ao;
    ecr_anchors_opts_default(&ao);
    ao.k = 6, ao.soft = 3, ao.quiet = 1, ao.source = "synthetic.npy";
    ecr_anchors *a = NULL;
    CHECK_OK(ecr_anchors_fit(emb, (int64_t)d->n_texts, D, &ao, &a));
    snprintf(g_anchors, sizeof g_anchors, "%s/anchors.safetensors", g_dir);
    if (a) CHECK_OK(ecr_anchors_save(a, g_anchors));
    snprintf(g_vectors, sizeof g_vectors, "%s/teacher.npy", g_dir);
    CHECK_OK(ecr_npy_write(g_vectors, emb, (int64_t)d->n_texts, D));
    ecr_anchors_free(a);
    free(emb);
    ecr_data_free(d);
    return a != NULL;
}

/* Log records of a run as lines (for exact comparison of the loss fields). */
static int same_log_losses(const char *dir_a, const char *dir_b, int steps, const char *field) {
    char pa[700], pb[700];
    snprintf(pa, sizeof pa, "%s/log.jsonl", dir_a);
    snprintf(pb, sizeof pb, "%s/log.jsonl", dir_b);
    char *ta = file_text(pa, NULL), *tb = file_text(pb, NULL);
    int n = 0, same = ta && tb;
    char key[64];
    snprintf(key, sizeof key, "\"%s\":", field);
    for (char *x = ta, *y = tb; same && x && y && (x = strstr(x, key)) && (y = strstr(y, key));) {
        x += strlen(key), y += strlen(key);
        same = strtod(x, NULL) == strtod(y, NULL);
        n++;
    }
    free(ta);
    free(tb);
    return same && n == steps;
}

/* Rewrites DIR/train_state.safetensors as the first state format: no "params" tensor,
 * format "ecr-train-state-1", everything else as it was. */
static void state_to_v1(const char *dir) {
    char path[700], tmp[720];
    snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
    snprintf(tmp, sizeof tmp, "%s/v1.safetensors", dir);
    ecr_st_file *f = NULL;
    ecr_st_writer *w = NULL;
    CHECK_OK(ecr_st_open(path, &f));
    CHECK_OK(ecr_st_writer_create(&w));
    for (size_t i = 0; i < ecr_st_count(f); i++) {
        const ecr_tensor_view *v = ecr_st_at(f, i);
        if (strcmp(v->name, "params") != 0) CHECK_OK(ecr_st_writer_add(w, v->name, v->dtype, v->ndim, v->shape, v->data));
    }
    for (size_t i = 0; i < ecr_st_meta_count(f); i++) {
        const char *k, *v;
        ecr_st_meta_at(f, i, &k, &v);
        CHECK_OK(ecr_st_writer_meta(w, k, strcmp(k, "format") ? v : "ecr-train-state-1"));
    }
    CHECK_OK(ecr_st_writer_write(w, tmp));
    ecr_st_writer_free(w);
    ecr_st_close(f);
    CHECK(rename(tmp, path) == 0);
}

/* A run into g_dir/name (dir) stopped with a checkpoint at step 10 of 20, its state made
 * of the first format when v1, the model files of folder `ahead` (if not NULL) copied over
 * its own; *o is left as the resume to 20. */
static void stopped_at_10(ecr_train_opts *o, const char *name, char dir[600], int v1, const char *ahead) {
    small_opts(o, name, dir, 600);
    o->threads = 2;
    o->stop_after = 10;
    CHECK_OK(ecr_train(o));
    if (v1) state_to_v1(dir);
    if (ahead) {
        char cmd[1400];
        snprintf(cmd, sizeof cmd, "cp '%s/model.safetensors' '%s/model.safetensors'", ahead, dir);
        CHECK(system(cmd) == 0);
    }
    o->stop_after = 0;
    o->resume = 1;
}

/* The state holds the weights and commits the checkpoint: model files one checkpoint ahead
 * of it (a kill between the two renames) are rewritten from it on resume, and the run ends
 * as the straight one. A state of the first format (no weights) still resumes when the
 * model files hold its step, and is refused, naming both files, when they do not. */
static void test_resume_state_formats(void) {
    ecr_train_opts o;
    char a[600], b[600], c[600];
    small_opts(&o, "fmt_straight", a, sizeof a);
    o.threads = 2;
    CHECK_OK(ecr_train(&o));
    /* b: stopped at 10, then the model files of a later checkpoint (those of the straight
     * run at 20) put beside the state of step 10 */
    stopped_at_10(&o, "fmt_ahead", b, 0, a);
    CHECK_OK(ecr_train(&o));
    CHECK(same_tensors(a, b, "model.safetensors"));
    CHECK(same_tensors(a, b, "train_state.safetensors"));
    /* c: the first format */
    stopped_at_10(&o, "fmt_v1", c, 1, NULL);
    CHECK_OK(ecr_train(&o));
    CHECK(same_tensors(a, c, "model.safetensors"));
    /* c again, stopped at 10 as format 1, with model files of step 20 */
    stopped_at_10(&o, "fmt_v1_ahead", c, 1, a);
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    CHECK_MSG(strstr(ecr_last_error(), "holds step 20 but") && strstr(ecr_last_error(), "holds step 10 (interrupted"),
              "message: %s", ecr_last_error());
}

/* Exact resume with the extra terms: contrastive, ECR (hard), both (soft codes), KD (from a
 * teacher trained here), and everything at once (contrastive, ECR, KD, feat, RKD). */
static void test_resume_objectives(void) {
    if (!make_anchors()) return;
    ecr_train_opts o;
    char teacher[600];
    small_opts(&o, "teacher", teacher, sizeof teacher);
    o.steps = 3;
    CHECK_OK(ecr_train(&o));
    enum { NV = 5 };
    static const char *names[NV] = {"ctr", "ecr", "both", "kd", "all"};
    static const int ctr[NV] = {1, 0, 1, 0, 1}, ecr[NV] = {0, 1, 1, 0, 1}, kd[NV] = {0, 0, 0, 1, 1},
                     vec[NV] = {0, 0, 0, 0, 1};
    for (int variant = 0; variant < NV; variant++) {
        char a[600], b[600], na[64], nb[64];
        snprintf(na, sizeof na, "%s_straight", names[variant]);
        snprintf(nb, sizeof nb, "%s_resumed", names[variant]);
        for (int run = 0; run < 2; run++) {
            small_opts(&o, run ? nb : na, run ? b : a, sizeof a);
            o.steps = 12;
            o.threads = 2;
            if (ctr[variant]) o.objective = ECR_TRAIN_LM_CONTRASTIVE, o.group_size = 3;
            if (ecr[variant]) o.anchors_path = g_anchors, o.ecr_weight = 0.5f, o.ecr_soft = variant == 2;
            if (kd[variant]) o.kd_teacher = teacher, o.kd_alpha = 0.3f, o.kd_temp = 1.5f;
            if (vec[variant]) o.feat_path = g_vectors, o.rkd_path = g_vectors, o.rkd_weight = 0.2f;
            if (run) o.stop_after = 5;
            CHECK_OK(ecr_train(&o));
            if (run) {
                CHECK(state_step(b) == 5);
                o.stop_after = 0;
                o.resume = 1;
                CHECK_OK(ecr_train(&o));
            }
        }
        CHECK(state_step(b) == 12);
        CHECK_MSG(same_tensors(a, b, "model.safetensors"), "%s: model differs after resume", names[variant]);
        CHECK_MSG(same_tensors(a, b, "train_state.safetensors"), "%s: state differs after resume", names[variant]);
        CHECK(same_log_losses(a, b, 12, "loss"));
        CHECK(same_log_losses(a, b, 12, "total"));
        if (ctr[variant]) CHECK(same_log_losses(a, b, 12, "contrastive"));
        if (ecr[variant]) CHECK(same_log_losses(a, b, 12, "ecr"));
        if (kd[variant]) CHECK(same_log_losses(a, b, 12, "kd"));
        if (vec[variant]) CHECK(same_log_losses(a, b, 12, "feat") && same_log_losses(a, b, 12, "rkd"));
        /* the projection exists exactly when a term uses it; the metadata says what was used */
        char p[700];
        snprintf(p, sizeof p, "%s/model.safetensors", a);
        ecr_st_file *f = NULL;
        CHECK_OK(ecr_st_open(p, &f));
        if (f) {
            CHECK((ecr_st_find(f, "ecr.proj.weight") != NULL) == (ecr[variant] || vec[variant]));
            const char *k = ecr_st_meta(f, "ecr_anchors_k"), *obj = ecr_st_meta(f, "objective");
            CHECK(!ecr[variant] ? k == NULL : (k && !strcmp(k, "6")));
            CHECK(!ctr[variant] ? obj == NULL : (obj && !strcmp(obj, "lm+contrastive")));
            if (ecr[variant]) {
                const char *dim = ecr_st_meta(f, "ecr_anchors_dim"), *tau = ecr_st_meta(f, "ecr_tau");
                const char *sh = ecr_st_meta(f, "ecr_anchors_source_hash");
                CHECK(dim && !strcmp(dim, "12") && tau && fabs(atof(tau) - 0.05) < 1e-7 && sh && strlen(sh) == 16);
            }
            const char *ka = ecr_st_meta(f, "kd_alpha"), *kh = ecr_st_meta(f, "kd_teacher_hash");
            CHECK(!kd[variant] ? ka == NULL : (ka && (float)atof(ka) == 0.3f && kh && strlen(kh) == 16));
            const char *fd = ecr_st_meta(f, "feat_dim"), *rw = ecr_st_meta(f, "rkd_weight");
            CHECK(!vec[variant] ? fd == NULL && rw == NULL : (fd && !strcmp(fd, "12") && rw && (float)atof(rw) == 0.2f));
            ecr_st_close(f);
        }
        /* resuming without the extra term (or with another weight) is refused */
        small_opts(&o, nb, b, sizeof b);
        o.steps = 14;
        o.resume = 1;
        if (variant == 2 || variant == 4) {
            o.objective = ECR_TRAIN_LM_CONTRASTIVE, o.group_size = 3;
            o.anchors_path = g_anchors, o.ecr_weight = 0.4f, o.ecr_soft = variant == 2;
        }
        if (variant == 4) {
            o.ecr_weight = 0.5f;
            o.kd_teacher = teacher, o.kd_alpha = 0.3f, o.kd_temp = 1.5f;
            o.feat_path = g_vectors, o.rkd_path = g_vectors, o.rkd_weight = 0.25f;
        }
        static const char *want[NV] = {"option 'objective' was lm+contrastive in the checkpoint, now off",
                                       "option 'ecr_", "option 'ecr_weight' was 0.5",
                                       "option 'kd_teacher_hash' was", "option 'rkd_weight' was 0.2"};
        CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
        CHECK_MSG(strstr(ecr_last_error(), want[variant]) != NULL, "message: %s", ecr_last_error());
    }
    /* the contrastive log carries the term, the ECR log both; the last every term */
    char p[700];
    snprintf(p, sizeof p, "%s/both_straight/log.jsonl", g_dir);
    char *t = file_text(p, NULL);
    CHECK(t && strstr(t, "\"contrastive\":") && strstr(t, "\"ecr\":") && strstr(t, "\"total\":"));
    free(t);
    snprintf(p, sizeof p, "%s/all_straight/log.jsonl", g_dir);
    t = file_text(p, NULL);
    CHECK(t && strstr(t, "\"contrastive\":") && strstr(t, "\"ecr\":") && strstr(t, "\"kd\":") &&
          strstr(t, "\"feat\":") && strstr(t, "\"rkd\":") && strstr(t, "\"total\":"));
    free(t);
}

static void test_nan_keeps_checkpoint(void) {
    ecr_train_opts o;
    char d[600];
    small_opts(&o, "nan", d, sizeof d);
    o.save_every = 5;
    o.nan_at_step = 7;
    CHECK_STATUS(ecr_train(&o), ECR_E_RUNTIME);
    CHECK_MSG(strstr(ecr_last_error(), "step 7: loss is NaN; last good checkpoint at step 5 kept") != NULL,
              "message: %s", ecr_last_error());
    CHECK(state_step(d) == 5);
    /* the model folder still loads and holds step 5 */
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_load(d, &m));
    ecr_model_free(m);
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", d);
    ecr_st_file *f = NULL;
    CHECK_OK(ecr_st_open(p, &f));
    CHECK(f && ecr_st_meta(f, "ecr_step") && !strcmp(ecr_st_meta(f, "ecr_step"), "5"));
    ecr_st_close(f);

    /* a real divergence: an absurd learning rate blows the weights up */
    char e[600];
    small_opts(&o, "diverge", e, sizeof e);
    o.lr = 1e30f;
    o.warmup = 0;
    o.grad_clip = 0;
    CHECK_STATUS(ecr_train(&o), ECR_E_RUNTIME);
    CHECK_MSG(strstr(ecr_last_error(), "is NaN") || strstr(ecr_last_error(), "is infinite"),
              "message: %s", ecr_last_error());
    CHECK(strstr(ecr_last_error(), "no checkpoint was written") != NULL);
    CHECK(state_step(e) == -1);
}

static void test_loss_decreases_and_validation(void) {
    ecr_train_opts o;
    char d[600];
    small_opts(&o, "learn", d, sizeof d);
    o.steps = 40;
    o.valid_path = g_data;
    o.eval_every = 20;
    CHECK_OK(ecr_train(&o));
    double l[41] = {0};
    int nv = 0;
    CHECK(log_losses(d, l, 40, &nv) == 40);
    CHECK(nv == 2); /* steps 20 and 40 */
    double first = (l[1] + l[2] + l[3]) / 3, last = (l[38] + l[39] + l[40]) / 3;
    fprintf(stderr, "    loss %.3f -> %.3f over 40 steps\n", first, last);
    CHECK(first > 5.0 && first < 6.5); /* ~ ln 320 = 5.77 at initialisation */
    CHECK(last < first - 1.0);
    /* every record has all the fields */
    char p[700];
    snprintf(p, sizeof p, "%s/log.jsonl", d);
    char *t = file_text(p, NULL);
    CHECK(t && strstr(t, "\"grad_norm\":") && strstr(t, "\"clipped\":") && strstr(t, "\"tokens_per_s\":") &&
          strstr(t, "\"elapsed_s\":") && strstr(t, "\"val_bpb\":") && strstr(t, "\"lr\":"));
    free(t);
    /* the folder is a model folder */
    snprintf(p, sizeof p, "%s/config.json", d);
    CHECK(access(p, R_OK) == 0);
    snprintf(p, sizeof p, "%s/tokenizer.json", d);
    size_t n1 = 0, n2 = 0;
    char *t1 = file_text(p, &n1), *t2 = file_text(g_tok, &n2);
    CHECK(t1 && t2 && n1 == n2 && !memcmp(t1, t2, n1));
    free(t1);
    free(t2);
}

static void test_option_checks(void) {
    ecr_train_opts o;
    char d[600];
    small_opts(&o, "opts", d, sizeof d);
    o.steps = 2;
    CHECK_OK(ecr_train(&o));
    /* a fresh run into a folder that holds one is refused */
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "--resume") != NULL);
    /* resume with another learning rate is refused, naming the option */
    o.resume = 1;
    o.steps = 4;
    o.lr = 1e-2f;
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "option 'lr'") != NULL);
    /* the vocabulary comes from the data */
    char e[600];
    small_opts(&o, "vocab", e, sizeof e);
    o.config.vocab_size = 999;
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "vocab") != NULL);
    /* resume without a checkpoint */
    small_opts(&o, "nothing", e, sizeof e);
    o.resume = 1;
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    /* --tokenizer: the file the data was prepared with is accepted, another one refused */
    small_opts(&o, "tok_ok", e, sizeof e);
    o.steps = 1;
    o.tokenizer_path = g_tok;
    CHECK_OK(ecr_train(&o));
    char other[700];
    snprintf(other, sizeof other, "%s/other_tokenizer.json", g_dir);
    size_t n = 0;
    char *text = file_text(g_tok, &n);
    FILE *fp = fopen(other, "wb");
    if (fp && text) { fwrite(text, 1, n, fp); fputs("\n", fp); }
    if (fp) fclose(fp);
    free(text);
    small_opts(&o, "tok_bad", e, sizeof e);
    o.steps = 1;
    o.tokenizer_path = other;
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "not the tokenizer") != NULL);
    /* epochs: steps = the batches of one epoch (400 texts do not fit one step) */
    small_opts(&o, "epoch", e, sizeof e);
    o.steps = 0;
    o.epochs = 0.5;
    CHECK_OK(ecr_train(&o));
    ecr_data *pd = NULL;
    CHECK_OK(ecr_data_open(g_data, &pd));
    ecr_batcher_opts bo;
    ecr_batcher_opts_default(&bo);
    bo.B = 4;
    bo.T = 64;
    bo.seed = o.seed;
    ecr_batcher *b = NULL;
    int64_t per_epoch = 0;
    if (pd) CHECK_OK(ecr_batcher_create(pd, &bo, &b));
    if (b) CHECK_OK(ecr_batcher_epoch_batches(b, 0, &per_epoch));
    CHECK(per_epoch > 4);
    CHECK(state_step(e) == (per_epoch + 1) / 2);
    ecr_batcher_free(b);
    ecr_data_free(pd);
}

/* Text losses do not depend on how texts are packed: evaluation with two batch shapes
 * gives the same sums (attention stays inside each text). */
static void test_eval_lm(void) {
    ecr_train_opts o;
    char d[600];
    small_opts(&o, "eval", d, sizeof d);
    o.steps = 5;
    CHECK_OK(ecr_train(&o));
    ecr_model *m = NULL;
    ecr_data *data = NULL;
    CHECK_OK(ecr_model_load(d, &m));
    CHECK_OK(ecr_data_open(g_data, &data));
    if (!m || !data) { ecr_model_free(m); ecr_data_free(data); return; }
    ecr_lm_eval e1, e2;
    CHECK_OK(ecr_eval_lm(m, data, 64, 256, 1, &e1));
    CHECK_OK(ecr_eval_lm(m, data, 64, 64 * 7, 1, &e2));
    int64_t tokens = 0, bytes = 0, trunc = 0;
    for (size_t i = 0; i < data->n_texts; i++) {
        int64_t n = data->offsets[i + 1] - data->offsets[i];
        tokens += n < 63 ? n + 1 : 64;
        trunc += n > 63;
        bytes += data->n_bytes[i];
    }
    CHECK(e1.overall.texts == (int64_t)data->n_texts);
    CHECK(e1.overall.tokens == tokens);
    CHECK(e1.n_truncated == trunc);
    if (trunc == 0) CHECK(e1.overall.bytes == bytes);
    else CHECK(e1.overall.bytes < bytes);
    CHECK_CLOSE(e1.overall.loss_sum, e2.overall.loss_sum, 1e-4 * e1.overall.loss_sum);
    ecr_lm_stats sum = {0};
    for (int i = 0; i < e1.n_langs; i++) {
        sum.loss_sum += e1.per_lang[i].loss_sum;
        sum.tokens += e1.per_lang[i].tokens;
        sum.texts += e1.per_lang[i].texts;
    }
    CHECK(e1.n_langs == 10);
    CHECK(sum.tokens == e1.overall.tokens && sum.texts == e1.overall.texts);
    CHECK_CLOSE(sum.loss_sum, e1.overall.loss_sum, 1e-6 * e1.overall.loss_sum);
    CHECK_CLOSE(ecr_lm_bpb(&e1.overall), e1.overall.loss_sum / log(2.0) / (double)e1.overall.bytes, 1e-12);
    CHECK_CLOSE(ecr_lm_ppl(&e1.overall), exp(e1.overall.loss_sum / (double)e1.overall.tokens), 1e-9);
    ecr_lm_eval_release(&e1);
    ecr_lm_eval_release(&e2);
    ecr_lm_eval_release(NULL);
    ecr_model_free(m);
    ecr_data_free(data);
}

typedef struct collect {
    int32_t ids[64];
    int n;
} collect;
static int collect_token(void *p, int32_t id) {
    collect *c = p;
    if (c->n < 64) c->ids[c->n++] = id;
    return 0;
}

/* Greedy generation with the KV cache picks, at every position, the argmax of the full
 * forward pass over the same tokens. */
static void test_generate_greedy(void) {
    char d[600];
    snprintf(d, sizeof d, "%s/eval", g_dir); /* trained by test_eval_lm */
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_load(d, &m));
    if (!m) return;
    int V = ecr_model_config(m)->vocab_size;
    int32_t prompt[3] = {0, 40, 41};
    ecr_gen_opts go;
    ecr_gen_opts_default(&go);
    go.temperature = 0;
    go.max_tokens = 12;
    collect c = {{0}, 0};
    size_t n = 0;
    CHECK_OK(ecr_generate(m, prompt, 3, -1 /* never stop early */, &go, collect_token, &c, &n));
    CHECK(n == 12 && c.n == 12);
    /* the same sequence through the training forward pass */
    ecr_batch *b = NULL;
    CHECK_OK(ecr_batch_create(1, 15, &b));
    if (b) {
        int32_t seq[15];
        memcpy(seq, prompt, sizeof prompt);
        memcpy(seq + 3, c.ids, 12 * sizeof *seq);
        for (int t = 0; t < 15; t++) {
            b->tokens[t] = seq[t];
            b->targets[t] = t < 14 ? seq[t + 1] : 0;
            b->pos[t] = t;
            b->text[t] = 0;
        }
        b->n_texts = 1;
        b->text_id[0] = 0;
        ecr_forward_out fo;
        CHECK_OK(ecr_model_forward(m, b, &fo));
        int agree = 0;
        for (int t = 2; t < 14; t++) {
            const float *lg = fo.logits + (size_t)t * V;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (lg[v] > lg[best]) best = v;
            agree += best == seq[t + 1];
        }
        CHECK_MSG(agree == 12, "greedy generation agrees with the forward pass at %d of 12 positions", agree);
    }
    ecr_batch_free(b);
    /* sampling is deterministic in the seed */
    go.temperature = 1.0f;
    collect c1 = {{0}, 0}, c2 = {{0}, 0};
    CHECK_OK(ecr_generate(m, prompt, 3, -1, &go, collect_token, &c1, NULL));
    CHECK_OK(ecr_generate(m, prompt, 3, -1, &go, collect_token, &c2, NULL));
    CHECK(c1.n == 12 && c2.n == 12 && !memcmp(c1.ids, c2.ids, sizeof c1.ids));
    /* a prompt longer than the context is refused */
    int32_t longp[65] = {0};
    CHECK_STATUS(ecr_generate(m, longp, 65, 0, &go, NULL, NULL, NULL), ECR_E_INVALID);
    ecr_model_free(m);
}

static void test_sampling(void) {
    ecr_gen_opts o;
    ecr_gen_opts_default(&o);
    o.temperature = 1;
    o.top_k = 0;
    o.top_p = 1;
    uint64_t rng = 7;
    int hits = 0;
    for (int i = 0; i < 20000; i++) {
        float lg[2] = {0.0f, (float)log(3.0)}; /* p = 0.25, 0.75 */
        hits += ecr_sample_logits(lg, 2, &o, &rng) == 1;
    }
    CHECK_CLOSE(hits / 20000.0, 0.75, 0.015);
    o.top_p = 0.5f; /* the nucleus is the top token alone */
    for (int i = 0; i < 100; i++) {
        float lg[2] = {0.0f, (float)log(3.0)};
        CHECK(ecr_sample_logits(lg, 2, &o, &rng) == 1);
    }
    o.top_p = 1;
    o.top_k = 1;
    float lg3[3] = {1.0f, 5.0f, 2.0f};
    CHECK(ecr_sample_logits(lg3, 3, &o, &rng) == 1);
    o.temperature = 0;
    float ties[3] = {2.0f, 2.0f, 1.0f};
    CHECK(ecr_sample_logits(ties, 3, &o, &rng) == 0);
}

/* The same in bf16 (the reference engine where the CPU has no bf16 kernels): 20 steps
 * straight == 10, stop, resume to 20, bit for bit; a NaN stops a bf16 run keeping its last
 * checkpoint; resuming it in fp32 is refused with a message naming the option; and the
 * bf16 run is not the fp32 run (the products really ran in bf16). */
static void test_resume_bf16(void) {
    ecr_train_opts o;
    char a[600], b[600], c[600], f[600];
    straight_and_resumed(&o, ECR_PRECISION_BF16, "bf16_", a, b);

    o.precision = ECR_PRECISION_FP32; /* resume b in another precision */
    o.steps = 24;
    CHECK_STATUS(ecr_train(&o), ECR_E_INVALID);
    CHECK_MSG(strstr(ecr_last_error(), "option 'precision' was bf16 in the checkpoint") != NULL,
              "message: %s", ecr_last_error());

    small_opts(&o, "bf16_nan", c, sizeof c);
    o.precision = ECR_PRECISION_BF16;
    o.threads = 2;
    o.save_every = 5;
    o.nan_at_step = 7;
    CHECK_STATUS(ecr_train(&o), ECR_E_RUNTIME);
    CHECK(state_step(c) == 5);

    small_opts(&o, "bf16_vs_fp32", f, sizeof f);
    o.threads = 2;
    CHECK_OK(ecr_train(&o));
    double la[21] = {0}, lf[21] = {0};
    int va = 0, vf = 0;
    CHECK(log_losses(a, la, 20, &va) == 20);
    CHECK(log_losses(f, lf, 20, &vf) == 20);
    CHECK(la[1] != lf[1]);
    CHECK_CLOSE(la[20], lf[20], 0.05 * lf[20]); /* the same training, to bf16's rounding */
    fprintf(stderr, "    step 20 loss: bf16 %.5f, fp32 %.5f\n", la[20], lf[20]);
}

/* A resume keeps no stale log record, even when the log does not fit in memory: 4 steps
 * with a checkpoint, then 64 MB of records of a later step appended (what another process
 * writing into the folder might leave), then a resume to 6 steps in a child process whose
 * address space may grow by 32 MB only: the log then holds steps 1..6, one line each.
 * (The log used to be read whole; when that failed, the resume took it for "no log yet"
 * and appended after the stale records.) Not under AddressSanitizer, whose allocator
 * reserves address space of its own. */
static void test_resume_truncates_big_log(void) {
#if defined(__SANITIZE_ADDRESS__)
    fprintf(stderr, "    skipped under AddressSanitizer\n");
    CHECK(1);
#else
    ecr_train_opts o;
    char dir[600], log[700];
    small_opts(&o, "biglog", dir, sizeof dir);
    o.steps = 4;
    CHECK_OK(ecr_train(&o));
    snprintf(log, sizeof log, "%s/log.jsonl", dir);
    FILE *fp = fopen(log, "ab");
    CHECK(fp != NULL);
    if (!fp) return;
    static char block[1 << 20];
    const char *rec = "{\"step\":99,\"loss\":1.5,\"grad_norm\":1,\"clipped\":false}\n";
    size_t rl = strlen(rec), used = 0;
    while (used + rl <= sizeof block) memcpy(block + used, rec, rl), used += rl;
    for (int i = 0; i < 64; i++) CHECK(fwrite(block, 1, used, fp) == used);
    CHECK(fclose(fp) == 0);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        long pages = 0;
        FILE *sm = fopen("/proc/self/statm", "r");
        if (!sm || fscanf(sm, "%ld", &pages) != 1) _exit(3);
        fclose(sm);
        struct rlimit rl_as = {(rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)32 << 20), RLIM_INFINITY};
        if (setrlimit(RLIMIT_AS, &rl_as) != 0) _exit(3);
        o.steps = 6;
        o.resume = 1;
        o.threads = 1; /* no new OpenMP team in a forked child */
        ecr_status st = ecr_train(&o);
        if (st) fprintf(stderr, "    resume: %s\n", ecr_last_error());
        _exit(st ? 1 : 0);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the resume failed (status %d)", status);
    size_t len = 0;
    char *t = file_text(log, &len);
    int lines = 0, stale = 0;
    for (size_t i = 0; t && i < len; i++) lines += t[i] == '\n';
    stale = t && strstr(t, "\"step\":99") != NULL;
    CHECK_MSG(lines == 6 && !stale, "log after the resume: %d lines (want 6), stale records %s", lines,
              stale ? "kept" : "gone");
    free(t);
#endif
}

int main(void) {
    setenv("ECR_BF16_EMULATE", "1", 1); /* bf16 runs on every CPU (test_resume_bf16) */
    if (make_fixture()) {
        RUN(test_resume_exact);
        RUN(test_resume_state_formats);
        RUN(test_resume_bf16);
        RUN(test_resume_truncates_big_log);
        RUN(test_resume_objectives);
        RUN(test_nan_keeps_checkpoint);
        RUN(test_loss_decreases_and_validation);
        RUN(test_option_checks);
        RUN(test_eval_lm);
        RUN(test_generate_greedy);
    }
    RUN(test_sampling);
    if (g_dir[0]) tl_rm_tree(g_dir);
    return test_finish("test_train");
}
