/* tokenizer_train.c — byte-level BPE training.
 *
 * 1. Pre-tokenize every text (in parallel, one word-count hash map per thread, merged)
 *    into unique words with their counts. Words borrow their bytes from the texts.
 * 2. Each word becomes an array of symbol ids (initially its bytes). Pair counts live in
 *    a hash map (left, right) -> pair record {count, words where the pair may occur}.
 * 3. A max-heap orders pairs by (count desc, left id asc, right id asc); entries are
 *    lazily refreshed (a popped entry whose count is stale is pushed back with the current
 *    count). Each merge rewrites only the words on the pair's list and updates the counts
 *    of the neighbouring pairs incrementally (as Hugging Face tokenizers and sentencepiece
 *    do). Pairs whose merged string would equal a special token are never merged.
 * The result does not depend on the thread count: counts are sums and ties are broken
 * by token ids, never by word order. */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void ecr_tokenizer_train_opts_default(ecr_tokenizer_train_opts *o) {
    o->vocab_size = 8192;
    o->min_frequency = 2;
    o->threads = 0;
    o->quiet = 0;
}

/* ---- word counting ----------------------------------------------------------------- */

typedef struct word_slot { const char *p; uint32_t len; uint32_t hash; int64_t count; } word_slot;

typedef struct word_map { word_slot *slot; size_t cap, n; } word_map;

static uint32_t word_hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return (uint32_t)(h ^ (h >> 32));
}

static int word_map_grow(word_map *m) {
    size_t cap = m->cap ? 2 * m->cap : 1 << 14;
    word_slot *s = calloc(cap, sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slot[i].p) continue;
        size_t h = m->slot[i].hash & (cap - 1);
        while (s[h].p) h = (h + 1) & (cap - 1);
        s[h] = m->slot[i];
    }
    free(m->slot);
    m->slot = s;
    m->cap = cap;
    return 0;
}

static int word_map_add(word_map *m, const char *p, uint32_t len, uint32_t hash, int64_t count) {
    if (2 * (m->n + 1) > m->cap && word_map_grow(m)) return -1;
    size_t h = hash & (m->cap - 1);
    for (;; h = (h + 1) & (m->cap - 1)) {
        word_slot *s = &m->slot[h];
        if (!s->p) { *s = (word_slot){p, len, hash, count}; m->n++; return 0; }
        if (s->hash == hash && s->len == len && !memcmp(s->p, p, len)) { s->count += count; return 0; }
    }
}

/* Counts the pre-tokens of texts[lo..hi) into m. Returns -1 on allocation failure. */
static int count_words(const char *const *texts, size_t lo, size_t hi, word_map *m) {
    for (size_t t = lo; t < hi; t++) {
        const char *s = texts[t];
        size_t n = strlen(s);
        for (size_t pos = 0; pos < n;) {
            size_t l = ecr_tok_pretoken(s, n, pos);
            if (l > UINT32_MAX || word_map_add(m, s + pos, (uint32_t)l, word_hash(s + pos, l), 1))
                return -1;
            pos += l;
        }
    }
    return 0;
}

/* ---- pair bookkeeping -------------------------------------------------------------- */

typedef struct pair_rec {
    int32_t a, b;
    int64_t count;
    int32_t *words;           /* words where the pair may occur (may hold stale entries) */
    int32_t n_words, cap_words;
    int32_t stamp;            /* last merge that touched it as a new pair                  */
} pair_rec;

typedef struct trainer {
    /* words */
    size_t n_words;
    int32_t *sym;             /* all symbols, words back to back */
    size_t *woff;             /* [n_words] start in sym */
    int32_t *wlen;            /* [n_words] current symbol count */
    int64_t *wcount;          /* [n_words] */
    int32_t *wstamp;          /* [n_words] last merge that rewrote the word */
    /* pairs */
    pair_rec *pair;
    size_t n_pairs, cap_pairs;
    int32_t *pslot;           /* hash (a,b) -> pair index, -1 empty */
    uint64_t pmask;
    int32_t *fresh;           /* pairs created by the current merge */
    size_t n_fresh, cap_fresh;
    int oom;
} trainer;

