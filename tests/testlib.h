/* testlib.h — helpers shared by the unit tests (tests/testlib.c, linked into every test).
 *
 * The plain helpers below are defined in testlib.c; they never exit and never count checks.
 * The checking helpers at the end count in the check harness of the program that calls them
 * (test.h's counters are static, one pair per program), so they are static inline and only
 * declared when test.h was included first. */
#ifndef ECR_TESTLIB_H
#define ECR_TESTLIB_H
#include <stddef.h>
#include <stdint.h>
#include "ecr.h"

/* ---- numbers ----------------------------------------------------------------------------- */

/* tl_nanmax: the larger of a and b, NaN if b is NaN (fmax would drop a NaN and hide a broken result). */
double tl_nanmax(double a, double b);
/* tl_max_abs: max |a[i]| over n floats (0 for n = 0; NaN if any is NaN). */
double tl_max_abs(const float *a, size_t n);
/* tl_rel_err: max |a - b| / max |b| over n floats (the plain max |a - b| when b is all zero). */
double tl_rel_err(const float *a, const float *b, size_t n);
/* tl_fill_normal: p[0..n) = N(0, sd^2) draws of the ecr_rng stream seeded with seed. */
void tl_fill_normal(float *p, size_t n, double sd, uint64_t seed);
/* tl_fill_unit_rows: a[rows x cols] from tl_fill_normal(sd 1, seed), each row then of unit norm. */
void tl_fill_unit_rows(float *a, int rows, int cols, uint64_t seed);
/* tl_fd3: d loss() / d *x by the parabola through the floats x - h, x, x + h; *x is restored. */
double tl_fd3(double (*loss)(void), float *x, float h);

/* ---- models and batches ------------------------------------------------------------------ */

/* tl_scramble: tensor i of m = N(0, 0.3^2) draws (1-D: 1 + N(0, 0.1^2)) from seed + i. */
void tl_scramble(ecr_model *m, uint64_t seed);

/* A packed batch with its own storage (B * T <= 256 slots, at most 64 texts). */
typedef struct tl_batch {
    ecr_batch b;
    int32_t tok[256], tgt[256], pos[256], txt[256];
    int64_t ids[64];
} tl_batch;

/* tl_make_batch: texts of lens[k] seeded random tokens in [2, V), each after an EOT, packed into
 * B x T: lens[k] < 0 starts the next row, 0 is a text of one slot, a text that does not fit in
 * the rest of its row is left out, as is all past row B - 1 or text 64; text i is data row i.
 * A B x T over 256 slots gives an empty batch (B = 0). */
void tl_make_batch(tl_batch *x, int B, int T, const int *lens, int n_lens, int V, uint64_t seed);

/* tl_overfit: trains m (AdamW without decay, clipping at 1, lr 3e-2 warm-up 10 then cosine to
 * 1e-3) for `steps` steps on one fixed batch of texts of 6, 5, 10, 4 and 7 tokens (3 x 12
 * slots, tokens in [2, vocab_size)); the first token of each text, not learnable, is left out
 * of the loss. *first and *last get the loss of the first and last forward. 0 if a call
 * failed (the message is in ecr_last_error()), else 1. */
int tl_overfit(ecr_model *m, int steps, float *first, float *last);

/* ---- files ------------------------------------------------------------------------------- */

/* tl_lo10_valid: build/data/lo10/valid.jsonl (from the repository root or tests/), NULL if missing. */
const char *tl_lo10_valid(void);
/* tl_copy_lines: the first n lines (of up to 32 KiB) of `from` into a new file `to`; 1 if both open. */
int tl_copy_lines(const char *from, const char *to, int n);
/* tl_rm_tree: rm -rf dir; 1 on success, else 0 and a message on stderr. */
int tl_rm_tree(const char *dir);
/* tl_scratch: a fresh folder $TMPDIR/ecr_TAG_XXXXXX (P_tmpdir without TMPDIR), made on the
 * first call, whose path it returns (exits with a message if it cannot be made); later
 * calls return the same folder, whatever their tag (NULL is fine then). tl_tmp_path: scratch/name, in one of 4 rotating static
 * buffers (so a few can be live at once). */
const char *tl_scratch(const char *tag);
const char *tl_tmp_path(const char *name);

/* ---- checking helpers (include test.h first) --------------------------------------------- */
#ifdef ECR_TEST_H


/* Fixture tensor "KIND.C.FIELD" of dtype dt, or NULL after a failed check (the fixtures of
 * test_baselines.c and test_codes.c name their cases so). */
static inline const ecr_tensor_view *tl_fx(const ecr_st_file *f, const char *kind, int c, const char *field,
                                           ecr_dtype dt) {
    char name[64];
    snprintf(name, sizeof name, "%s.%d.%s", kind, c, field);
    const ecr_tensor_view *v = ecr_st_find(f, name);
    CHECK_MSG(v && v->dtype == dt, "fixture tensor '%s' missing or not %s", name, ecr_dtype_name(dt));
    return v && v->dtype == dt ? v : NULL;
}

