/* batcher.c — packed batches of prepared data (see "Training" in ecr.h).
 *
 * An epoch is an order of texts (from a sampler). A window of the next `window` texts of
 * that order waits to be packed; each row takes, again and again, the first waiting text
 * that still fits, then refills the window from the order. A row closes when no waiting
 * text fits; the rest of it is padding. The cursor (epoch, position in the order, the
 * waiting texts) is all the state there is, so saving it resumes exactly. */
#include "ecr.h"
#include "rng.h"
#include "batcher_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- samplers ------------------------------------------------------------------------ */

/* Fisher-Yates shuffle of a[0..n) in place, drawing from the splitmix64 stream *rng. */
static void shuffle_i64(int64_t *a, size_t n, uint64_t *rng) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)ecr_splitmix64_below(rng, i);
        int64_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

ecr_status ecr_sampler_shuffle(void *ctx, const ecr_data *d, uint64_t seed, int64_t epoch,
                               int64_t *order, size_t *n_out) {
    (void)ctx;
    size_t n = d->n_texts;
    for (size_t i = 0; i < n; i++) order[i] = (int64_t)i;
    uint64_t rng = ecr_splitmix64_stream(seed, (uint64_t)epoch);
    shuffle_i64(order, n, &rng);
    *n_out = n;
    return ECR_OK;
}

ecr_status ecr_sampler_sequential(void *ctx, const ecr_data *d, uint64_t seed, int64_t epoch,
                                  int64_t *order, size_t *n_out) {
    (void)ctx; (void)seed; (void)epoch;
    for (size_t i = 0; i < d->n_texts; i++) order[i] = (int64_t)i;
    *n_out = d->n_texts;
    return ECR_OK;
}

/* Texts of each group with at least one token, in file order: members[start[g] ..
 * start[g+1]). Caller frees both. */
static ecr_status group_index(const ecr_data *d, int64_t **start_out, int64_t **members_out) {
    size_t ng = d->n_groups > 0 ? (size_t)d->n_groups : 0;
    int64_t *start = calloc(ng + 2, sizeof *start), *members = malloc((d->n_texts + 1) * sizeof *members);
    if (!start || !members) {
        free(start);
        free(members);
        return ecr_fail(ECR_E_NOMEM, "group sampler: out of memory");
    }
    for (size_t i = 0; i < d->n_texts; i++) {
        int32_t g = d->group[i];
        if (g >= 0 && (size_t)g < ng && d->offsets[i + 1] > d->offsets[i]) start[g + 2]++;
    }
    for (size_t g = 0; g < ng; g++) start[g + 2] += start[g + 1];
    for (size_t i = 0; i < d->n_texts; i++) { /* start[g + 1] is the fill position of g */
        int32_t g = d->group[i];
        if (g >= 0 && (size_t)g < ng && d->offsets[i + 1] > d->offsets[i]) members[start[g + 1]++] = (int64_t)i;
    }
    *start_out = start;
    *members_out = members;
    return ECR_OK;
}

/* Up to G texts of one group (m[0..n), shuffled in place): first one text per language in
 * the shuffled order (texts without a language count as distinct), then others. Writes
 * them to out; returns the count. */
static size_t pick_from_group(const ecr_data *d, int64_t *m, size_t n, int G, uint64_t *rng, int64_t *out) {
    shuffle_i64(m, n, rng);
    size_t k = 0;
    for (size_t i = 0; i < n && k < (size_t)G; i++) { /* distinct languages first */
        int32_t lang = d->lang[m[i]];
        int dup = 0;
        for (size_t j = 0; j < k && lang >= 0; j++) dup |= d->lang[out[j]] == lang;
        if (!dup) out[k++] = m[i], m[i] = -1;
    }
    for (size_t i = 0; i < n && k < (size_t)G; i++)
        if (m[i] >= 0) out[k++] = m[i];
    return k;
}

