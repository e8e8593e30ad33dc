/* test_batcher.c — packing invariants, truncation, fill ratio, exact resume of the cursor. */
#include "test.h"
#include "train_internal.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ---- an in-memory ecr_data (no file) ------------------------------------------------- */

typedef struct fake_data {
    ecr_data d;
    uint16_t *tok;
    int64_t *off;
    int32_t *zeros;
} fake_data;

/* n texts; text i has len_fn(i) tokens; token j of text i is 2 + (i * 7 + j) % 500 (never
 * the EOT 0 or the pad 1). */
static void fake_make(fake_data *f, size_t n, int (*len_fn)(size_t)) {
    memset(f, 0, sizeof *f);
    f->off = malloc((n + 1) * sizeof *f->off);
    f->off[0] = 0;
    for (size_t i = 0; i < n; i++) f->off[i + 1] = f->off[i] + len_fn(i);
    f->tok = malloc(((size_t)f->off[n] + 1) * sizeof *f->tok);
    for (size_t i = 0; i < n; i++)
        for (int64_t j = 0; j < f->off[i + 1] - f->off[i]; j++)
            f->tok[f->off[i] + j] = (uint16_t)(2 + ((int64_t)i * 7 + j) % 500);
    f->zeros = calloc(n, sizeof *f->zeros);
    f->d.n_texts = n;
    f->d.n_tokens = (size_t)f->off[n];
    f->d.vocab_size = 512;
    f->d.tok16 = f->tok;
    f->d.offsets = f->off;
    f->d.n_bytes = f->d.group = f->d.lang = f->d.label = f->zeros;
}

static void fake_free(fake_data *f) {
    free(f->tok);
    free(f->off);
    free(f->zeros);
}

/* Lengths 0..120 from a fixed hash, a few long ones (> 63) for truncation at T=64. */
static int len_mixed(size_t i) {
    uint64_t s = i * 2654435761u + 17;
    return (int)(ecr_tr_rng_next(&s) % 121);
}
static int len_short(size_t i) {
    uint64_t s = i + 5;
    return 3 + (int)(ecr_tr_rng_next(&s) % 40);
}

/* ---- invariant checker ------------------------------------------------------------- */

/* Checks one batch against the data; counts each text's appearances in seen[]. Returns the
 * number of violations. */
static int check_batch(const ecr_data *d, const ecr_batch *b, int T, int *seen) {
    int bad = 0;
    if (b->T != T) return 1;
    int *text_slots = calloc((size_t)b->n_texts + 1, sizeof *text_slots);
    for (int r = 0; r < b->B; r++) {
        int padding = 0;
        for (int t = 0; t < T; t++) {
            int s = r * T + t;
            int bt = b->text[s];
            if (bt < 0) {
                /* padding: pad id, no target, and nothing after it in this row */
                padding = 1;
                bad += b->targets[s] != -1 || b->tokens[s] != 1;
                continue;
            }
            if (padding) { bad++; continue; }
            if (bt >= b->n_texts) { bad++; continue; }
            int p = b->pos[s];
            /* the text's slots are contiguous inside the row, pos counts 0,1,2,... */
            if (p > t || b->text[s - p] != bt || (p > 0 && b->pos[s - 1] != p - 1)) { bad++; continue; }
            int64_t id = b->text_id[bt];
            int64_t n = d->offsets[id + 1] - d->offsets[id];
            int64_t k = n < T - 1 ? n : T - 1;
            if (p > k) { bad++; continue; }
            uint32_t want_in = p == 0 ? 0 : ecr_data_token(d, (size_t)(d->offsets[id] + p - 1));
            uint32_t want_tg = p < n ? ecr_data_token(d, (size_t)(d->offsets[id] + p)) : 0;
            bad += (uint32_t)b->tokens[s] != want_in;
            bad += (uint32_t)b->targets[s] != want_tg;
            /* the text ends at slot k: the next slot starts another text or is padding */
            if (p == k && t + 1 < T) bad += b->pos[s + 1] != 0 || b->text[s + 1] == bt;
            if (p < k && t + 1 == T) bad++; /* a text never crosses the row end */
            text_slots[bt]++;
        }
    }
    for (int i = 0; i < b->n_texts; i++) {
        int64_t id = b->text_id[i];
        int64_t n = d->offsets[id + 1] - d->offsets[id];
        bad += text_slots[i] != (n < T - 1 ? n : T - 1) + 1;
        seen[id]++;
    }
    free(text_slots);
    return bad;
}

