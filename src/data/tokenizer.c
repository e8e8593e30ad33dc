/* tokenizer.c — byte-level BPE: UTF-8 validation, the pre-tokenizer (ECR_TOK_SPLIT_REGEX
 * implemented with utf8proc categories), BPE merging, encode/decode, and building a
 * tokenizer from a vocabulary and merges. tokenizer.json I/O is in tokenizer_json.c,
 * training in tokenizer_train.c. */
#include "tokenizer_internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- GPT-2 byte-to-unicode --------------------------------------------------------- */

/* Bytes that stand for themselves: '!'..'~', 0xA1..0xAC, 0xAE..0xFF. The others (controls,
 * space, 0x7F..0xA0, 0xAD) map to U+0100, U+0101, ... in byte order. */
static int byte_is_printable(int b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

uint32_t ecr_tok_byte_to_cp(unsigned char b) {
    if (byte_is_printable(b)) return b;
    uint32_t n = 0;
    for (int x = 0; x < b; x++)
        if (!byte_is_printable(x)) n++;
    return 256 + n;
}

int ecr_tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable((int)cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1; /* 68 bytes are remapped */
    uint32_t n = cp - 256;
    for (int x = 0; x < 256; x++)
        if (!byte_is_printable(x) && n-- == 0) return x;
    return -1;
}

int ecr_tok_put_utf8(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xC0 | (cp >> 6)); o[1] = (unsigned char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- UTF-8 ------------------------------------------------------------------------- */

size_t ecr_tok_utf8_check(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) { /* ASCII fast path */
            uint64_t v;
            memcpy(&v, p + i, 8);
            if (!(v & 0x8080808080808080ull)) { i += 8; continue; }
        }
        unsigned c = p[i];
        if (c < 0x80) { i++; continue; }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }            /* no overlongs     */
        else if (c >= 0xE1 && c <= 0xEC) need = 2;
        else if (c == 0xED) { need = 2; hi = 0x9F; }            /* no surrogates    */
        else if (c >= 0xEE && c <= 0xEF) need = 2;
        else if (c == 0xF0) { need = 3; lo = 0x90; }            /* no overlongs     */
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; }            /* <= U+10FFFF      */
        else return i;                                           /* C0, C1, F5.., stray */
        if (i + need >= n) return i;                             /* truncated at the end */
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80) return i;
        i += need + 1;
    }
    return n;
}

/* Decodes the code point at s[i] of valid UTF-8; returns its length. */
static inline size_t dec(const unsigned char *s, size_t i, uint32_t *cp) {
    unsigned c = s[i];
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xE0) { *cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu); return 2; }
    if (c < 0xF0) {
        *cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
        return 3;
    }
    *cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
          (s[i + 3] & 0x3Fu);
    return 4;
}

/* ---- character classes -------------------------------------------------------------- */

/* Unicode White_Space (PropList.txt; unchanged since Unicode 6.3). */
static int is_white_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

static int class_slow(uint32_t c) {
    if (is_white_space(c)) return ECR_TOK_SPACE;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
        return ECR_TOK_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return ECR_TOK_NUMBER;
    default:
        return ECR_TOK_OTHER;
    }
}

/* Classes of the Basic Multilingual Plane, two bits each, filled once. */
static uint8_t g_bmp_class[65536 / 4];
static pthread_once_t g_bmp_once = PTHREAD_ONCE_INIT;

static void bmp_init(void) {
    for (uint32_t c = 0; c < 65536; c++)
        g_bmp_class[c >> 2] |= (uint8_t)(class_slow(c) << ((c & 3) * 2));
}

static inline int cls(uint32_t c) {
    if (c < 65536) return (g_bmp_class[c >> 2] >> ((c & 3) * 2)) & 3;
    return class_slow(c);
}

int ecr_tok_class(uint32_t cp) {
    pthread_once(&g_bmp_once, bmp_init);
    return cls(cp);
}

/* ---- pre-tokenizer ------------------------------------------------------------------- */

/* End of the run of class k that starts at byte i. */
static size_t run_end(const unsigned char *s, size_t n, size_t i, int k) {
    while (i < n) {
        uint32_t c;
        size_t l = dec(s, i, &c);
        if (cls(c) != k) break;
        i += l;
    }
    return i;
}