/* The first element of an F32 fixture tensor. */
static inline double tl_fx1(const ecr_tensor_view *v) { return ((const float *)v->data)[0]; }

/* An I32 fixture tensor of 0 / 1 flags as bytes (caller frees). */
static inline unsigned char *tl_fx_flags(const ecr_tensor_view *u) {
    unsigned char *b = malloc(u->numel ? u->numel : 1);
    for (size_t i = 0; b && i < u->numel; i++) b[i] = ((const int32_t *)u->data)[i] != 0;
    return b;
}

/* tl_meta_num: metadata `key` of f by atof (0 if missing); one check, failed if missing. */
static inline double tl_meta_num(const ecr_st_file *f, const char *key) {
    const char *v = ecr_st_meta(f, key);
    CHECK_MSG(v != NULL, "fixture metadata '%s' missing", key);
    return v ? atof(v) : 0.0;
}

/* tl_fixture_cfg: the "tiny" preset, `tied`, and the model sizes of f's metadata (vocab_size ...
 * ecr_dim, tl_meta_num: one check each). */
static inline ecr_config tl_fixture_cfg(const ecr_st_file *f, int tied) {
    ecr_config c;
    ecr_config_preset("tiny", &c);
    c.vocab_size = (int)tl_meta_num(f, "vocab_size");
    c.dim = (int)tl_meta_num(f, "dim");
    c.n_layers = (int)tl_meta_num(f, "n_layers");
    c.n_heads = (int)tl_meta_num(f, "n_heads");
    c.hidden_dim = (int)tl_meta_num(f, "hidden_dim");
    c.max_seq_len = (int)tl_meta_num(f, "max_seq_len");
    c.rope_theta = (float)tl_meta_num(f, "rope_theta");
    c.norm_eps = (float)tl_meta_num(f, "norm_eps");
    c.ecr_dim = (int)tl_meta_num(f, "ecr_dim");
    c.tied = tied;
    return c;
}

/* tl_fd_check: g[n], the gradient of loss() wrt x[n], against tl_fd3 (h 1e-4) element by element:
 * n checks of |fd - g| <= 1e-5 max(1, max |g|); returns the worst |fd - g| / max(1, max |g|). */
static inline double tl_fd_check(const char *what, double (*loss)(void), float *x, const float *g, size_t n) {
    double scale = tl_max_abs(g, n), worst = 0;
    if (scale < 1) scale = 1;
    for (size_t i = 0; i < n; i++) {
        double fd = tl_fd3(loss, x + i, 1e-4f), err = fabs(fd - g[i]) / scale;
        worst = tl_nanmax(worst, err);
        CHECK_MSG(err <= 1e-5, "%s[%zu]: fd %.9g analytic %.9g", what, i, fd, (double)g[i]);
    }
    return worst;
}

/* tl_lo10_small: in mkdtemp(dir), the first n_lines lo10 validation texts (small.jsonl), a
 * 320-token BPE on them (tokenizer.json, path in tok) and their prepared data (data_name, path in
 * data); 5 checks (lo10 present, read, train, save, prepare); 1 if all of it worked. */
static inline int tl_lo10_small(char *dir, int n_lines, const char *data_name, char *tok,
                                size_t tok_cap, char *data, size_t data_cap) {
    const char *valid = tl_lo10_valid();
    CHECK_MSG(valid != NULL, "build/data/lo10/valid.jsonl missing (make data)");
    if (!valid || !mkdtemp(dir)) return 0;
    char corpus[1024];
    snprintf(corpus, sizeof corpus, "%s/small.jsonl", dir);
    snprintf(tok, tok_cap, "%s/tokenizer.json", dir);
    snprintf(data, data_cap, "%s/%s", dir, data_name);
    tl_copy_lines(valid, corpus, n_lines);
    ecr_corpus *c = NULL;
    CHECK_OK(ecr_corpus_read(corpus, &c));
    if (!c) return 0;
    ecr_tokenizer_train_opts to;
    ecr_tokenizer_train_opts_default(&to);
    to.vocab_size = 320;
    to.quiet = 1;
    ecr_tokenizer *bpe = NULL;
    CHECK_OK(ecr_tokenizer_train((const char *const *)c->text, c->n, &to, &bpe));
    ecr_corpus_free(c);
    if (!bpe) return 0;
    CHECK_OK(ecr_tokenizer_save(bpe, tok));
    ecr_tokenizer_free(bpe);
    ecr_status st = ecr_prepare(corpus, tok, data, 1);
    CHECK_OK(st);
    return st == ECR_OK;
}
#endif /* ECR_TEST_H */

#endif