static inline uint64_t pair_h(int32_t a, int32_t b) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    return (k * 0x9E3779B97F4A7C15ull) >> 25;
}

static int pairs_rehash(trainer *T) {
    uint64_t slots = T->pmask ? 2 * (T->pmask + 1) : 1 << 16;
    int32_t *ps = malloc(slots * sizeof *ps);
    if (!ps) return -1;
    memset(ps, 0xFF, slots * sizeof *ps);
    for (size_t i = 0; i < T->n_pairs; i++) {
        uint64_t h = pair_h(T->pair[i].a, T->pair[i].b) & (slots - 1);
        while (ps[h] >= 0) h = (h + 1) & (slots - 1);
        ps[h] = (int32_t)i;
    }
    free(T->pslot);
    T->pslot = ps;
    T->pmask = slots - 1;
    return 0;
}

/* Index of pair (a,b); created (count 0) when absent and `create`; -1 otherwise. */
static int32_t pair_get(trainer *T, int32_t a, int32_t b, int create) {
    uint64_t h = pair_h(a, b) & T->pmask;
    for (;; h = (h + 1) & T->pmask) {
        int32_t i = T->pslot[h];
        if (i < 0) break;
        if (T->pair[i].a == a && T->pair[i].b == b) return i;
    }
    if (!create) return -1;
    if (T->n_pairs == T->cap_pairs) {
        size_t cap = T->cap_pairs ? 2 * T->cap_pairs : 1 << 16;
        pair_rec *np = realloc(T->pair, cap * sizeof *np);
        if (!np) { T->oom = 1; return -1; }
        T->pair = np;
        T->cap_pairs = cap;
    }
    int32_t i = (int32_t)T->n_pairs++;
    T->pair[i] = (pair_rec){a, b, 0, NULL, 0, 0, -1};
    T->pslot[h] = i;
    if (2 * T->n_pairs > T->pmask && pairs_rehash(T)) T->oom = 1;
    return i;
}

static void pair_note_word(trainer *T, pair_rec *p, int32_t w) {
    if (p->n_words && p->words[p->n_words - 1] == w) return;
    if (p->n_words == p->cap_words) {
        int32_t cap = p->cap_words ? 2 * p->cap_words : 4;
        int32_t *nw = realloc(p->words, (size_t)cap * sizeof *nw);
        if (!nw) { T->oom = 1; return; }
        p->words = nw;
        p->cap_words = cap;
    }
    p->words[p->n_words++] = w;
}

/* count(a,b) += delta; positive deltas record the word (and, during a merge with stamp
 * >= 0, the pair as fresh for the heap). */
static void pair_add(trainer *T, int32_t a, int32_t b, int64_t delta, int32_t w, int32_t stamp) {
    int32_t i = pair_get(T, a, b, delta > 0);
    if (i < 0) return;
    pair_rec *p = &T->pair[i];
    p->count += delta;
    if (delta <= 0) return;
    pair_note_word(T, p, w);
    if (stamp >= 0 && p->stamp != stamp) {
        p->stamp = stamp;
        if (T->n_fresh == T->cap_fresh) {
            size_t cap = T->cap_fresh ? 2 * T->cap_fresh : 1024;
            int32_t *nf = realloc(T->fresh, cap * sizeof *nf);
            if (!nf) { T->oom = 1; return; }
            T->fresh = nf;
            T->cap_fresh = cap;
        }
        T->fresh[T->n_fresh++] = i;
    }
}

/* ---- heap ------------------------------------------------------------------------- */

typedef struct heap_ent { int64_t count; int32_t a, b, pair; } heap_ent;
typedef struct pair_heap { heap_ent *h; size_t n, cap; } pair_heap;

