/* testlib.c — the plain helpers of testlib.h, shared by the unit tests. */
#include "testlib.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rng.h"

/* ---- numbers ----------------------------------------------------------------------------- */

double tl_nanmax(double a, double b) { return (b > a || b != b) ? b : a; }

double tl_max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = tl_nanmax(m, fabs(a[i]));
    return m;
}

double tl_rel_err(const float *a, const float *b, size_t n) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e = tl_nanmax(e, fabs((double)a[i] - b[i]));
        s = tl_nanmax(s, fabs(b[i]));
    }
    return s > 0 ? e / s : e;
}

void tl_fill_normal(float *p, size_t n, double sd, uint64_t seed) {
    ecr_rng r;
    ecr_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) p[i] = (float)(ecr_rng_normal(&r) * sd);
}

void tl_fill_unit_rows(float *a, int rows, int cols, uint64_t seed) {
    tl_fill_normal(a, (size_t)rows * cols, 1.0, seed);
    for (int i = 0; i < rows; i++) {
        double s = 0;
        for (int j = 0; j < cols; j++) s += (double)a[i * cols + j] * a[i * cols + j];
        for (int j = 0; j < cols; j++) a[i * cols + j] = (float)(a[i * cols + j] / sqrt(s));
    }
}

double tl_fd3(double (*loss)(void), float *x, float h) {
    float v = *x, xp = v + h, xm = v - h;
    double a = (double)xp - v, b = (double)v - xm; /* the steps actually taken */
    double l0 = loss();
    *x = xp;
    double lp = loss();
    *x = xm;
    double lm = loss();
    *x = v;
    return (b * b * (lp - l0) + a * a * (l0 - lm)) / (a * b * (a + b));
}

/* ---- models and batches ------------------------------------------------------------------ */

void tl_scramble(ecr_model *m, uint64_t seed) {
    float *p = ecr_model_params(m);
    for (size_t i = 0; i < ecr_model_num_tensors(m); i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        tl_fill_normal(p + t->offset, t->numel, t->ndim == 1 ? 0.1 : 0.3, seed + i);
        if (t->ndim == 1)
            for (size_t j = 0; j < t->numel; j++) p[t->offset + j] += 1.0f;
    }
}

void tl_make_batch(tl_batch *x, int B, int T, const int *lens, int n_lens, int V, uint64_t seed) {
    memset(x, 0, sizeof *x);
    if (B * T > (int)(sizeof x->tok / sizeof *x->tok)) return; /* too big: an empty batch (B = 0) */
    x->b.B = B, x->b.T = T;
    x->b.tokens = x->tok, x->b.targets = x->tgt, x->b.pos = x->pos, x->b.text = x->txt, x->b.text_id = x->ids;
    for (int i = 0; i < B * T; i++) x->tok[i] = 1, x->tgt[i] = -1, x->pos[i] = 0, x->txt[i] = -1;
    ecr_rng r;
    ecr_rng_seed(&r, seed);
    int row = 0, col = 0, n = 0;
    for (int k = 0; k < n_lens; k++) {
        if (lens[k] < 0) { row++, col = 0; continue; }
        int slots = lens[k] + 1, base = row * T + col, prev = 0; /* a text opens with EOT */
        if (row >= B || n == (int)(sizeof x->ids / sizeof *x->ids)) break;
        if (col + slots > T) continue;
        for (int j = 0; j < slots; j++) {
            int next = j < lens[k] ? 2 + (int)(ecr_rng_u64(&r) % (uint64_t)(V - 2)) : 0;
            x->tok[base + j] = prev, x->tgt[base + j] = next, x->pos[base + j] = j, x->txt[base + j] = n;
            prev = next;
        }
        x->ids[n] = n;
        n++;
        col += slots;
    }
    x->b.n_texts = n;
}

int tl_overfit(ecr_model *m, int steps, float *first, float *last) {
    ecr_adamw *opt = NULL;
    ecr_adamw_opts ao;
    ecr_adamw_opts_default(&ao);
    ao.weight_decay = 0.0f;
    if (ecr_adamw_create(m, &ao, &opt) != ECR_OK) return 0;
    tl_batch tb;
    int lens[] = {6, 5, -1, 10, -1, 4, 7};
    tl_make_batch(&tb, 3, 12, lens, 7, ecr_model_config(m)->vocab_size, 123);
    for (int i = 0; i < 36; i++)
        if (tb.pos[i] == 0) tb.tgt[i] = -1; /* every text opens with EOT: its first token is a guess */
    int ok = 1;
    for (int s = 0; ok && s < steps; s++) {
        ecr_forward_out o;
        float norm;
        ok = ecr_model_forward(m, &tb.b, &o) == ECR_OK;
        if (!ok) break;
        if (s == 0) *first = o.loss;
        *last = o.loss;
        ecr_model_zero_grad(m);
        ok = ecr_model_backward(m, &tb.b, 1.0f, NULL, NULL) == ECR_OK && ecr_clip_grad_norm(m, 1.0f, &norm) == ECR_OK &&
             ecr_adamw_step(opt, m, ecr_lr_schedule(s, 10, steps, 3e-2f, 1e-3f)) == ECR_OK;
    }
    ecr_adamw_free(opt);
    return ok;
}

/* ---- files ------------------------------------------------------------------------------- */

const char *tl_lo10_valid(void) {
    static const char *cands[] = {"build/data/lo10/valid.jsonl", "../build/data/lo10/valid.jsonl"};
    for (size_t i = 0; i < 2; i++)
        if (access(cands[i], R_OK) == 0) return cands[i];
    return NULL;
}

int tl_copy_lines(const char *from, const char *to, int n) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char line[1 << 15];
    for (int i = 0; in && out && i < n && fgets(line, sizeof line, in); i++) fputs(line, out);
    int ok = in && out;
    if (in) fclose(in);
    if (out) fclose(out);
    return ok;
}

static char tl_dir[512];

const char *tl_scratch(const char *tag) {
    if (tl_dir[0]) return tl_dir;
    const char *t = getenv("TMPDIR");
    snprintf(tl_dir, sizeof tl_dir, "%s/ecr_%s_XXXXXX", t && *t ? t : P_tmpdir, tag);
    if (!mkdtemp(tl_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    return tl_dir;
}

const char *tl_tmp_path(const char *name) {
    static char p[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tl_dir, name);
    return p[k];
}

int tl_rm_tree(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) == 0) return 1;
    fprintf(stderr, "could not remove %s\n", dir);
    return 0;
}
