/* test_batcher.c — packing invariants, truncation, fill ratio, exact resume of the cursor;
 * the group sampler and group units (whole groups per batch) of the contrastive objective. */
#include "test.h"
#include "testlib.h"
#include "rng.h"

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
    return (int)(ecr_splitmix64(&s) % 121);
}
static int len_short(size_t i) {
    uint64_t s = i + 5;
    return 3 + (int)(ecr_splitmix64(&s) % 40);
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
    for (int i = 0; i < 60000; i++) hist[ecr_splitmix64_below(&s, 6)]++;
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

/* ---- the group sampler and group units ------------------------------------------------ */

/* A grouped corpus in scattered file order: group g has 1 text (g % 7 == 0), 4 texts in two
 * languages (g % 5 == 0) or 10 texts in 10 languages; every 20th text has no group; a few
 * texts have no tokens. */
typedef struct grouped {
    fake_data f;
    int32_t *group, *lang;
    int n_groups;
} grouped;

static int len_grouped(size_t i) {
    if (i % 37 == 5) return 0;
    uint64_t s = i + 11;
    return 3 + (int)(ecr_splitmix64(&s) % 40);
}

static int group_size_of(int g) { return g % 7 == 0 ? 1 : g % 5 == 0 ? 4 : 10; }

static void grouped_make(grouped *g, int n_groups) {
    size_t n = 0;
    for (int k = 0; k < n_groups; k++) n += (size_t)group_size_of(k);
    n += n / 19;
    fake_make(&g->f, n, len_grouped);
    g->n_groups = n_groups;
    g->group = malloc(n * sizeof *g->group);
    g->lang = malloc(n * sizeof *g->lang);
    size_t i = 0;
    for (int k = 0; k < n_groups; k++)
        for (int j = 0; j < group_size_of(k); j++) {
            if (i % 20 == 19) g->group[i] = -1, g->lang[i] = 0, i++;
            g->group[i] = k;
            g->lang[i] = group_size_of(k) == 4 ? j / 2 : j;
            i++;
        }
    for (; i < n; i++) g->group[i] = -1, g->lang[i] = 0;
    uint64_t s = 77; /* scatter the file order */
    for (size_t k = n; k > 1; k--) {
        size_t j = (size_t)ecr_splitmix64_below(&s, k);
        int32_t t = g->group[k - 1]; g->group[k - 1] = g->group[j]; g->group[j] = t;
        t = g->lang[k - 1]; g->lang[k - 1] = g->lang[j]; g->lang[j] = t;
    }
    g->f.d.group = g->group;
    g->f.d.lang = g->lang;
    g->f.d.n_groups = n_groups;
    g->f.d.n_langs = 10;
}

static void grouped_free(grouped *g) {
    free(g->group);
    free(g->lang);
    fake_free(&g->f);
}

static int has_tokens(const ecr_data *d, int64_t i) { return d->offsets[i + 1] > d->offsets[i]; }

/* Texts with tokens in group k. */
static int usable_in_group(const ecr_data *d, int k, int *n_langs) {
    int n = 0, langs[16] = {0};
    *n_langs = 0;
    for (size_t i = 0; i < d->n_texts; i++)
        if (d->group[i] == k && has_tokens(d, (int64_t)i)) {
            n++;
            if (!langs[d->lang[i]]++) (*n_langs)++;
        }
    return n;
}

static void test_group_sampler(void) {
    grouped g;
    grouped_make(&g, 300);
    const ecr_data *d = &g.f.d;
    int64_t *o1 = malloc(d->n_texts * sizeof *o1), *o2 = malloc(d->n_texts * sizeof *o2);
    int64_t *o3 = malloc(d->n_texts * sizeof *o3);
    for (int G = 2; G <= 3; G++) {
        size_t n1 = 0, n2 = 0, n3 = 0, want = 0;
        CHECK_OK(ecr_sampler_groups(&G, d, 5, 0, o1, &n1));
        CHECK_OK(ecr_sampler_groups(&G, d, 5, 0, o2, &n2));
        CHECK_OK(ecr_sampler_groups(&G, d, 5, 1, o3, &n3));
        CHECK(n1 == n2 && !memcmp(o1, o2, n1 * sizeof *o1)); /* deterministic */
        CHECK(n1 == n3 && memcmp(o1, o3, n1 * sizeof *o1) != 0); /* a new draw each epoch */
        int *visits = calloc((size_t)g.n_groups, sizeof *visits), bad = 0;
        for (size_t i = 0; i < n1;) {
            int k = d->group[o1[i]];
            size_t e = i;
            while (e < n1 && d->group[o1[e]] == k) e++;
            int nl = 0, usable = k >= 0 ? usable_in_group(d, k, &nl) : 0;
            bad += k < 0 || usable < 2;
            if (k < 0) { i = e; continue; }
            visits[k]++;
            bad += (int)(e - i) != (usable < G ? usable : G);
            /* distinct languages as far as the group has them */
            int distinct = 0, seen_l[16] = {0};
            for (size_t j = i; j < e; j++) {
                bad += !has_tokens(d, o1[j]);
                distinct += !seen_l[d->lang[o1[j]]]++;
            }
            bad += distinct != ((int)(e - i) < nl ? (int)(e - i) : nl);
            i = e;
        }
        for (int k = 0; k < g.n_groups; k++) {
            int nl = 0, usable = usable_in_group(d, k, &nl);
            bad += visits[k] != (usable >= 2);
            want += usable >= 2 ? (size_t)(usable < G ? usable : G) : 0;
        }
        CHECK_MSG(bad == 0, "G=%d: %d violations", G, bad);
        CHECK(n1 == want);
        free(visits);
    }
    int one = 1;
    size_t n = 0;
    CHECK_STATUS(ecr_sampler_groups(&one, d, 5, 0, o1, &n), ECR_E_INVALID);
    /* a corpus without groups */
    fake_data f;
    fake_make(&f, 50, len_short);
    int32_t *none = malloc(50 * sizeof *none);
    for (int i = 0; i < 50; i++) none[i] = -1;
    f.d.group = none;
    CHECK_STATUS(ecr_sampler_groups(NULL, &f.d, 5, 0, o1, &n), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "group") != NULL);
    free(none);
    fake_free(&f);
    free(o1); free(o2); free(o3);
    grouped_free(&g);
}