ecr_status ecr_sampler_groups(void *ctx, const ecr_data *d, uint64_t seed, int64_t epoch,
                              int64_t *order, size_t *n_out) {
    int G = ctx ? *(const int *)ctx : 2;
    *n_out = 0;
    if (G < 2) return ecr_fail(ECR_E_INVALID, "group sampler: group size %d (at least 2)", G);
    int64_t *start = NULL, *members = NULL;
    ecr_status st = group_index(d, &start, &members);
    if (st) return st;
    size_t ng = d->n_groups > 0 ? (size_t)d->n_groups : 0, n_eligible = 0;
    int64_t *groups = malloc((ng + 1) * sizeof *groups);
    if (!groups) st = ecr_fail(ECR_E_NOMEM, "group sampler: out of memory");
    for (size_t g = 0; !st && g < ng; g++)
        if (start[g + 1] - start[g] >= 2) groups[n_eligible++] = (int64_t)g;
    if (!st && n_eligible == 0)
        st = ecr_fail(ECR_E_INVALID, "group sampler: no group holds two texts (the contrastive objective "
                                     "needs the corpus's 'group' field: translations or paraphrases)");
    uint64_t rng = ecr_splitmix64_stream(seed, (uint64_t)epoch ^ ECR_STREAM_GROUPS);
    if (!st) shuffle_i64(groups, n_eligible, &rng); /* the groups' order */
    size_t n = 0;
    for (size_t i = 0; !st && i < n_eligible; i++) {
        int64_t g = groups[i];
        n += pick_from_group(d, members + start[g], (size_t)(start[g + 1] - start[g]), G, &rng, order + n);
    }
    free(groups);
    free(start);
    free(members);
    if (!st) *n_out = n;
    return st;
}

/* ---- batches ------------------------------------------------------------------------- */

ecr_status ecr_batch_create(int B, int T, ecr_batch **out) {
    *out = NULL;
    if (B < 1 || T < 2 || (int64_t)B * T > (1LL << 30))
        return ecr_fail(ECR_E_INVALID, "batch: B=%d T=%d is out of range", B, T);
    size_t n = (size_t)B * (size_t)T;
    ecr_batch *b = calloc(1, sizeof *b);
    if (!b) return ecr_fail(ECR_E_NOMEM, "batch: out of memory");
    b->B = B;
    b->T = T;
    b->tokens = malloc(n * sizeof *b->tokens);
    b->targets = malloc(n * sizeof *b->targets);
    b->pos = calloc(n, sizeof *b->pos);
    b->text = malloc(n * sizeof *b->text);
    b->text_id = malloc(n * sizeof *b->text_id); /* every text takes >= 1 slot */
    if (!b->tokens || !b->targets || !b->pos || !b->text || !b->text_id) {
        ecr_batch_free(b);
        return ecr_fail(ECR_E_NOMEM, "batch: out of memory for %d x %d", B, T);
    }
    for (size_t i = 0; i < n; i++) {
        b->tokens[i] = 0;
        b->targets[i] = -1;
        b->text[i] = -1;
    }
    *out = b;
    return ECR_OK;
}

void ecr_batch_free(ecr_batch *b) {
    if (!b) return;
    free(b->tokens);
    free(b->targets);
    free(b->pos);
    free(b->text);
    free(b->text_id);
    free(b);
}

/* ---- the packer ---------------------------------------------------------------------- */

/* Position inside one epoch: the epoch's order, how far it has been read, and the texts
 * read but not packed yet (in order). */
typedef struct pack_state {
    int64_t epoch;
    int64_t *order;
    size_t n_order, next;
    int n_wait;
    int64_t wait[ECR_MAX_WINDOW];
} pack_state;

struct ecr_batcher {
    const ecr_data *d;
    ecr_batcher_opts o;
    int32_t *slots;           /* [n_texts] slots a text takes: min(n, T-1) + 1          */
    pack_state ps;            /* ps.order is owned ([n_texts])                          */
    ecr_batch *batch;
    ecr_batcher_stats stats;
};

void ecr_batcher_opts_default(ecr_batcher_opts *o) {
    memset(o, 0, sizeof *o);
    o->B = 16;
    o->T = 256;
    o->window = 64;
    o->seed = 1;
    o->eot_id = 0;
    o->pad_id = 1;
}