/* Mirrors ECR_TOK_SPLIT_REGEX, alternative by alternative, at position pos:
 *   ' ?[LM]+ | ?N+ | ?O+'  — an ASCII space followed by a non-space c takes the run of c's
 *                            class; otherwise a non-space starts a run of its own class;
 *   'W+(?!\P{White_Space})' — a whitespace run reaching the end is taken whole; one followed
 *                            by a non-space gives back its last character (backtracking);
 *   'W+'                   — a single whitespace character followed by a non-space. */
static inline size_t pretoken(const char *text, size_t n, size_t pos) {
    const unsigned char *s = (const unsigned char *)text;
    uint32_t c;
    size_t l = dec(s, pos, &c);
    int k = cls(c);
    if (c == ' ' && pos + l < n) {
        uint32_t c2;
        size_t l2 = dec(s, pos + l, &c2);
        int k2 = cls(c2);
        if (k2 != ECR_TOK_SPACE) return run_end(s, n, pos + l + l2, k2) - pos;
    }
    if (k != ECR_TOK_SPACE) return run_end(s, n, pos + l, k) - pos;
    size_t j = pos + l, last = pos;
    while (j < n) {
        size_t lj = dec(s, j, &c);
        if (cls(c) != ECR_TOK_SPACE) break;
        last = j;
        j += lj;
    }
    if (j == n) return n - pos;
    if (last > pos) return last - pos;
    return j - pos;
}

size_t ecr_tok_pretoken(const char *text, size_t n, size_t pos) {
    pthread_once(&g_bmp_once, bmp_init);
    return pretoken(text, n, pos);
}

/* ---- BPE ----------------------------------------------------------------------------- */

static inline uint64_t mhash(uint64_t key) { return (key * 0x9E3779B97F4A7C15ull) >> 29; }

static inline int32_t mrank(const ecr_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint64_t h = mhash(key) & t->mmask;
    for (;;) {
        uint64_t k = t->mkey[h];
        if (k == key) return t->mrank[h];
        if (k == UINT64_MAX) return -1;
        h = (h + 1) & t->mmask;
    }
}

int32_t ecr_tok_merge_rank(const ecr_tokenizer *tok, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return -1;
    return mrank(tok, left, right);
}

#define SMALL_WORD 96

/* Short words: ranks of adjacent pairs in an array; each step merges the leftmost pair of
 * lowest rank and refreshes its two neighbours. */
static size_t bpe_small(const ecr_tokenizer *t, int32_t *sym, size_t m) {
    int32_t rk[SMALL_WORD];
    for (size_t i = 0; i + 1 < m; i++) {
        int32_t r = mrank(t, sym[i], sym[i + 1]);
        rk[i] = r < 0 ? INT32_MAX : r;
    }
    while (m > 1) {
        int32_t best = INT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rk[i] < best) { best = rk[i]; bi = i; }
        if (best == INT32_MAX) break;
        sym[bi] = t->merge[3 * (size_t)best + 2];
        if (bi + 2 < m) {
            memmove(sym + bi + 1, sym + bi + 2, (m - bi - 2) * sizeof *sym);
            memmove(rk + bi + 1, rk + bi + 2, (m - bi - 2) * sizeof *rk); /* rk has m-1 items */
        }
        m--;
        if (bi > 0) {
            int32_t r = mrank(t, sym[bi - 1], sym[bi]);
            rk[bi - 1] = r < 0 ? INT32_MAX : r;
        }
        if (bi + 1 < m) {
            int32_t r = mrank(t, sym[bi], sym[bi + 1]);
            rk[bi] = r < 0 ? INT32_MAX : r;
        }
    }
    return m;
}

typedef struct heap_item { int32_t rank, pos; } heap_item;