static ecr_batcher *group_batcher(const ecr_data *d, int B, int T, int *G, uint64_t seed) {
    ecr_batcher_opts o;
    ecr_batcher_opts_default(&o);
    o.B = B, o.T = T, o.seed = seed, o.window = 32;
    o.sampler = ecr_sampler_groups, o.sampler_ctx = G, o.group_units = 1;
    ecr_batcher *b = NULL;
    CHECK_OK(ecr_batcher_create(d, &o, &b));
    return b;
}

/* Every batch holds whole units: each group present has all its drawn texts there. */
static void test_group_units(void) {
    grouped g;
    grouped_make(&g, 300);
    const ecr_data *d = &g.f.d;
    int G = 3;
    const int T = 64;
    ecr_batcher *b = group_batcher(d, 4, T, &G, 3);
    if (!b) { grouped_free(&g); return; }
    int64_t *order = malloc(d->n_texts * sizeof *order);
    for (int epoch = 0; epoch < 2; epoch++) {
        size_t n_order = 0;
        CHECK_OK(ecr_sampler_groups(&G, d, 3, epoch, order, &n_order));
        int *drawn = calloc((size_t)g.n_groups, sizeof *drawn), *seen = calloc(d->n_texts, sizeof *seen);
        for (size_t i = 0; i < n_order; i++) drawn[d->group[order[i]]]++;
        int64_t expect = 0, nb = 0, slots = 0, filled = 0;
        CHECK_OK(ecr_batcher_epoch_batches(b, epoch, &expect));
        int end = 0, bad = 0, whole = 1;
        while (!end) {
            const ecr_batch *x = NULL;
            CHECK_OK(ecr_batcher_next(b, &x, &end));
            if (!x) break;
            bad += check_batch(d, x, T, seen);
            int *here = calloc((size_t)g.n_groups, sizeof *here);
            for (int i = 0; i < x->n_texts; i++) here[d->group[x->text_id[i]]]++;
            for (int i = 0; i < x->n_texts; i++) whole &= here[d->group[x->text_id[i]]] == drawn[d->group[x->text_id[i]]];
            free(here);
            for (int s = 0; s < x->B * T; s++) filled += x->text[s] >= 0;
            slots += x->B * T;
            nb++;
        }
        int once = 1;
        for (size_t i = 0; i < n_order; i++) once &= seen[order[i]] == 1;
        int64_t total = 0;
        for (size_t i = 0; i < d->n_texts; i++) total += seen[i];
        CHECK_MSG(bad == 0, "epoch %d: %d violations", epoch, bad);
        CHECK_MSG(whole, "epoch %d: a group was split across batches", epoch);
        CHECK(once && total == (int64_t)n_order);
        CHECK_MSG(nb == expect, "epoch %d: %lld batches, dry run said %lld", epoch, (long long)nb, (long long)expect);
        if (epoch == 0)
            fprintf(stderr, "    group units: %zu texts in %lld batches of 4x64, fill %.3f\n", n_order,
                    (long long)nb, (double)filled / (double)slots);
        CHECK((double)filled / (double)slots > 0.8);
        free(drawn);
        free(seen);
    }
    /* exact resume from a mid-epoch cursor */
    ecr_batcher *a = group_batcher(d, 4, T, &G, 8), *c = group_batcher(d, 4, T, &G, 8);
    const ecr_batch *x = NULL, *y = NULL;
    for (int i = 0; i < 7; i++) CHECK_OK(ecr_batcher_next(a, &x, NULL));
    size_t len = ecr_batcher_cursor_len(a);
    int64_t *cur = malloc(len * sizeof *cur);
    ecr_batcher_get_cursor(a, cur);
    CHECK(cur[2] > 0);
    CHECK_OK(ecr_batcher_set_cursor(c, cur, len));
    int same = 1;
    for (int i = 0; i < 40; i++) {
        CHECK_OK(ecr_batcher_next(a, &x, NULL));
        CHECK_OK(ecr_batcher_next(c, &y, NULL));
        same &= batches_equal(x, y);
    }
    CHECK(same);
    free(cur);
    ecr_batcher_free(a);
    ecr_batcher_free(c);
    ecr_batcher_free(b);
    /* a unit larger than a batch is refused, naming the group */
    int G10 = 10;
    b = group_batcher(d, 1, 64, &G10, 1);
    const ecr_batch *z = NULL;
    if (b) CHECK_STATUS(ecr_batcher_next(b, &z, NULL), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "does not fit") != NULL);
    ecr_batcher_free(b);
    /* units need each group in one run: the plain shuffle scatters them */
    ecr_batcher_opts o;
    ecr_batcher_opts_default(&o);
    o.B = 4, o.T = 64, o.group_units = 1;
    b = NULL;
    CHECK_STATUS(ecr_batcher_create(d, &o, &b), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "two places") != NULL);
    free(order);
    grouped_free(&g);
}