/* x before y: higher count, then lower left id, then lower right id. */
static inline int ent_before(const heap_ent *x, const heap_ent *y) {
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(pair_heap *H, heap_ent e) {
    if (H->n == H->cap) {
        size_t cap = H->cap ? 2 * H->cap : 1 << 16;
        heap_ent *nh = realloc(H->h, cap * sizeof *nh);
        if (!nh) return -1;
        H->h = nh;
        H->cap = cap;
    }
    size_t i = H->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!ent_before(&e, &H->h[p])) break;
        H->h[i] = H->h[p];
        i = p;
    }
    H->h[i] = e;
    return 0;
}

static heap_ent heap_pop(pair_heap *H) {
    heap_ent top = H->h[0], x = H->h[--H->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= H->n) break;
        if (c + 1 < H->n && ent_before(&H->h[c + 1], &H->h[c])) c++;
        if (!ent_before(&H->h[c], &x)) break;
        H->h[i] = H->h[c];
        i = c;
    }
    if (H->n) H->h[i] = x;
    return top;
}

/* ---- vocabulary being built -------------------------------------------------------- */

typedef struct vocab_b {
    char **str;
    int n, cap;
    int32_t *slot;            /* string hash -> id */
    uint64_t mask;
} vocab_b;

static uint64_t vstr_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int32_t vocab_find(const vocab_b *v, const char *s) {
    for (uint64_t h = vstr_hash(s) & v->mask; v->slot[h] >= 0; h = (h + 1) & v->mask)
        if (!strcmp(v->str[v->slot[h]], s)) return v->slot[h];
    return -1;
}

/* Appends `s` (taken over) as the next id. */
static int vocab_add(vocab_b *v, char *s) {
    if (v->n == v->cap) return -1;
    uint64_t h = vstr_hash(s) & v->mask;
    while (v->slot[h] >= 0) h = (h + 1) & v->mask;
    v->slot[h] = v->n;
    v->str[v->n++] = s;
    return 0;
}

static int vocab_init(vocab_b *v, int cap) {
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)cap + 16) slots *= 2;
    v->str = calloc((size_t)cap, sizeof *v->str);
    v->slot = malloc(slots * sizeof *v->slot);
    v->cap = cap;
    v->n = 0;
    v->mask = slots - 1;
    if (!v->str || !v->slot) return -1;
    memset(v->slot, 0xFF, slots * sizeof *v->slot);
    char *e = strdup(ECR_TOK_EOT), *p = strdup(ECR_TOK_PAD);
    if (!e || !p) { free(e); free(p); return -1; }
    vocab_add(v, e);
    vocab_add(v, p);
    for (int b = 0; b < 256; b++) {
        char *s = calloc(5, 1);
        if (!s) return -1;
        ecr_tok_put_utf8(ecr_tok_byte_to_cp((unsigned char)b), s);
        vocab_add(v, s);
    }
    return 0;
}

/* ---- the merge loop ---------------------------------------------------------------- */

/* Rewrites word w replacing every (a,b) left to right by c and updates neighbour counts. */
static void merge_word(trainer *T, int32_t w, int32_t a, int32_t b, int32_t c, int32_t stamp) {
    int32_t *s = T->sym + T->woff[w];
    int32_t n = T->wlen[w], j = 0;
    int64_t cnt = T->wcount[w];
    for (int32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            if (j > 0) {
                pair_add(T, s[j - 1], a, -cnt, w, -1);
                pair_add(T, s[j - 1], c, cnt, w, stamp);
            }
            if (i + 2 < n) {
                pair_add(T, b, s[i + 2], -cnt, w, -1);
                pair_add(T, c, s[i + 2], cnt, w, stamp);
            }
            s[j++] = c;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    T->wlen[w] = j;
}

static ecr_status setup_words(trainer *T, const word_map *m) {
    size_t total = 0;
    T->n_words = m->n;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slot[i].p) total += m->slot[i].len;
    T->sym = malloc((total + 1) * sizeof *T->sym);
    T->woff = malloc((m->n + 1) * sizeof *T->woff);
    T->wlen = malloc((m->n + 1) * sizeof *T->wlen);
    T->wcount = malloc((m->n + 1) * sizeof *T->wcount);
    T->wstamp = malloc((m->n + 1) * sizeof *T->wstamp);
    if (!T->sym || !T->woff || !T->wlen || !T->wcount || !T->wstamp || pairs_rehash(T))
        return ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory (%zu words)", m->n);
    size_t w = 0, at = 0;
    for (size_t i = 0; i < m->cap; i++) {
        const word_slot *s = &m->slot[i];
        if (!s->p) continue;
        T->woff[w] = at;
        T->wlen[w] = (int32_t)s->len;
        T->wcount[w] = s->count;
        T->wstamp[w] = -1;
        for (uint32_t k = 0; k < s->len; k++) T->sym[at + k] = 2 + (unsigned char)s->p[k];
        for (uint32_t k = 0; k + 1 < s->len; k++)
            pair_add(T, T->sym[at + k], T->sym[at + k + 1], s->count, (int32_t)w, -1);
        at += s->len;
        w++;
    }
    if (T->oom) return ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory");
    return ECR_OK;
}