/* Group of text id for units: its group, or -1 (a unit of its own). */
static int32_t unit_group(const ecr_batcher *b, int64_t id) { return b->d->group[id]; }

/* End (exclusive) of the unit that starts at ids[i] of ids[0..n). */
static size_t unit_end(const ecr_batcher *b, const int64_t *ids, size_t i, size_t n) {
    int32_t g = unit_group(b, ids[i]);
    size_t e = i + 1;
    while (g >= 0 && e < n && unit_group(b, ids[e]) == g) e++;
    return e;
}

/* With group units: each group forms one run of the order, at most `window` texts long. */
static ecr_status check_units(const ecr_batcher *b, const int64_t *order, size_t n, int64_t epoch) {
    size_t ng = b->d->n_groups > 0 ? (size_t)b->d->n_groups : 0;
    unsigned char *seen = calloc(ng + 1, 1);
    if (!seen) return ecr_fail(ECR_E_NOMEM, "batcher: out of memory");
    ecr_status st = ECR_OK;
    for (size_t i = 0; !st && i < n;) {
        size_t e = unit_end(b, order, i, n);
        int32_t g = unit_group(b, order[i]);
        if (e - i > (size_t)b->o.window)
            st = ecr_fail(ECR_E_INVALID, "batcher: epoch %lld: a group of %zu texts exceeds the window of %d",
                          (long long)epoch, e - i, b->o.window);
        else if (g >= 0 && (size_t)g < ng && seen[g]++)
            st = ecr_fail(ECR_E_INVALID, "batcher: epoch %lld: group %d appears in two places of the order "
                          "(group units need each group's texts together)", (long long)epoch, (int)g);
        i = e;
    }
    free(seen);
    return st;
}

/* Fills ps->order for `epoch` and resets the position. */
static ecr_status start_epoch(const ecr_batcher *b, pack_state *ps, int64_t epoch) {
    ecr_sampler_fn fn = b->o.sampler ? b->o.sampler : ecr_sampler_shuffle;
    size_t n = 0;
    ecr_status st = fn(b->o.sampler_ctx, b->d, b->o.seed, epoch, ps->order, &n);
    if (st) return st;
    if (n == 0 || n > b->d->n_texts)
        return ecr_fail(ECR_E_INVALID, "batcher: sampler gave %zu texts for epoch %lld (data has %zu)",
                        n, (long long)epoch, b->d->n_texts);
    for (size_t i = 0; i < n; i++)
        if (ps->order[i] < 0 || (size_t)ps->order[i] >= b->d->n_texts)
            return ecr_fail(ECR_E_INVALID, "batcher: sampler gave text %lld, outside [0, %zu)",
                            (long long)ps->order[i], b->d->n_texts);
    if (b->o.group_units) {
        ecr_status ust = check_units(b, ps->order, n, epoch);
        if (ust) return ust;
    }
    ps->epoch = epoch;
    ps->n_order = n;
    ps->next = 0;
    ps->n_wait = 0;
    return ECR_OK;
}

/* Takes the first waiting text that needs at most `room` slots (after refilling the
 * window); returns its id, or -1 when none fits. */
static int64_t take_fitting(const ecr_batcher *b, pack_state *ps, int room) {
    while (ps->n_wait < b->o.window && ps->next < ps->n_order)
        ps->wait[ps->n_wait++] = ps->order[ps->next++];
    for (int i = 0; i < ps->n_wait; i++) {
        int64_t id = ps->wait[i];
        if (b->slots[id] <= room) {
            memmove(ps->wait + i, ps->wait + i + 1, (size_t)(ps->n_wait - i - 1) * sizeof *ps->wait);
            ps->n_wait--;
            return id;
        }
    }
    return -1;
}

static int epoch_done(const pack_state *ps) { return ps->n_wait == 0 && ps->next >= ps->n_order; }