static ecr_batcher *make_batcher(const ecr_data *d, int B, int T, uint64_t seed) {
    ecr_batcher_opts o;
    ecr_batcher_opts_default(&o);
    o.B = B;
    o.T = T;
    o.seed = seed;
    ecr_batcher *b = NULL;
    CHECK_OK(ecr_batcher_create(d, &o, &b));
    return b;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_invariants_two_epochs(void) {
    fake_data f;
    fake_make(&f, 3000, len_mixed);
    const int T = 64;
    ecr_batcher *b = make_batcher(&f.d, 8, T, 42);
    int64_t expect0 = 0, expect1 = 0;
    CHECK_OK(ecr_batcher_epoch_batches(b, 0, &expect0));
    CHECK_OK(ecr_batcher_epoch_batches(b, 1, &expect1));
    for (int epoch = 0; epoch < 2; epoch++) {
        int *seen = calloc(f.d.n_texts, sizeof *seen);
        int bad = 0, end = 0;
        int64_t nb = 0;
        while (!end) {
            const ecr_batch *batch = NULL;
            CHECK_OK(ecr_batcher_next(b, &batch, &end));
            if (!batch) break;
            bad += check_batch(&f.d, batch, T, seen);
            nb++;
        }
        CHECK_MSG(bad == 0, "epoch %d: %d violations", epoch, bad);
        int once = 1;
        for (size_t i = 0; i < f.d.n_texts; i++) once &= seen[i] == 1;
        CHECK_MSG(once, "epoch %d: a text was not packed exactly once", epoch);
        CHECK_MSG(nb == (epoch ? expect1 : expect0), "epoch %d: %lld batches, dry run said %lld", epoch,
                  (long long)nb, (long long)(epoch ? expect1 : expect0));
        free(seen);
    }
    CHECK_CLOSE(ecr_batcher_progress(b), 2.0, 1e-12);
    ecr_batcher_free(b);
    fake_free(&f);
}

static void test_truncation(void) {
    fake_data f;
    fake_make(&f, 3000, len_mixed);
    int64_t want = 0, longest = 0;
    for (size_t i = 0; i < f.d.n_texts; i++) {
        int64_t n = f.off[i + 1] - f.off[i];
        want += n > 63;
        if (n > longest) longest = n;
    }
    ecr_batcher *b = make_batcher(&f.d, 8, 64, 1);
    ecr_batcher_stats s;
    ecr_batcher_get_stats(b, &s);
    CHECK(want > 100); /* the fixture has long texts */
    CHECK(s.n_truncated == want);
    CHECK(s.max_tokens == longest);
    /* a truncated text fills a whole row and its last target is its token T (not EOT) */
    int found = 0;
    const ecr_batch *batch = NULL;
    for (int k = 0; k < 50 && !found; k++) {
        CHECK_OK(ecr_batcher_next(b, &batch, NULL));
        for (int r = 0; r < batch->B; r++) {
            int s0 = r * 64;
            if (batch->text[s0] < 0) continue;
            int64_t id = batch->text_id[batch->text[s0]];
            if (f.off[id + 1] - f.off[id] <= 63) continue;
            found = 1;
            CHECK(batch->pos[s0 + 63] == 63 && batch->text[s0 + 63] == batch->text[s0]);
            CHECK((uint32_t)batch->targets[s0 + 63] == f.tok[f.off[id] + 63]);
            CHECK((uint32_t)batch->tokens[s0 + 63] == f.tok[f.off[id] + 62]);
            break;
        }
    }
    CHECK(found);
    ecr_batcher_free(b);
    fake_free(&f);
}

/* A text of n tokens: inputs [EOT, t1..tn], targets [t1..tn, EOT], exact values. */
static int len_three(size_t i) { return i == 0 ? 3 : 0; }
static void test_layout_exact(void) {
    fake_data f;
    fake_make(&f, 2, len_three); /* text 0: 3 tokens, text 1: empty */
    ecr_batcher_opts o;
    ecr_batcher_opts_default(&o);
    o.B = 1;
    o.T = 8;
    o.sampler = ecr_sampler_sequential;
    ecr_batcher *b = NULL;
    CHECK_OK(ecr_batcher_create(&f.d, &o, &b));
    const ecr_batch *x = NULL;
    int end = 0;
    CHECK_OK(ecr_batcher_next(b, &x, &end));
    int32_t tok[8] = {0, 2, 3, 4, 0, 1, 1, 1}, tgt[8] = {2, 3, 4, 0, 0, -1, -1, -1};
    int32_t pos[8] = {0, 1, 2, 3, 0, 0, 0, 0}, txt[8] = {0, 0, 0, 0, 1, -1, -1, -1};
    CHECK(memcmp(x->tokens, tok, sizeof tok) == 0);
    CHECK(memcmp(x->targets, tgt, sizeof tgt) == 0);
    CHECK(memcmp(x->pos, pos, sizeof pos) == 0);
    CHECK(memcmp(x->text, txt, sizeof txt) == 0);
    CHECK(x->n_texts == 2 && x->text_id[0] == 0 && x->text_id[1] == 1);
    CHECK(end == 1);
    ecr_batcher_free(b);
    fake_free(&f);
}

static int batches_equal(const ecr_batch *a, const ecr_batch *b) {
    size_t n = (size_t)a->B * (size_t)a->T * sizeof(int32_t);
    return a->B == b->B && a->T == b->T && a->n_texts == b->n_texts &&
           !memcmp(a->tokens, b->tokens, n) && !memcmp(a->targets, b->targets, n) &&
           !memcmp(a->pos, b->pos, n) && !memcmp(a->text, b->text, n) &&
           !memcmp(a->text_id, b->text_id, (size_t)a->n_texts * sizeof *a->text_id);
}

static void test_cursor_resume(void) {
    fake_data f;
    fake_make(&f, 700, len_short);
    ecr_batcher *a = make_batcher(&f.d, 4, 64, 9);
    int64_t per_epoch = 0;
    CHECK_OK(ecr_batcher_epoch_batches(a, 0, &per_epoch));
    /* stop just before the epoch's end so the continuation crosses into epoch 1 */
    int64_t first = per_epoch - 3;
    const ecr_batch *x = NULL;
    for (int64_t i = 0; i < first; i++) CHECK_OK(ecr_batcher_next(a, &x, NULL));
    size_t len = ecr_batcher_cursor_len(a);
    int64_t *cur = malloc(len * sizeof *cur);
    ecr_batcher_get_cursor(a, cur);
    CHECK(cur[0] == 0 && cur[2] > 0); /* mid-epoch, texts waiting in the window */

    ecr_batcher *c = make_batcher(&f.d, 4, 64, 9);
    CHECK_OK(ecr_batcher_set_cursor(c, cur, len));
    int same = 1;
    for (int i = 0; i < 10; i++) {
        const ecr_batch *y = NULL;
        CHECK_OK(ecr_batcher_next(a, &x, NULL));
        CHECK_OK(ecr_batcher_next(c, &y, NULL));
        same &= batches_equal(x, y);
    }
    CHECK(same);
    CHECK_CLOSE(ecr_batcher_progress(a), ecr_batcher_progress(c), 0);
    CHECK(ecr_batcher_progress(a) > 1.0);

    /* bad cursors are refused with a message */
    cur[2] = 10000;
    CHECK_STATUS(ecr_batcher_set_cursor(c, cur, len), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "data cursor") != NULL);
    CHECK_STATUS(ecr_batcher_set_cursor(c, cur, len - 1), ECR_E_INVALID);
    free(cur);
    ecr_batcher_free(a);
    ecr_batcher_free(c);
    fake_free(&f);
}