static int is_special_string(const char *s) {
    return !strcmp(s, ECR_TOK_EOT) || !strcmp(s, ECR_TOK_PAD);
}

/* Runs merges until the vocabulary is full or no pair reaches min_frequency. Appends the
 * merges to pairs_out (room for vocab_size pairs). */
static ecr_status merge_loop(trainer *T, vocab_b *v, const ecr_tokenizer_train_opts *o,
                             int32_t *pairs_out, int *n_merges) {
    pair_heap H = {0};
    ecr_status st = ECR_OK;
    for (size_t i = 0; i < T->n_pairs && !st; i++)
        if (T->pair[i].count > 0 &&
            heap_push(&H, (heap_ent){T->pair[i].count, T->pair[i].a, T->pair[i].b, (int32_t)i}))
            st = ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory");
    double t0 = ecr_now(), last = t0;
    int nm = 0;
    int32_t target = o->vocab_size;
    while (!st && v->n < target && H.n) {
        heap_ent e = heap_pop(&H);
        pair_rec *p = &T->pair[e.pair];
        if (e.count != p->count) {
            if (p->count > 0 && heap_push(&H, (heap_ent){p->count, p->a, p->b, e.pair}))
                st = ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory");
            continue;
        }
        if (e.count < o->min_frequency) break;
        size_t la = strlen(v->str[e.a]), lb = strlen(v->str[e.b]);
        char *cat = malloc(la + lb + 1);
        if (!cat) { st = ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory"); break; }
        memcpy(cat, v->str[e.a], la);
        memcpy(cat + la, v->str[e.b], lb + 1);
        if (is_special_string(cat)) { free(cat); continue; } /* never produce a special */
        int32_t c = vocab_find(v, cat);
        if (c < 0) {
            c = v->n;
            vocab_add(v, cat);
        } else {
            free(cat);
        }
        pairs_out[2 * nm] = e.a;
        pairs_out[2 * nm + 1] = e.b;
        nm++;
        /* Rewrite the words of this pair. Its list is not appended to meanwhile (new pairs
         * all involve c), but the pair array may move: keep the list, not the pointer. */
        int32_t *list = p->words, n_list = p->n_words;
        p->words = NULL;
        p->n_words = p->cap_words = 0;
        T->n_fresh = 0;
        for (int32_t k = 0; k < n_list; k++) {
            int32_t w = list[k];
            if (T->wstamp[w] == nm) continue;
            T->wstamp[w] = nm;
            merge_word(T, w, e.a, e.b, c, nm);
        }
        free(list);
        T->pair[e.pair].count = 0;
        for (size_t k = 0; k < T->n_fresh && !st; k++) {
            pair_rec *q = &T->pair[T->fresh[k]];
            if (q->count > 0 && heap_push(&H, (heap_ent){q->count, q->a, q->b, T->fresh[k]}))
                st = ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory");
        }
        if (T->oom && !st) st = ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory");
        double now = ecr_now();
        if (!o->quiet && now - last > 0.5) {
            last = now;
            fprintf(stderr, "\rtokenizer: %d/%d tokens, %d merges, %.1f s", v->n, target, nm, now - t0);
        }
    }
    if (!o->quiet)
        fprintf(stderr, "\rtokenizer: %d tokens, %d merges in %.1f s          \n", v->n, nm,
                ecr_now() - t0);
    free(H.h);
    *n_merges = nm;
    return st;
}

static void trainer_free(trainer *T) {
    for (size_t i = 0; i < T->n_pairs; i++) free(T->pair[i].words);
    free(T->pair);
    free(T->pslot);
    free(T->fresh);
    free(T->sym);
    free(T->woff);
    free(T->wlen);
    free(T->wcount);
    free(T->wstamp);
}

/* Counts words of all texts with `threads` threads into *out (slots borrow the texts). */
static ecr_status count_all(const char *const *texts, size_t n, int threads, word_map *out) {
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(texts[i]), bad = ecr_tok_utf8_check(texts[i], len);
        if (bad < len)
            return ecr_fail(ECR_E_INVALID, "tokenizer train: text %zu: invalid UTF-8 at byte %zu",
                            i + 1, bad);
    }
    if (threads < 1) threads = 1;
    if ((size_t)threads > n / 64 + 1) threads = (int)(n / 64 + 1);
    word_map *local = calloc((size_t)threads, sizeof *local);
    if (!local) return ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory");
    int fail = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(| : fail)
#endif
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        size_t lo = n * (size_t)t / (size_t)threads, hi = n * (size_t)(t + 1) / (size_t)threads;
        fail |= count_words(texts, lo, hi, &local[t]) != 0;
    }
    *out = local[0];
    for (int t = 1; t < threads; t++) {
        for (size_t i = 0; i < local[t].cap && !fail; i++) {
            const word_slot *s = &local[t].slot[i];
            if (s->p && word_map_add(out, s->p, s->len, s->hash, s->count)) fail = 1;
        }
        free(local[t].slot);
    }
    free(local);
    if (fail) {
        free(out->slot);
        memset(out, 0, sizeof *out);
        return ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory");
    }
    return ECR_OK;
}