/* Writes text `id` into `batch` at slot `s0` as batch text `bt`. */
static void place_text(const ecr_batcher *b, ecr_batch *batch, int64_t id, int s0, int bt) {
    const ecr_data *d = b->d;
    size_t start = (size_t)d->offsets[id];
    int n = (int)(d->offsets[id + 1] - d->offsets[id]);
    int k = b->slots[id] - 1; /* tokens kept */
    batch->tokens[s0] = b->o.eot_id;
    for (int j = 0; j < k; j++) {
        int32_t t = (int32_t)ecr_data_token(d, start + (size_t)j);
        batch->tokens[s0 + 1 + j] = t;
        batch->targets[s0 + j] = t;
    }
    batch->targets[s0 + k] = k < n ? (int32_t)ecr_data_token(d, start + (size_t)k) : b->o.eot_id;
    for (int j = 0; j <= k; j++) {
        batch->pos[s0 + j] = j;
        batch->text[s0 + j] = bt;
    }
    batch->text_id[bt] = id;
}

/* Packs one batch from `ps` row by row; with batch == NULL only advances the state (dry
 * run). Returns the slots filled with text. */
static int64_t pack_rows(const ecr_batcher *b, pack_state *ps, ecr_batch *batch) {
    int B = b->o.B, T = b->o.T, nt = 0;
    int64_t filled = 0;
    for (int r = 0; r < B; r++) {
        int used = 0;
        int64_t id;
        while (used < T && (id = take_fitting(b, ps, T - used)) >= 0) {
            if (batch) place_text(b, batch, id, r * T + used, nt);
            nt++;
            used += b->slots[id];
        }
        filled += used;
        if (batch)
            for (int s = r * T + used; s < (r + 1) * T; s++) {
                batch->tokens[s] = b->o.pad_id;
                batch->targets[s] = -1;
                batch->pos[s] = 0;
                batch->text[s] = -1;
            }
    }
    if (batch) batch->n_texts = nt;
    return filled;
}

/* Refills the window with whole units. */
static void refill_units(const ecr_batcher *b, pack_state *ps) {
    while (ps->next < ps->n_order) {
        size_t e = unit_end(b, ps->order, ps->next, ps->n_order);
        if ((size_t)ps->n_wait + (e - ps->next) > (size_t)b->o.window) break;
        while (ps->next < e) ps->wait[ps->n_wait++] = ps->order[ps->next++];
    }
}

/* Places the texts wait[s..e) in a batch whose rows have used[] slots taken: each text in
 * the first row with room for it, at slot at[] (row * T + column). Returns 1 when all fit
 * (used[] then counts them); else 0 with used[] unchanged. */
static int fit_unit(const ecr_batcher *b, const pack_state *ps, int s, int e, int *used, int *at) {
    int B = b->o.B, T = b->o.T;
    for (int i = s; i < e; i++) {
        int slots = b->slots[ps->wait[i]], r = 0;
        while (r < B && used[r] + slots > T) r++;
        if (r == B) {
            for (int j = s; j < i; j++) used[at[j - s] / T] -= b->slots[ps->wait[j]];
            return 0;
        }
        at[i - s] = r * T + used[r];
        used[r] += slots;
    }
    return 1;
}

/* Packs one batch from `ps` unit by unit (see the top of the file); batch may be NULL (dry
 * run). *filled = slots holding text. ECR_E_INVALID when a unit does not fit an empty batch. */