static void test_shuffle(void) {
    fake_data f;
    fake_make(&f, 1000, len_short);
    int64_t *o1 = malloc(1000 * sizeof *o1), *o2 = malloc(1000 * sizeof *o2), *o3 = malloc(1000 * sizeof *o3);
    size_t n1 = 0, n2 = 0, n3 = 0;
    CHECK_OK(ecr_sampler_shuffle(NULL, &f.d, 5, 0, o1, &n1));
    CHECK_OK(ecr_sampler_shuffle(NULL, &f.d, 5, 0, o2, &n2));
    CHECK_OK(ecr_sampler_shuffle(NULL, &f.d, 5, 1, o3, &n3));
    CHECK(n1 == 1000 && n2 == 1000 && n3 == 1000);
    CHECK(memcmp(o1, o2, 1000 * sizeof *o1) == 0); /* deterministic */
    CHECK(memcmp(o1, o3, 1000 * sizeof *o1) != 0); /* another order each epoch */
    int *seen = calloc(1000, sizeof *seen), perm = 1, fixed = 0;
    for (int i = 0; i < 1000; i++) seen[o1[i]]++, fixed += o1[i] == i;
    for (int i = 0; i < 1000; i++) perm &= seen[i] == 1;
    CHECK(perm);
    CHECK(fixed < 10); /* a real shuffle leaves ~1 fixed point */
    /* the PRNG's bounded draw is uniform enough: 6 buckets of 60000 draws */
    uint64_t s = 3;
    int hist[6] = {0};
    for (int i = 0; i < 60000; i++) hist[ecr_tr_rng_below(&s, 6)]++;
    for (int i = 0; i < 6; i++) CHECK(hist[i] > 9500 && hist[i] < 10500);
    free(seen); free(o1); free(o2); free(o3);
    fake_free(&f);
}