static inline int item_less(heap_item a, heap_item b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(heap_item *h, size_t *n, heap_item x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_less(x, h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static heap_item heap_pop(heap_item *h, size_t *n) {
    heap_item top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && item_less(h[c + 1], h[c])) c++;
        if (!item_less(h[c], x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

/* Long words: a linked list of symbols and a heap of (rank, position) candidates, stale
 * entries skipped on pop (Hugging Face's Word::merge_all). Returns 0 on allocation failure
 * with sym untouched beyond the initial bytes (caller falls back to nothing: see below). */
static size_t bpe_heap(const ecr_tokenizer *t, int32_t *sym, size_t m) {
    int32_t *next = malloc(m * sizeof *next), *prev = malloc(m * sizeof *prev);
    heap_item *h = malloc(3 * m * sizeof *h);
    if (!next || !prev || !h) { free(next); free(prev); free(h); return 0; }
    size_t hn = 0;
    for (size_t i = 0; i < m; i++) {
        next[i] = i + 1 < m ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
        if (i + 1 < m) {
            int32_t r = mrank(t, sym[i], sym[i + 1]);
            if (r >= 0) heap_push(h, &hn, (heap_item){r, (int32_t)i});
        }
    }
    while (hn) {
        heap_item it = heap_pop(h, &hn);
        int32_t p = it.pos, q;
        if (sym[p] < 0 || (q = next[p]) < 0) continue;
        if (mrank(t, sym[p], sym[q]) != it.rank) continue;
        sym[p] = t->merge[3 * (size_t)it.rank + 2];
        sym[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0) {
            int32_t r = mrank(t, sym[prev[p]], sym[p]);
            if (r >= 0) heap_push(h, &hn, (heap_item){r, prev[p]});
        }
        if (next[p] >= 0) {
            int32_t r = mrank(t, sym[p], sym[next[p]]);
            if (r >= 0) heap_push(h, &hn, (heap_item){r, p});
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) sym[k++] = sym[i];
    free(next);
    free(prev);
    free(h);
    return k;
}

size_t ecr_tok_bpe_word(const ecr_tokenizer *tok, const unsigned char *w, size_t n,
                        int32_t *out, int force_heap) {
    for (size_t i = 0; i < n; i++) out[i] = tok->byte_id[w[i]];
    if (n <= SMALL_WORD && !force_heap) return bpe_small(tok, out, n);
    return bpe_heap(tok, out, n);
}

/* ---- public: encode / decode --------------------------------------------------------- */

ecr_status ecr_tokenizer_encode(const ecr_tokenizer *tok, const char *text, size_t len,
                                int32_t *ids, size_t cap, size_t *n_out) {
    *n_out = 0;
    size_t bad = ecr_tok_utf8_check(text, len);
    if (bad < len) return ecr_fail(ECR_E_INVALID, "invalid UTF-8 at byte %zu", bad);
    pthread_once(&g_bmp_once, bmp_init);
    int32_t small[256], *buf = small;
    size_t bufcap = 256, total = 0;
    for (size_t pos = 0; pos < len;) {
        size_t wl = pretoken(text, len, pos);
        if (wl > bufcap) {
            if (buf != small) free(buf);
            buf = malloc(wl * sizeof *buf);
            if (!buf) return ecr_fail(ECR_E_NOMEM, "tokenizer: out of memory (word of %zu bytes)", wl);
            bufcap = wl;
        }
        size_t k = ecr_tok_bpe_word(tok, (const unsigned char *)text + pos, wl, buf, 0);
        if (k == 0) {
            if (buf != small) free(buf);
            return ecr_fail(ECR_E_NOMEM, "tokenizer: out of memory (word of %zu bytes)", wl);
        }
        for (size_t i = 0; i < k; i++, total++)
            if (total < cap) ids[total] = buf[i];
        pos += wl;
    }
    if (buf != small) free(buf);
    *n_out = total;
    return ECR_OK;
}

ecr_status ecr_tokenizer_decode(const ecr_tokenizer *tok, const int32_t *ids, size_t n,
                                char *out, size_t cap, size_t *len_out) {
    size_t total = 0;
    *len_out = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_vocab)
            return ecr_fail(ECR_E_INVALID, "token %zu: id %d is out of range [0, %d)", i,
                            (int)id, tok->n_vocab);
        size_t b = tok->off[id], e = tok->off[id + 1];
        for (size_t j = b; j < e; j++, total++)
            if (total < cap) out[total] = (char)tok->bytes[j];
    }
    if (cap) out[total < cap ? total : cap - 1] = '\0';
    *len_out = total;
    return ECR_OK;
}

int ecr_tokenizer_vocab_size(const ecr_tokenizer *tok) { return tok->n_vocab; }
int ecr_tokenizer_eot_id(const ecr_tokenizer *tok) { return tok->eot_id; }
int ecr_tokenizer_pad_id(const ecr_tokenizer *tok) { return tok->pad_id; }

const char *ecr_tokenizer_token(const ecr_tokenizer *tok, int id) {
    if (id < 0 || id >= tok->n_vocab) return NULL;
    return tok->str[id];
}

size_t ecr_tokenizer_token_bytes(const ecr_tokenizer *tok, int id) {
    if (id < 0 || id >= tok->n_vocab) return 0;
    return tok->off[id + 1] - tok->off[id];
}

void ecr_tokenizer_free(ecr_tokenizer *tok) {
    if (!tok) return;
    if (tok->str)
        for (int i = 0; i < tok->n_vocab; i++) free(tok->str[i]);
    free(tok->str);
    free(tok->bytes);
    free(tok->off);
    free(tok->special);
    free(tok->merge);
    free(tok->mkey);
    free(tok->mrank);
    free(tok);
}

/* ---- building ------------------------------------------------------------------------ */

/* A string -> id open-addressing map over the token strings (borrowed). */
typedef struct str_index {
    int32_t *slot;            /* id or -1 */
    uint64_t mask;
    char **str;
} str_index;

static uint64_t str_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 31);
}

static int32_t str_find(const str_index *x, const char *s, size_t n) {
    for (uint64_t h = str_hash(s, n) & x->mask;; h = (h + 1) & x->mask) {
        int32_t id = x->slot[h];
        if (id < 0) return -1;
        if (strlen(x->str[id]) == n && !memcmp(x->str[id], s, n)) return id;
    }
}

/* Raw bytes of a byte-level token string, or -1 if a character stands for no byte. */
static long str_to_bytes(const char *s, unsigned char *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), k = 0;
    if (ecr_tok_utf8_check(s, n) != n) return -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += dec(p, i, &cp);
        int b = ecr_tok_cp_to_byte(cp);
        if (b < 0) return -1;
        out[k++] = (unsigned char)b;
    }
    return (long)k;
}