static ecr_status pack_units(const ecr_batcher *b, pack_state *ps, ecr_batch *batch, int64_t *filled) {
    int B = b->o.B, T = b->o.T, nt = 0, at[ECR_MAX_WINDOW];
    int *used = calloc((size_t)B, sizeof *used);
    if (!used) return ecr_fail(ECR_E_NOMEM, "batcher: out of memory");
    *filled = 0;
    for (;;) {
        refill_units(b, ps);
        int s = 0, e = 0, found = 0;
        while (s < ps->n_wait && !found) {
            e = (int)unit_end(b, ps->wait, (size_t)s, (size_t)ps->n_wait);
            found = fit_unit(b, ps, s, e, used, at);
            if (!found) s = e;
        }
        if (!found) break;
        for (int i = s; i < e; i++) {
            int64_t id = ps->wait[i];
            if (batch) place_text(b, batch, id, at[i - s], nt);
            nt++;
            *filled += b->slots[id];
        }
        memmove(ps->wait + s, ps->wait + e, (size_t)(ps->n_wait - e) * sizeof *ps->wait);
        ps->n_wait -= e - s;
    }
    ecr_status st = ECR_OK;
    if (nt == 0 && ps->n_wait > 0)
        st = ecr_fail(ECR_E_INVALID, "batcher: a group of %d texts does not fit one batch of %d rows x %d slots",
                      (int)unit_end(b, ps->wait, 0, (size_t)ps->n_wait), B, T);
    for (int r = 0; batch && r < B; r++)
        for (int t = r * T + used[r]; t < (r + 1) * T; t++) {
            batch->tokens[t] = b->o.pad_id;
            batch->targets[t] = -1;
            batch->pos[t] = 0;
            batch->text[t] = -1;
        }
    if (batch) batch->n_texts = nt;
    free(used);
    return st;
}

/* One batch (either packer); batch NULL = dry run. */
static ecr_status pack_batch(const ecr_batcher *b, pack_state *ps, ecr_batch *batch, int64_t *filled) {
    if (b->o.group_units) return pack_units(b, ps, batch, filled);
    *filled = pack_rows(b, ps, batch);
    return ECR_OK;
}

ecr_status ecr_batcher_create(const ecr_data *d, const ecr_batcher_opts *o, ecr_batcher **out) {
    *out = NULL;
    if (!d || d->n_texts == 0) return ecr_fail(ECR_E_INVALID, "batcher: the data has no texts");
    if (o->B < 1 || o->T < 2 || (int64_t)o->B * o->T > (1LL << 30))
        return ecr_fail(ECR_E_INVALID, "batcher: B=%d T=%d is out of range (B >= 1, T >= 2)", o->B, o->T);
    if (o->window < 1 || o->window > ECR_MAX_WINDOW)
        return ecr_fail(ECR_E_INVALID, "batcher: window %d is out of range [1, %d]", o->window,
                        ECR_MAX_WINDOW);
    ecr_batcher *b = calloc(1, sizeof *b);
    if (!b) return ecr_fail(ECR_E_NOMEM, "batcher: out of memory");
    b->d = d;
    b->o = *o;
    b->slots = malloc(d->n_texts * sizeof *b->slots);
    b->ps.order = malloc(d->n_texts * sizeof *b->ps.order);
    ecr_status st = (b->slots && b->ps.order) ? ECR_OK : ecr_fail(ECR_E_NOMEM, "batcher: out of memory");
    if (!st) st = ecr_batch_create(o->B, o->T, &b->batch);
    for (size_t i = 0; !st && i < d->n_texts; i++) {
        int64_t n = d->offsets[i + 1] - d->offsets[i];
        if (n > b->stats.max_tokens) b->stats.max_tokens = n;
        if (n > o->T - 1) b->stats.n_truncated++;
        b->slots[i] = (int32_t)(n > o->T - 1 ? o->T : n + 1);
    }
    if (!st) st = start_epoch(b, &b->ps, 0);
    if (st) {
        ecr_batcher_free(b);
        return st;
    }
    *out = b;
    return ECR_OK;
}

ecr_status ecr_batcher_sequential(const ecr_data *d, int64_t tokens_per_batch, int T, ecr_batcher **out) {
    int64_t B = T > 0 ? tokens_per_batch / T : 0;
    ecr_batcher_opts bo;
    ecr_batcher_opts_default(&bo);
    bo.B = (int)(B < 1 ? 1 : B > 65536 ? 65536 : B);
    bo.T = T;
    bo.sampler = ecr_sampler_sequential;
    return ecr_batcher_create(d, &bo, out);
}