static void test_bad_options(void) {
    fake_data f;
    fake_make(&f, 10, len_short);
    ecr_batcher_opts o;
    ecr_batcher_opts_default(&o);
    ecr_batcher *b = NULL;
    o.T = 1;
    CHECK_STATUS(ecr_batcher_create(&f.d, &o, &b), ECR_E_INVALID);
    o.T = 64;
    o.window = 0;
    CHECK_STATUS(ecr_batcher_create(&f.d, &o, &b), ECR_E_INVALID);
    CHECK(b == NULL);
    ecr_batcher_free(NULL);
    ecr_batch_free(NULL);
    fake_free(&f);
}

/* ---- fill ratio on lo10 validation texts prepared with a small tokenizer ------------ */

static const char *lo10_valid(void) {
    static const char *cands[] = {"build/data/lo10/valid.jsonl", "../build/data/lo10/valid.jsonl"};
    for (size_t i = 0; i < 2; i++)
        if (access(cands[i], R_OK) == 0) return cands[i];
    return NULL;
}

static void test_fill_lo10(void) {
    const char *valid = lo10_valid();
    CHECK_MSG(valid != NULL, "build/data/lo10/valid.jsonl missing (make data)");
    if (!valid) return;
    ecr_corpus *c = NULL;
    CHECK_OK(ecr_corpus_read(valid, &c));
    if (!c) return;
    /* a small BPE on the first 1000 texts keeps the test fast; all 10K are packed */
    ecr_tokenizer_train_opts to;
    ecr_tokenizer_train_opts_default(&to);
    to.vocab_size = 1024;
    to.quiet = 1;
    ecr_tokenizer *tok = NULL;
    CHECK_OK(ecr_tokenizer_train((const char *const *)c->text, c->n < 1000 ? c->n : 1000, &to, &tok));
    char dir[256];
    snprintf(dir, sizeof dir, "%s/ecr_test_batcher_XXXXXX", P_tmpdir);
    CHECK(mkdtemp(dir) != NULL);
    char tok_path[512], data_path[512];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", dir);
    snprintf(data_path, sizeof data_path, "%s/valid.safetensors", dir);
    if (tok) CHECK_OK(ecr_tokenizer_save(tok, tok_path));
    CHECK_OK(ecr_prepare(valid, tok_path, data_path, 1));
    ecr_data *d = NULL;
    CHECK_OK(ecr_data_open(data_path, &d));
    if (d) {
        ecr_batcher *b = make_batcher(d, 16, 256, 1);
        int *seen = calloc(d->n_texts, sizeof *seen);
        int end = 0, bad = 0;
        while (b && !end) {
            const ecr_batch *x = NULL;
            CHECK_OK(ecr_batcher_next(b, &x, &end));
            bad += check_batch(d, x, 256, seen);
        }
        ecr_batcher_stats s;
        ecr_batcher_get_stats(b, &s);
        double fill = (double)s.filled / (double)s.slots;
        fprintf(stderr, "    lo10 valid: %zu texts, %zu tokens, longest %lld, truncated %lld, "
                        "%lld batches of 16x256, fill %.4f\n", d->n_texts, d->n_tokens,
                (long long)s.max_tokens, (long long)s.n_truncated, (long long)s.batches, fill);
        CHECK(bad == 0);
        CHECK_MSG(fill >= 0.9, "fill ratio %.4f < 0.9", fill);
        free(seen);
        ecr_batcher_free(b);
    }
    ecr_data_free(d);
    ecr_tokenizer_free(tok);
    ecr_corpus_free(c);
    remove(tok_path);
    remove(data_path);
    rmdir(dir);
}

int main(void) {
    RUN(test_layout_exact);
    RUN(test_invariants_two_epochs);
    RUN(test_truncation);
    RUN(test_cursor_resume);
    RUN(test_shuffle);
    RUN(test_bad_options);
    RUN(test_fill_lo10);
    return test_finish("test_batcher");
}