static ecr_status build_vocab(ecr_tokenizer *t, str_index *x, const char *label) {
    size_t total = 0;
    for (int i = 0; i < t->n_vocab; i++) total += strlen(t->str[i]);
    t->bytes = malloc(total + 1);
    if (!t->bytes) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", label);
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    size_t at = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        const char *s = t->str[i];
        size_t n = strlen(s);
        if (str_find(x, s, n) >= 0)
            return ecr_fail(ECR_E_INVALID, "%s: vocab: token \"%s\" appears twice", label, s);
        uint64_t h = str_hash(s, n) & x->mask;
        while (x->slot[h] >= 0) h = (h + 1) & x->mask;
        x->slot[h] = i;
        t->off[i] = (uint32_t)at;
        if (t->special[i]) continue;
        long k = str_to_bytes(s, t->bytes + at);
        if (k <= 0)
            return ecr_fail(ECR_E_INVALID, "%s: vocab: token %d \"%s\" is not a byte-level "
                            "(GPT-2 byte-to-unicode) string", label, i, s);
        if (k == 1 && t->byte_id[t->bytes[at]] < 0) t->byte_id[t->bytes[at]] = i;
        at += (size_t)k;
    }
    t->off[t->n_vocab] = (uint32_t)at;
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] < 0) {
            char u[5] = {0};
            ecr_tok_put_utf8(ecr_tok_byte_to_cp((unsigned char)b), u);
            return ecr_fail(ECR_E_INVALID, "%s: vocab: no token for byte 0x%02x (\"%s\" missing)",
                            label, b, u);
        }
    return ECR_OK;
}