/* ---- fill ratio on lo10 validation texts prepared with a small tokenizer ------------ */

static void test_fill_lo10(void) {
    const char *valid = tl_lo10_valid();
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
        /* pairs of translations for the contrastive objective: one epoch = 1000 groups */
        int G = 2;
        b = group_batcher(d, 16, 256, &G, 1);
        seen = calloc(d->n_texts, sizeof *seen);
        end = 0, bad = 0;
        while (b && !end) {
            const ecr_batch *x = NULL;
            CHECK_OK(ecr_batcher_next(b, &x, &end));
            bad += check_batch(d, x, 256, seen);
        }
        ecr_batcher_get_stats(b, &s);
        int64_t visited = 0;
        for (size_t i = 0; i < d->n_texts; i++) visited += seen[i];
        fill = (double)s.filled / (double)s.slots;
        fprintf(stderr, "    lo10 valid, translation pairs: %lld texts in %lld batches of 16x256, fill %.4f\n",
                (long long)visited, (long long)s.batches, fill);
        CHECK(bad == 0 && visited == 2000);
        CHECK_MSG(fill >= 0.85, "fill ratio %.4f < 0.85", fill);
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
    RUN(test_group_sampler);
    RUN(test_group_units);
    RUN(test_fill_lo10);
    return test_finish("test_batcher");
}