void ecr_batcher_free(ecr_batcher *b) {
    if (!b) return;
    free(b->slots);
    free(b->ps.order);
    ecr_batch_free(b->batch);
    free(b);
}

ecr_status ecr_batcher_next(ecr_batcher *b, const ecr_batch **out, int *epoch_end) {
    int64_t filled = 0;
    ecr_status pst = pack_batch(b, &b->ps, b->batch, &filled);
    if (pst) return pst;
    b->stats.batches++;
    b->stats.slots += (int64_t)b->o.B * b->o.T;
    b->stats.filled += filled;
    int end = epoch_done(&b->ps);
    if (end) {
        ecr_status st = start_epoch(b, &b->ps, b->ps.epoch + 1);
        if (st) return st;
    }
    if (epoch_end) *epoch_end = end;
    *out = b->batch;
    return ECR_OK;
}

size_t ecr_batcher_cursor_len(const ecr_batcher *b) { return 3 + (size_t)b->o.window; }

void ecr_batcher_get_cursor(const ecr_batcher *b, int64_t *c) {
    size_t len = ecr_batcher_cursor_len(b);
    memset(c, 0, len * sizeof *c);
    c[0] = b->ps.epoch;
    c[1] = (int64_t)b->ps.next;
    c[2] = b->ps.n_wait;
    for (int i = 0; i < b->ps.n_wait; i++) c[3 + i] = b->ps.wait[i];
}

ecr_status ecr_batcher_set_cursor(ecr_batcher *b, const int64_t *c, size_t len) {
    if (len != ecr_batcher_cursor_len(b))
        return ecr_fail(ECR_E_INVALID, "data cursor: %zu values, expected %zu (window %d)", len,
                        ecr_batcher_cursor_len(b), b->o.window);
    if (c[0] < 0) return ecr_fail(ECR_E_INVALID, "data cursor: epoch %lld is negative", (long long)c[0]);
    if (c[2] < 0 || c[2] > b->o.window)
        return ecr_fail(ECR_E_INVALID, "data cursor: %lld waiting texts, window is %d", (long long)c[2],
                        b->o.window);
    for (int64_t i = 0; i < c[2]; i++)
        if (c[3 + i] < 0 || (size_t)c[3 + i] >= b->d->n_texts)
            return ecr_fail(ECR_E_INVALID, "data cursor: waiting text %lld is outside the data (%zu texts)",
                            (long long)c[3 + i], b->d->n_texts);
    ecr_status st = start_epoch(b, &b->ps, c[0]);
    if (st) return st;
    if (c[1] < 0 || (size_t)c[1] > b->ps.n_order)
        return ecr_fail(ECR_E_INVALID, "data cursor: position %lld is outside the epoch (%zu texts)",
                        (long long)c[1], b->ps.n_order);
    b->ps.next = (size_t)c[1];
    b->ps.n_wait = (int)c[2];
    for (int i = 0; i < b->ps.n_wait; i++) b->ps.wait[i] = c[3 + i];
    return ECR_OK;
}

double ecr_batcher_progress(const ecr_batcher *b) {
    const pack_state *ps = &b->ps;
    double done = (double)ps->next - (double)ps->n_wait;
    return (double)ps->epoch + (ps->n_order ? done / (double)ps->n_order : 0.0);
}

ecr_status ecr_batcher_epoch_batches(const ecr_batcher *b, int64_t epoch, int64_t *n) {
    pack_state ps;
    memset(&ps, 0, sizeof ps);
    ps.order = malloc(b->d->n_texts * sizeof *ps.order);
    if (!ps.order) return ecr_fail(ECR_E_NOMEM, "batcher: out of memory");
    ecr_status st = start_epoch(b, &ps, epoch);
    int64_t count = 0;
    while (!st && !epoch_done(&ps)) {
        int64_t filled = 0;
        st = pack_batch(b, &ps, NULL, &filled);
        count++;
    }
    free(ps.order);
    *n = count;
    return st;
}

void ecr_batcher_get_stats(const ecr_batcher *b, ecr_batcher_stats *s) { *s = b->stats; }