static ecr_status build_merges(ecr_tokenizer *t, const str_index *x, const int32_t *pairs,
                               const char *label) {
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)t->n_merges + 16) slots *= 2;
    t->mmask = slots - 1;
    t->merge = malloc((3 * (size_t)t->n_merges + 1) * sizeof *t->merge);
    t->mkey = malloc(slots * sizeof *t->mkey);
    t->mrank = malloc(slots * sizeof *t->mrank);
    if (!t->merge || !t->mkey || !t->mrank) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", label);
    memset(t->mkey, 0xFF, slots * sizeof *t->mkey);
    char *cat = NULL;
    size_t catcap = 0;
    for (int r = 0; r < t->n_merges; r++) {
        int32_t a = pairs[2 * r], b = pairs[2 * r + 1];
        if (a < 0 || a >= t->n_vocab || b < 0 || b >= t->n_vocab || t->special[a] || t->special[b]) {
            free(cat);
            return ecr_fail(ECR_E_INVALID, "%s: merges[%d]: a side is not a byte-level vocab token",
                            label, r);
        }
        size_t la = strlen(t->str[a]), lb = strlen(t->str[b]);
        if (la + lb + 1 > catcap) {
            catcap = 2 * (la + lb + 1);
            char *nc = realloc(cat, catcap);
            if (!nc) { free(cat); return ecr_fail(ECR_E_NOMEM, "%s: out of memory", label); }
            cat = nc;
        }
        memcpy(cat, t->str[a], la);
        memcpy(cat + la, t->str[b], lb);
        int32_t c = str_find(x, cat, la + lb);
        if (c < 0 || t->special[c]) {
            cat[la + lb] = '\0';
            ecr_status st = ecr_fail(ECR_E_INVALID, "%s: merges[%d]: \"%s %s\": result \"%s\" is "
                                     "not in the vocab", label, r, t->str[a], t->str[b], cat);
            free(cat);
            return st;
        }
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        uint64_t h = mhash(key) & t->mmask;
        while (t->mkey[h] != UINT64_MAX && t->mkey[h] != key) h = (h + 1) & t->mmask;
        if (t->mkey[h] == key) {
            free(cat);
            return ecr_fail(ECR_E_INVALID, "%s: merges[%d]: \"%s %s\" repeats merges[%d]", label,
                            r, t->str[a], t->str[b], (int)t->mrank[h]);
        }
        t->mkey[h] = key;
        t->mrank[h] = r;
        t->merge[3 * r] = a;
        t->merge[3 * r + 1] = b;
        t->merge[3 * r + 2] = c;
    }
    free(cat);
    return ECR_OK;
}

static ecr_status build_specials(ecr_tokenizer *t, const int *special_ids, int n_special,
                                 const char *label) {
    t->eot_id = t->pad_id = -1;
    for (int k = 0; k < n_special; k++) {
        int id = special_ids[k];
        if (id < 0 || id >= t->n_vocab)
            return ecr_fail(ECR_E_INVALID, "%s: added_tokens: id %d is outside the vocab", label, id);
        t->special[id] = 1;
        if (!strcmp(t->str[id], ECR_TOK_EOT)) t->eot_id = id;
        if (!strcmp(t->str[id], ECR_TOK_PAD)) t->pad_id = id;
    }
    if (t->eot_id < 0)
        return ecr_fail(ECR_E_INVALID, "%s: added_tokens: no special \"%s\"", label, ECR_TOK_EOT);
    if (t->pad_id < 0)
        return ecr_fail(ECR_E_INVALID, "%s: added_tokens: no special \"%s\"", label, ECR_TOK_PAD);
    return ECR_OK;
}

ecr_status ecr_tok_build(char **strs, int n_vocab, const int *special_ids, int n_special,
                         const int32_t *pairs, int n_merges, const char *label,
                         ecr_tokenizer **out) {
    *out = NULL;
    pthread_once(&g_bmp_once, bmp_init);
    ecr_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        for (int i = 0; i < n_vocab; i++) free(strs[i]);
        free(strs);
        return ecr_fail(ECR_E_NOMEM, "%s: out of memory", label);
    }
    t->str = strs;
    t->n_vocab = n_vocab;
    t->n_merges = n_merges;
    for (int i = 0; i < n_vocab; i++)
        if (!strs[i]) {
            ecr_tokenizer_free(t);
            return ecr_fail(ECR_E_INVALID, "%s: vocab: no token has id %d", label, i);
        }
    uint64_t slots = 16;
    while (slots < 2 * (uint64_t)n_vocab + 16) slots *= 2;
    str_index x = {malloc(slots * sizeof(int32_t)), slots - 1, strs};
    t->off = malloc(((size_t)n_vocab + 1) * sizeof *t->off);
    t->special = calloc((size_t)n_vocab + 1, 1);
    ecr_status st = ECR_OK;
    if (!x.slot || !t->off || !t->special) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", label);
    if (!st) {
        memset(x.slot, 0xFF, slots * sizeof(int32_t));
        st = build_specials(t, special_ids, n_special, label);
    }
    if (!st) st = build_vocab(t, &x, label);
    if (!st) st = build_merges(t, &x, pairs, label);
    free(x.slot);
    if (st) { ecr_tokenizer_free(t); return st; }
    *out = t;
    return ECR_OK;
}