ecr_status ecr_tokenizer_train(const char *const *texts, size_t n,
                               const ecr_tokenizer_train_opts *opts, ecr_tokenizer **out) {
    *out = NULL;
    ecr_tokenizer_train_opts o;
    if (opts) o = *opts; else ecr_tokenizer_train_opts_default(&o);
    if (o.vocab_size < 258 || o.vocab_size > (1 << 22))
        return ecr_fail(ECR_E_INVALID, "tokenizer train: vocab_size %d is outside [258, %d] "
                        "(2 specials + 256 bytes at least)", o.vocab_size, 1 << 22);
    if (o.min_frequency < 1) o.min_frequency = 1;
    int threads = o.threads;
#ifdef _OPENMP
    if (threads <= 0) threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    double t0 = ecr_now();
    word_map words = {0};
    ecr_status st = count_all(texts, n, threads, &words);
    if (st) return st;
    if (!o.quiet)
        fprintf(stderr, "tokenizer: %zu texts, %zu unique words (%.1f s)\n", n, words.n, ecr_now() - t0);
    trainer T = {0};
    vocab_b v = {0};
    int32_t *pairs = malloc(2 * (size_t)o.vocab_size * sizeof *pairs);
    int nm = 0;
    if (!pairs || vocab_init(&v, o.vocab_size)) st = ecr_fail(ECR_E_NOMEM, "tokenizer train: out of memory");
    if (!st) st = setup_words(&T, &words);
    free(words.slot);
    if (!st) st = merge_loop(&T, &v, &o, pairs, &nm);
    trainer_free(&T);
    free(v.slot);
    if (!st) {
        int specials[2] = {0, 1};
        st = ecr_tok_build(v.str, v.n, specials, 2, pairs, nm, "tokenizer train", out);
        v.str = NULL;
    }
    if (v.str)
        for (int i = 0; i < v.n; i++) free(v.str[i]);
    free(v.str);
    free(pairs);
    return st;
}
