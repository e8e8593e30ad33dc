/* test_tokenizer.c — byte-level BPE tokenizer: byte map, UTF-8 validation, the
 * pre-tokenizer against an independent regex oracle, hand-computed merges on toy corpora,
 * encode/decode round trips on all lo10 validation texts and on random UTF-8, encoding
 * against a naive reference BPE, invalid input, tokenizer.json save/load, determinism.
 * Run from the repository root (needs build/data/lo10/{train,valid}.jsonl: `make data`). */
#include "test.h"
#include "tokenizer_internal.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

#define TRAIN_PATH "build/data/lo10/train.jsonl"
#define VALID_PATH "build/data/lo10/valid.jsonl"

/* ---- helpers ----------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Encodes `s` fully (allocating); returns ids (caller frees) and count, NULL on failure. */
static int32_t *encode_all(const ecr_tokenizer *t, const char *s, size_t len, size_t *n) {
    CHECK_OK(ecr_tokenizer_encode(t, s, len, NULL, 0, n));
    int32_t *ids = malloc((*n + 1) * sizeof *ids);
    size_t n2 = 0;
    CHECK_OK(ecr_tokenizer_encode(t, s, len, ids, *n + 1, &n2));
    CHECK(n2 == *n);
    return ids;
}

static int roundtrip_ok(const ecr_tokenizer *t, const char *s, size_t len) {
    size_t n = 0, dl = 0;
    int32_t *ids = encode_all(t, s, len, &n);
    char *out = malloc(len + 1);
    int ok = ecr_tokenizer_decode(t, ids, n, out, len + 1, &dl) == ECR_OK && dl == len &&
             !memcmp(out, s, len) && out[len] == '\0';
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) bytes += ecr_tokenizer_token_bytes(t, ids[i]);
    ok = ok && bytes == len && n <= len;
    free(ids);
    free(out);
    return ok;
}

/* ---- independent oracle: the regex, alternative by alternative, with backtracking --- */

static int oracle_ws(uint32_t c) { /* Unicode PropList.txt White_Space */
    static const uint32_t ws[] = {0x9, 0xA, 0xB, 0xC, 0xD, 0x20, 0x85, 0xA0, 0x1680, 0x2000,
                                  0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
                                  0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
    for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
        if (ws[i] == c) return 1;
    return 0;
}

static int oracle_class(uint32_t c) {
    if (oracle_ws(c)) return ECR_TOK_SPACE;
    const char *cat = utf8proc_category_string((utf8proc_int32_t)c);
    if (cat[0] == 'L' || cat[0] == 'M') return ECR_TOK_LETTER;
    if (cat[0] == 'N') return ECR_TOK_NUMBER;
    return ECR_TOK_OTHER;
}

/* ' ?K+' at i of cps[0..n): length in code points or 0. */
static size_t alt_space_run(const uint32_t *cp, size_t n, size_t i, int k) {
    for (int take = (i < n && cp[i] == ' '); take >= 0; take--) {
        size_t j = i + (size_t)take, e = j;
        while (e < n && oracle_class(cp[e]) == k) e++;
        if (e > j) return e - i;
    }
    return 0;
}

/* 'W+(?!\P{White_Space})': greedy, then back off until the lookahead holds. */
static size_t alt_ws_lookahead(const uint32_t *cp, size_t n, size_t i) {
    size_t e = i;
    while (e < n && oracle_ws(cp[e])) e++;
    for (; e > i; e--)
        if (e == n || oracle_ws(cp[e])) return e - i;
    return 0;
}

static size_t alt_ws(const uint32_t *cp, size_t n, size_t i) {
    size_t e = i;
    while (e < n && oracle_ws(cp[e])) e++;
    return e - i;
}

static size_t oracle_match(const uint32_t *cp, size_t n, size_t i) {
    size_t l;
    if ((l = alt_space_run(cp, n, i, ECR_TOK_LETTER))) return l;
    if ((l = alt_space_run(cp, n, i, ECR_TOK_NUMBER))) return l;
    if ((l = alt_space_run(cp, n, i, ECR_TOK_OTHER))) return l;
    if ((l = alt_ws_lookahead(cp, n, i))) return l;
    return alt_ws(cp, n, i);
}

/* Piece lengths in bytes of valid UTF-8 s by the oracle; returns count. */
static size_t oracle_pieces(const char *s, size_t len, size_t *out) {
    uint32_t *cp = malloc((len + 1) * sizeof *cp);
    size_t *boff = malloc((len + 2) * sizeof *boff), n = 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t c;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
        boff[n] = i;
        cp[n++] = (uint32_t)c;
        i += (size_t)(l > 0 ? l : 1);
    }
    boff[n] = len;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t m = oracle_match(cp, n, i);
        if (!m) { m = 1; out[k++] = (size_t)-1; } /* cannot happen: every char matches */
        else out[k++] = boff[i + m] - boff[i];
        i += m;
    }
    free(cp);
    free(boff);
    return k;
}

/* Naive BPE: repeatedly merge the leftmost pair of lowest rank. */
static size_t naive_bpe(const ecr_tokenizer *t, const unsigned char *w, size_t n, int32_t *sym) {
    for (size_t i = 0; i < n; i++) sym[i] = t->byte_id[w[i]];
    for (;;) {
        int32_t best = -1;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t r = ecr_tok_merge_rank(t, sym[i], sym[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) { best = r; bi = i; }
        }
        if (best < 0) return n;
        sym[bi] = t->merge[3 * best + 2];
        memmove(sym + bi + 1, sym + bi + 2, (n - bi - 2) * sizeof *sym);
        n--;
    }
}

/* Encoding by oracle pieces + naive BPE; compares with ecr_tokenizer_encode. */
static int matches_reference(const ecr_tokenizer *t, const char *s, size_t len) {
    size_t *pieces = malloc((len + 1) * sizeof *pieces);
    int32_t *ref = malloc((len + 1) * sizeof *ref), *tmp = malloc((len + 1) * sizeof *tmp);
    size_t np = oracle_pieces(s, len, pieces), nr = 0, at = 0;
    int ok = 1;
    for (size_t p = 0; p < np; p++) {
        if (pieces[p] == (size_t)-1) { ok = 0; break; }
        size_t k = naive_bpe(t, (const unsigned char *)s + at, pieces[p], tmp);
        /* both fast paths of the library agree with the naive loop */
        int32_t *h = malloc((pieces[p] + 1) * sizeof *h);
        size_t k1 = ecr_tok_bpe_word(t, (const unsigned char *)s + at, pieces[p], h, 1);
        ok = ok && k1 == k && !memcmp(h, tmp, k * sizeof *h);
        size_t k0 = ecr_tok_bpe_word(t, (const unsigned char *)s + at, pieces[p], h, 0);
        ok = ok && k0 == k && !memcmp(h, tmp, k * sizeof *h);
        free(h);
        memcpy(ref + nr, tmp, k * sizeof *tmp);
        nr += k;
        at += pieces[p];
    }
    size_t n = 0;
    int32_t *ids = encode_all(t, s, len, &n);
    ok = ok && n == nr && !memcmp(ids, ref, n * sizeof *ids);
    free(ids);
    free(ref);
    free(tmp);
    free(pieces);
    return ok;
}

/* ---- shared fixtures --------------------------------------------------------------- */

static ecr_corpus *g_train, *g_valid;
static ecr_tokenizer *g_tok; /* vocab 1024 on the first 3000 training texts */

static void load_fixtures(void) {
    CHECK_OK(ecr_corpus_read(TRAIN_PATH, &g_train));
    CHECK_OK(ecr_corpus_read(VALID_PATH, &g_valid));
    if (!g_train || !g_valid) {
        fprintf(stderr, "test_tokenizer: run from the repository root after `make data`\n");
        exit(1);
    }
    ecr_tokenizer_train_opts o;
    ecr_tokenizer_train_opts_default(&o);
    o.vocab_size = 1024;
    o.quiet = 1;
    size_t n = g_train->n < 3000 ? g_train->n : 3000;
    CHECK_OK(ecr_tokenizer_train((const char *const *)g_train->text, n, &o, &g_tok));
    if (!g_tok) exit(1);
}

/* ---- naive trainer: recounts every pair before each merge ------------------------- */

typedef struct naive_word { int32_t *sym; size_t n; int64_t count; } naive_word;

static int cmp_piece(const void *x, const void *y) {
    const char *const *a = x, *const *b = y; /* each: pointer to [len as size_t][bytes] */
    size_t la, lb;
    memcpy(&la, *a, sizeof la);
    memcpy(&lb, *b, sizeof lb);
    if (la != lb) return la < lb ? -1 : 1;
    return memcmp(*a + sizeof la, *b + sizeof lb, la);
}

/* Trains like ecr_tokenizer_train should (max count, then lowest left id, then lowest right
 * id; vocab_size and min_frequency stops), the slow obvious way. Writes merges (a, b) to
 * pairs and returns their count. */
static int naive_train(char *const *texts, size_t n_texts, int vocab_size, int min_freq,
                       int32_t *pairs) {
    size_t cap = 1024, np = 0;
    char **pieces = malloc(cap * sizeof *pieces);
    for (size_t t = 0; t < n_texts; t++) {
        size_t len = strlen(texts[t]);
        size_t *pl = malloc((len + 1) * sizeof *pl);
        size_t k = oracle_pieces(texts[t], len, pl), at = 0;
        for (size_t i = 0; i < k; i++) {
            if (np == cap) pieces = realloc(pieces, (cap *= 2) * sizeof *pieces);
            char *p = malloc(sizeof(size_t) + pl[i]);
            memcpy(p, &pl[i], sizeof(size_t));
            memcpy(p + sizeof(size_t), texts[t] + at, pl[i]);
            pieces[np++] = p;
            at += pl[i];
        }
        free(pl);
    }
    qsort(pieces, np, sizeof *pieces, cmp_piece);
    naive_word *w = malloc(np * sizeof *w);
    size_t nw = 0;
    for (size_t i = 0; i < np; i++) {
        if (nw && !cmp_piece(&pieces[i], &pieces[i - 1])) { w[nw - 1].count++; continue; }
        size_t l;
        memcpy(&l, pieces[i], sizeof l);
        w[nw].sym = malloc(l * sizeof(int32_t));
        for (size_t j = 0; j < l; j++) w[nw].sym[j] = 2 + (unsigned char)pieces[i][sizeof l + j];
        w[nw].n = l;
        w[nw].count = 1;
        nw++;
    }
    char **vs = calloc((size_t)vocab_size, sizeof *vs); /* strings of raw bytes for ids >= 2 */
    for (int b = 0; b < 256; b++) { vs[2 + b] = calloc(2, 1); vs[2 + b][0] = (char)b; }
    int nv = 258, nm = 0;
    int64_t *cnt = malloc((size_t)vocab_size * vocab_size * sizeof *cnt);
    while (nv < vocab_size) {
        memset(cnt, 0, (size_t)nv * nv * sizeof *cnt);
        for (size_t i = 0; i < nw; i++)
            for (size_t j = 0; j + 1 < w[i].n; j++) cnt[(size_t)w[i].sym[j] * nv + w[i].sym[j + 1]] += w[i].count;
        int64_t best = 0;
        int ba = -1, bb = -1;
        for (int a = 0; a < nv; a++)
            for (int b = 0; b < nv; b++)
                if (cnt[(size_t)a * nv + b] > best) { best = cnt[(size_t)a * nv + b]; ba = a; bb = b; }
        if (ba < 0 || best < min_freq) break;
        /* ids are strings of bytes here; NUL bytes are absent from the test texts */
        size_t la = strlen(vs[ba]), lb = strlen(vs[bb]);
        char *cat = malloc(la + lb + 1);
        memcpy(cat, vs[ba], la);
        memcpy(cat + la, vs[bb], lb + 1);
        int c = -1;
        for (int v = 2; v < nv; v++)
            if (!strcmp(vs[v], cat)) c = v;
        if (c < 0) { c = nv; vs[nv++] = cat; } else free(cat);
        pairs[2 * nm] = ba;
        pairs[2 * nm + 1] = bb;
        nm++;
        for (size_t i = 0; i < nw; i++) {
            size_t j = 0;
            for (size_t r = 0; r < w[i].n;) {
                if (r + 1 < w[i].n && w[i].sym[r] == ba && w[i].sym[r + 1] == bb) { w[i].sym[j++] = c; r += 2; }
                else w[i].sym[j++] = w[i].sym[r++];
            }
            w[i].n = j;
        }
    }
    for (size_t i = 0; i < np; i++) free(pieces[i]);
    for (size_t i = 0; i < nw; i++) free(w[i].sym);
    for (int v = 0; v < nv; v++) free(vs[v]);
    free(pieces);
    free(w);
    free(vs);
    free(cnt);
    return nm;
}

static void test_trainer_matches_naive(void) {
    /* 400 texts cover all ten languages (the corpus interleaves them); ties are frequent at
     * the end, so the tie-break rule is exercised too. */
    const size_t n = 400;
    const int sizes[2][2] = {{700, 2}, {420, 1}};
    for (int s = 0; s < 2; s++) {
        int vs = sizes[s][0], mf = sizes[s][1];
        int32_t *pairs = malloc(2 * (size_t)vs * sizeof *pairs);
        int nm = naive_train(g_train->text + 20000, n, vs, mf, pairs);
        ecr_tokenizer_train_opts o;
        ecr_tokenizer_train_opts_default(&o);
        o.vocab_size = vs;
        o.min_frequency = mf;
        o.quiet = 1;
        ecr_tokenizer *t = NULL;
        CHECK_OK(ecr_tokenizer_train((const char *const *)g_train->text + 20000, n, &o, &t));
        CHECK(nm > 100);
        CHECK_MSG(t && t->n_merges == nm, "merges: ecr %d, naive %d", t ? t->n_merges : -1, nm);
        int first_diff = -1;
        for (int r = 0; t && r < nm && r < t->n_merges && first_diff < 0; r++)
            if (t->merge[3 * r] != pairs[2 * r] || t->merge[3 * r + 1] != pairs[2 * r + 1]) first_diff = r;
        CHECK_MSG(first_diff < 0, "merge %d differs from the naive trainer", first_diff);
        ecr_tokenizer_free(t);
        free(pairs);
    }
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_byte_map(void) {
    int seen[400] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = ecr_tok_byte_to_cp((unsigned char)b);
        CHECK(cp < 400 && !seen[cp]);
        if (cp < 400) seen[cp] = 1;
        CHECK(ecr_tok_cp_to_byte(cp) == b);
    }
    CHECK(ecr_tok_byte_to_cp(' ') == 0x120);  /* 'Ġ' */
    CHECK(ecr_tok_byte_to_cp('\n') == 0x10A); /* 'Ċ' */
    CHECK(ecr_tok_byte_to_cp(0) == 0x100);
    CHECK(ecr_tok_byte_to_cp(0x7F) == 0x121);
    CHECK(ecr_tok_byte_to_cp(0xAD) == 0x143); /* 'Ń' */
    CHECK(ecr_tok_byte_to_cp('a') == 'a' && ecr_tok_byte_to_cp(0xFF) == 0xFF);
    CHECK(ecr_tok_cp_to_byte(0x144) == -1 && ecr_tok_cp_to_byte(0x20) == -1);
}

static void test_utf8_check(void) {
    static const struct { const char *s; size_t n, bad; } cases[] = {
        {"plain ascii", 11, 11},
        {"\xC3\xA9t\xC3\xA9 \xE6\x97\xA5 \xF0\x9F\x98\x80", 14, 14},
        {"\xC0\xAF", 2, 0},              /* overlong '/' */
        {"a\xC1\xBF", 3, 1},             /* overlong */
        {"a\xE0\x80\xAF", 4, 1},         /* overlong 3-byte */
        {"ab\xF0\x80\x80\xAF", 6, 2},    /* overlong 4-byte */
        {"ab\xED\xA0\x80", 5, 2},        /* surrogate U+D800 */
        {"\xED\xBF\xBF", 3, 0},          /* surrogate U+DFFF */
        {"\xF4\x90\x80\x80", 4, 0},      /* above U+10FFFF */
        {"\xF5\x80\x80\x80", 4, 0},
        {"abc\xE3\x81", 5, 3},           /* truncated at the end */
        {"\xE3\x81" "a", 3, 0},          /* truncated in the middle */
        {"x\x80", 2, 1},                 /* stray continuation */
        {"\xBF", 1, 0},
        {"\xFF", 1, 0},
        {"12345678\xC3", 9, 8},          /* after the 8-byte ASCII fast path */
        {"ok\xF0\x9F\x98", 5, 2},
        {"\xEF\xBF\xBF\xF4\x8F\xBF\xBF", 7, 7}, /* U+FFFF, U+10FFFF valid */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_MSG(ecr_tok_utf8_check(cases[i].s, cases[i].n) == cases[i].bad, "case %zu", i);
}

static void test_invalid_encode(void) {
    static const struct { const char *s; size_t n; const char *msg; } cases[] = {
        {"hello \xC0\xAF", 8, "at byte 6"},
        {"\xED\xA0\x80", 3, "at byte 0"},
        {"abcd\xE3\x81", 6, "at byte 4"},
        {"ab\x80" "cd", 5, "at byte 2"},
        {"\xF8\x88\x80\x80\x80", 5, "at byte 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t ids[16];
        size_t n = 99;
        CHECK_STATUS(ecr_tokenizer_encode(g_tok, cases[i].s, cases[i].n, ids, 16, &n), ECR_E_INVALID);
        CHECK_MSG(strstr(ecr_last_error(), cases[i].msg) != NULL, "case %zu: '%s'", i, ecr_last_error());
        CHECK(n == 0);
    }
    /* A NUL byte is valid UTF-8 (U+0000) and round-trips. */
    CHECK(roundtrip_ok(g_tok, "a\0b", 3));
}

static void check_pieces(const char *s, const char *const *want) {
    size_t len = strlen(s), pos = 0, k = 0;
    int ok = 1;
    while (pos < len) {
        size_t l = ecr_tok_pretoken(s, len, pos);
        if (!want[k] || strlen(want[k]) != l || memcmp(want[k], s + pos, l)) ok = 0;
        if (!want[k]) break;
        k++;
        pos += l;
    }
    CHECK_MSG(ok && !want[k], "pre-tokens of \"%s\" (piece %zu)", s, k);
}

static void test_pretokenizer_known(void) {
    /* Expected splits, checked against @huggingface/tokenizers 0.2.0 with the same regex. */
    check_pieces("Hello  world\t\tfoo 123abc!!  \xE3\x80\x80\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E"
                 "\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88\xE3\x80\x82 e\xCC\x81 \n\nx ",
                 (const char *const[]){"Hello", " ", " world", "\t", "\t", "foo", " 123", "abc", "!!",
                                        "  ", "\xE3\x80\x80",
                                        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86"
                                        "\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
                                        "\xE3\x80\x82", " e\xCC\x81", " \n", "\n", "x", " ", NULL});
    check_pieces("", (const char *const[]){NULL});
    check_pieces(" ", (const char *const[]){" ", NULL});
    check_pieces("   ", (const char *const[]){"   ", NULL});
    check_pieces("  a", (const char *const[]){" ", " a", NULL});
    check_pieces("a  ", (const char *const[]){"a", "  ", NULL});
    check_pieces("1,000.5", (const char *const[]){"1", ",", "000", ".", "5", NULL});
    check_pieces(" ,x", (const char *const[]){" ,", "x", NULL});
    check_pieces("a\r\nb", (const char *const[]){"a", "\r", "\n", "b", NULL});
    check_pieces("x\xC2\xA0y", (const char *const[]){"x", "\xC2\xA0", "y", NULL});      /* NBSP */
    check_pieces("x\xC2\x85y", (const char *const[]){"x", "\xC2\x85", "y", NULL});      /* NEL  */
    check_pieces("x\xE2\x80\x8By", (const char *const[]){"x", "\xE2\x80\x8B", "y", NULL}); /* ZWSP: not space */
    check_pieces("\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82, \xD0\xBC\xD0\xB8\xD1\x80!",
                 (const char *const[]){"\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82", ",",
                                        " \xD0\xBC\xD0\xB8\xD1\x80", "!", NULL});
    /* 東京タワー2024年: 'ー' is Lm, a letter */
    check_pieces("\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x82\xBF\xE3\x83\xAF\xE3\x83\xBC" "2024" "\xE5\xB9\xB4",
                 (const char *const[]){"\xE6\x9D\xB1\xE4\xBA\xAC\xE3\x82\xBF\xE3\x83\xAF\xE3\x83\xBC",
                                        "2024", "\xE5\xB9\xB4", NULL});
    /* emoji + skin tone (So, Sk) stay together; a leading space joins them */
    check_pieces("\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD ok \xF0\x9F\x98\x80",
                 (const char *const[]){"\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", " ok",
                                        " \xF0\x9F\x98\x80", NULL});
    /* a mark after a space joins the space; Roman numeral Ⅻ (Nl) is a number */
    check_pieces(" \xCC\x81x \xE2\x85\xAB", (const char *const[]){" \xCC\x81x", " \xE2\x85\xAB", NULL});
}

static void test_class_table(void) {
    int bad = 0;
    for (uint32_t c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c < 0xE000) continue;
        if (ecr_tok_class(c) != oracle_class(c) && bad++ < 5)
            fprintf(stderr, "  class of U+%04X: %d, oracle %d\n", c, ecr_tok_class(c), oracle_class(c));
    }
    CHECK(bad == 0);
}

/* Random valid UTF-8: code points across all planes with extra weight on combining marks,
 * emoji, CJK, controls and the whitespace characters. */
static uint32_t random_cp(void) {
    static const uint32_t ws[] = {' ', ' ', ' ', '\t', '\n', '\r', 0x0B, 0x0C, 0x85, 0xA0, 0x1680,
                                  0x2003, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF, 0x200B};
    for (;;) {
        uint32_t r = rnd() % 100, c;
        if (r < 25) c = 0x20 + rnd() % 0x5F;                 /* printable ASCII */
        else if (r < 35) c = ws[rnd() % (sizeof ws / sizeof ws[0])];
        else if (r < 42) c = 0x300 + rnd() % 0x70;           /* combining marks */
        else if (r < 50) c = 0x1F300 + rnd() % 0x300;        /* emoji */
        else if (r < 60) c = 0x4E00 + rnd() % 0x5200;        /* CJK */
        else if (r < 65) c = 0x3040 + rnd() % 0xC0;          /* kana */
        else if (r < 70) c = 0x400 + rnd() % 0x100;          /* Cyrillic */
        else if (r < 74) c = rnd() % 0x20;                   /* C0 controls incl. NUL */
        else if (r < 77) c = '0' + rnd() % 10;
        else if (r < 90) c = rnd() % 0x10000;                /* BMP */
        else c = rnd() % 0x110000;                           /* any plane */
        if (c >= 0xD800 && c < 0xE000) continue;
        return c;
    }
}

static size_t random_utf8(char *buf, size_t n_cp) {
    size_t len = 0;
    for (size_t i = 0; i < n_cp; i++) len += (size_t)ecr_tok_put_utf8(random_cp(), buf + len);
    return len;
}

static void test_random_roundtrip(void) {
    char *buf = malloc(4 * 6000 + 1);
    int bad_rt = 0, bad_ref = 0;
    for (int t = 0; t < 3000; t++) {
        size_t n_cp = t < 2990 ? rnd() % 40 : 2000 + rnd() % 4000;
        size_t len = random_utf8(buf, n_cp);
        CHECK(ecr_tok_utf8_check(buf, len) == len);
        if (!roundtrip_ok(g_tok, buf, len)) bad_rt++;
        if (!matches_reference(g_tok, buf, len)) bad_ref++;
    }
    /* Long single runs: letters, spaces, digits (exercise the heap path and backtracking). */
    for (int k = 0; k < 8; k++) {
        size_t len = 0, max = k < 4 ? 4 * 6000 : 1500; /* the reference is quadratic */
        const char *unit = (const char *[]){"ab", " ", "7", "\xE6\x97\xA5"}[k % 4];
        while (len + 4 < max) { memcpy(buf + len, unit, strlen(unit)); len += strlen(unit); }
        if (!roundtrip_ok(g_tok, buf, len)) bad_rt++;
        if (k >= 4 && !matches_reference(g_tok, buf, len)) bad_ref++;
    }
    CHECK_MSG(bad_rt == 0, "%d random strings failed the round trip", bad_rt);
    CHECK_MSG(bad_ref == 0, "%d random strings differ from the reference encoder", bad_ref);
    free(buf);
}

static void test_valid_roundtrip(void) {
    const char *langs[] = {"en", "de", "fr", "es", "it", "pt_BR", "ru", "pl", "ja", "zh_CN"};
    size_t per_lang[10] = {0}, tokens[10] = {0}, chars[10] = {0}, bytes[10] = {0};
    int bad_rt = 0, bad_ref = 0;
    for (size_t i = 0; i < g_valid->n; i++) {
        const char *s = g_valid->text[i];
        size_t len = strlen(s), n = 0;
        if (!roundtrip_ok(g_tok, s, len)) bad_rt++;
        if (i % 5 == 0 && !matches_reference(g_tok, s, len)) bad_ref++;
        for (int l = 0; l < 10; l++) {
            if (!g_valid->lang[i] || strcmp(g_valid->lang[i], langs[l])) continue;
            per_lang[l]++;
            int32_t *ids = encode_all(g_tok, s, len, &n);
            free(ids);
            tokens[l] += n;
            bytes[l] += len;
            for (size_t b = 0; b < len; b++) chars[l] += ((unsigned char)s[b] & 0xC0) != 0x80;
        }
    }
    CHECK(g_valid->n == 10000);
    CHECK_MSG(bad_rt == 0, "%d validation texts failed the round trip", bad_rt);
    CHECK_MSG(bad_ref == 0, "%d validation texts differ from the reference encoder", bad_ref);
    for (int l = 0; l < 10; l++) {
        CHECK_MSG(per_lang[l] == 1000, "%s: %zu texts", langs[l], per_lang[l]);
        /* BPE must compress every language below one token per byte... */
        CHECK_MSG(tokens[l] * 10 < bytes[l] * 9, "%s: %zu tokens for %zu bytes", langs[l], tokens[l],
                  bytes[l]);
    }
    /* ...and English well below one token per two characters even at vocab 1024. */
    CHECK_MSG(tokens[0] * 2 < chars[0], "en: %zu tokens for %zu chars", tokens[0], chars[0]);
}

static void test_toy_merges(void) {
    /* "ab ab ab", "abc": words ab x1, " ab" x2, abc x1. Pairs: (a,b) 4, (' ',a) 2, (b,c) 1.
     * Merge 1: a+b -> "ab" (258). Then (' ',ab) 2 -> "Ġab" (259). (ab,c) 1 < min 2: stop. */
    const char *texts[] = {"ab ab ab", "abc"};
    ecr_tokenizer_train_opts o;
    ecr_tokenizer_train_opts_default(&o);
    o.vocab_size = 1000;
    o.quiet = 1;
    ecr_tokenizer *t = NULL;
    CHECK_OK(ecr_tokenizer_train(texts, 2, &o, &t));
    if (!t) return;
    CHECK(ecr_tokenizer_vocab_size(t) == 260);
    CHECK(t->n_merges == 2);
    CHECK(!strcmp(ecr_tokenizer_token(t, 258), "ab"));
    CHECK(!strcmp(ecr_tokenizer_token(t, 259), "\xC4\xA0" "ab")); /* "Ġab" */
    CHECK(ecr_tokenizer_token(t, 260) == NULL);
    size_t n = 0;
    int32_t ids[8];
    CHECK_OK(ecr_tokenizer_encode(t, "ab abc", 6, ids, 8, &n));
    CHECK(n == 3 && ids[0] == 258 && ids[1] == 259 && ids[2] == 2 + 'c');
    ecr_tokenizer_free(t);

    /* Ties: "xy xy zw zw" -> xy, " xy", " zw" x2. Pairs at count 2: (' ',z) (x,y) (z,w);
     * lowest left id first: ' ' (34) -> "Ġz" (258); then (x,y) vs (Ġz,w): x (122) < 258
     * -> "xy" (259); then "Ġzw" (260); (' ',xy) has count 1: stop. */
    const char *texts2[] = {"xy xy zw zw"};
    CHECK_OK(ecr_tokenizer_train(texts2, 1, &o, &t));
    if (!t) return;
    CHECK(ecr_tokenizer_vocab_size(t) == 261);
    CHECK(!strcmp(ecr_tokenizer_token(t, 258), "\xC4\xA0z"));
    CHECK(!strcmp(ecr_tokenizer_token(t, 259), "xy"));
    CHECK(!strcmp(ecr_tokenizer_token(t, 260), "\xC4\xA0zw"));
    CHECK(ecr_tok_merge_rank(t, 2 + ' ', 2 + 'z') == 0);
    CHECK(ecr_tok_merge_rank(t, 2 + 'x', 2 + 'y') == 1);
    CHECK(ecr_tok_merge_rank(t, 258, 2 + 'w') == 2);
    /* Leftmost among equal ranks: "xyxyx" -> xy xy x. */
    CHECK_OK(ecr_tokenizer_encode(t, "xyxyx", 5, ids, 8, &n));
    CHECK(n == 3 && ids[0] == 259 && ids[1] == 259 && ids[2] == 2 + 'x');
    ecr_tokenizer_free(t);

    /* Vocab size caps the merges; min_frequency 1 merges singletons; a text equal to a
     * special token's content is never merged into that special. */
    const char *texts3[] = {"<|pad|> <|pad|> aaaa"};
    o.vocab_size = 262;
    o.min_frequency = 1;
    CHECK_OK(ecr_tokenizer_train(texts3, 1, &o, &t));
    if (!t) return;
    CHECK(ecr_tokenizer_vocab_size(t) == 262);
    /* (a,a) has count 3; then ties at 2 go by left id: (<,|), (a,d), (p,ad) before (|,>). */
    CHECK(!strcmp(ecr_tokenizer_token(t, 258), "aa"));
    CHECK(!strcmp(ecr_tokenizer_token(t, 259), "<|"));
    CHECK(!strcmp(ecr_tokenizer_token(t, 260), "ad"));
    CHECK(!strcmp(ecr_tokenizer_token(t, 261), "pad"));
    /* Overlapping equal pairs merge leftmost first: "aaa" -> aa a, not a aa. */
    CHECK_OK(ecr_tokenizer_encode(t, "aaa", 3, ids, 8, &n));
    CHECK(n == 2 && ids[0] == 258 && ids[1] == 2 + 'a');
    CHECK_OK(ecr_tokenizer_encode(t, "<|pad|>", 7, ids, 8, &n));
    CHECK(n >= 1 && ids[0] != ecr_tokenizer_pad_id(t));
    CHECK(roundtrip_ok(t, "<|pad|> <|endoftext|>", 21));
    ecr_tokenizer_free(t);

    o.vocab_size = 100;
    CHECK_STATUS(ecr_tokenizer_train(texts3, 1, &o, &t), ECR_E_INVALID);
    const char *bad[] = {"ok", "bad \xC3"};
    o.vocab_size = 300;
    CHECK_STATUS(ecr_tokenizer_train(bad, 2, &o, &t), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "text 2") && strstr(ecr_last_error(), "byte 4"));
}

static void test_specials_and_decode(void) {
    CHECK(ecr_tokenizer_eot_id(g_tok) == 0 && ecr_tokenizer_pad_id(g_tok) == 1);
    CHECK(!strcmp(ecr_tokenizer_token(g_tok, 0), "<|endoftext|>"));
    CHECK(!strcmp(ecr_tokenizer_token(g_tok, 1), "<|pad|>"));
    CHECK(!strcmp(ecr_tokenizer_token(g_tok, 2 + ' '), "\xC4\xA0"));
    CHECK(ecr_tokenizer_token_bytes(g_tok, 0) == 0 && ecr_tokenizer_token_bytes(g_tok, 2 + 'a') == 1);
    CHECK(ecr_tokenizer_vocab_size(g_tok) == 1024);
    CHECK(ecr_tokenizer_token(g_tok, 1024) == NULL && ecr_tokenizer_token(g_tok, -1) == NULL);
    int32_t ids[] = {0, 2 + 'h', 1, 2 + 'i', 0};
    char out[8];
    size_t len = 0;
    CHECK_OK(ecr_tokenizer_decode(g_tok, ids, 5, out, sizeof out, &len));
    CHECK(len == 2 && !strcmp(out, "hi"));
    CHECK_OK(ecr_tokenizer_decode(g_tok, ids, 5, out, 2, &len)); /* truncated, NUL-terminated */
    CHECK(len == 2 && out[0] == 'h' && out[1] == '\0');
    CHECK_OK(ecr_tokenizer_decode(g_tok, ids, 5, NULL, 0, &len));
    CHECK(len == 2);
    int32_t bad[] = {5, 1024};
    CHECK_STATUS(ecr_tokenizer_decode(g_tok, bad, 2, out, sizeof out, &len), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "1024") != NULL);
    /* Encoding with a small cap reports the full count and writes a prefix. */
    const char *s = "Le chat est sur la table.";
    size_t n = 0, n2 = 0;
    int32_t *full = encode_all(g_tok, s, strlen(s), &n);
    int32_t part[3] = {-1, -1, -1};
    CHECK_OK(ecr_tokenizer_encode(g_tok, s, strlen(s), part, 2, &n2));
    CHECK(n2 == n && n > 2 && part[0] == full[0] && part[1] == full[1] && part[2] == -1);
    free(full);
    size_t n0 = 7;
    CHECK_OK(ecr_tokenizer_encode(g_tok, "", 0, NULL, 0, &n0));
    CHECK(n0 == 0);
    ecr_tokenizer_free(NULL);
}

static char *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    *len = fread(b, 1, (size_t)n, fp);
    b[*len] = '\0';
    fclose(fp);
    return b;
}

static void spit(const char *path, const char *s) {
    FILE *fp = fopen(path, "wb");
    fputs(s, fp);
    fclose(fp);
}

/* Writes `orig` with the first occurrence of `from` replaced by `to` to path, loads it and
 * expects ECR_E_INVALID with `field` and the path in the message. */
static void expect_load_error(const char *path, const char *orig, const char *from, const char *to,
                              const char *field) {
    const char *at = strstr(orig, from);
    CHECK_MSG(at != NULL, "fixture lacks '%s'", from);
    if (!at) return;
    size_t pre = (size_t)(at - orig), lf = strlen(from), lt = strlen(to), lo = strlen(orig);
    char *s = malloc(lo - lf + lt + 1);
    memcpy(s, orig, pre);
    memcpy(s + pre, to, lt);
    memcpy(s + pre + lt, at + lf, lo - pre - lf + 1);
    spit(path, s);
    free(s);
    ecr_tokenizer *t = NULL;
    CHECK_STATUS(ecr_tokenizer_load(path, &t), ECR_E_INVALID);
    CHECK_MSG(strstr(ecr_last_error(), field) && strstr(ecr_last_error(), path),
              "'%s' -> '%s': message '%s' should name %s", from, to, ecr_last_error(), field);
    CHECK(t == NULL);
    ecr_tokenizer_free(t);
}

static void test_save_load(void) {
    /* A scratch directory under $TMPDIR, else under build/ (tests run from the repo root). */
    const char *base = getenv("TMPDIR");
    char dir[200];
    snprintf(dir, sizeof dir, "%s/ecr_tok_XXXXXX", base && *base ? base : "build");
    CHECK(mkdtemp(dir) != NULL);
    char p1[256], p2[256], pb[256];
    snprintf(p1, sizeof p1, "%s/a.json", dir);
    snprintf(p2, sizeof p2, "%s/b.json", dir);
    snprintf(pb, sizeof pb, "%s/bad.json", dir);
    CHECK_OK(ecr_tokenizer_save(g_tok, p1));
    ecr_tokenizer *t = NULL;
    CHECK_OK(ecr_tokenizer_load(p1, &t));
    if (!t) return;
    CHECK(ecr_tokenizer_vocab_size(t) == ecr_tokenizer_vocab_size(g_tok));
    CHECK(t->n_merges == g_tok->n_merges);
    int same = 1;
    for (int i = 0; i < ecr_tokenizer_vocab_size(t); i++)
        same &= !strcmp(ecr_tokenizer_token(t, i), ecr_tokenizer_token(g_tok, i));
    CHECK(same);
    int diff = 0;
    for (size_t i = 0; i < g_valid->n; i += 3) {
        size_t n1 = 0, n2 = 0, len = strlen(g_valid->text[i]);
        int32_t *a = encode_all(g_tok, g_valid->text[i], len, &n1);
        int32_t *b = encode_all(t, g_valid->text[i], len, &n2);
        diff += n1 != n2 || memcmp(a, b, n1 * sizeof *a);
        free(a);
        free(b);
    }
    CHECK(diff == 0);
    CHECK_OK(ecr_tokenizer_save(t, p2));
    size_t l1 = 0, l2 = 0;
    char *s1 = slurp(p1, &l1), *s2 = slurp(p2, &l2);
    CHECK(s1 && s2 && l1 == l2 && !memcmp(s1, s2, l1)); /* save(load(x)) == x */
    ecr_tokenizer_free(t);
    /* No temporary files left beside the output. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 2", dir);
    CHECK(system(cmd) == 0);

    /* Merges as ["a", "b"] pairs (newer tokenizers layout) load to the same tokenizer. */
    {
        const char *m = strstr(s1, "\"merges\": [");
        size_t cap = l1 * 2 + 64, k = (size_t)(m - s1);
        char *alt = malloc(cap);
        memcpy(alt, s1, k);
        int in_str = 0;
        for (const char *p = m; *p; p++) {
            if (p > m + 10 && *p == '"' && p[-1] != '\\') {
                if (!in_str) { alt[k++] = '['; alt[k++] = '"'; in_str = 1; }
                else { alt[k++] = '"'; alt[k++] = ']'; in_str = 0; }
            } else if (in_str && *p == ' ') {
                alt[k++] = '"'; alt[k++] = ','; alt[k++] = ' '; alt[k++] = '"';
            } else {
                alt[k++] = *p;
            }
        }
        alt[k] = '\0';
        spit(pb, alt);
        free(alt);
        ecr_tokenizer *t2 = NULL;
        CHECK_OK(ecr_tokenizer_load(pb, &t2));
        CHECK(t2 && t2->n_merges == g_tok->n_merges &&
              !memcmp(t2->merge, g_tok->merge, 3 * sizeof(int32_t) * (size_t)g_tok->n_merges));
        ecr_tokenizer_free(t2);
    }

    /* Damaged files: each names the file and the field. */
    expect_load_error(pb, s1, "{", "[", "JSON");
    expect_load_error(pb, s1, "\"type\": \"BPE\"", "\"type\": \"WordPiece\"", "model.type");
    expect_load_error(pb, s1, "\"dropout\": null", "\"dropout\": 0.1", "model.dropout");
    expect_load_error(pb, s1, "\"ignore_merges\": false", "\"ignore_merges\": true", "ignore_merges");
    expect_load_error(pb, s1, "\"normalizer\": null", "\"normalizer\": {\"type\": \"NFC\"}", "normalizer");
    expect_load_error(pb, s1, "\\\\p{N}+|", "\\\\d+|", "pre_tokenizer");
    expect_load_error(pb, s1, "\"use_regex\": false}\n", "\"use_regex\": true}\n", "pre_tokenizer");
    expect_load_error(pb, s1, "\"decoder\": {\"type\": \"ByteLevel\"", "\"decoder\": {\"type\": \"BPE\"", "decoder");
    expect_load_error(pb, s1, "\"<|pad|>\": 1", "\"<|pad|>\": \"one\"", "model.vocab");
    expect_load_error(pb, s1, "\"a\": 99", "\"a\": 5", "vocab");
    expect_load_error(pb, s1, "\"id\": 1, \"content\": \"<|pad|>\"", "\"id\": 1, \"content\": \"<|pod|>\"", "added_tokens");
    expect_load_error(pb, s1, "\"special\": true}\n", "\"special\": false}\n", "added_tokens[1]");
    expect_load_error(pb, s1, "\"merges\": [\n      \"", "\"merges\": [\n      \"zz", "model.merges[0]");
    expect_load_error(pb, s1, "\"merges\": [\n      \"", "\"merges\": [\n      \"a b c\", \"", "model.merges[0]");
    expect_load_error(pb, s1, "\"merges\": [\n      \"", "\"merges\": [\n      \"\xC4\x80 \xC4\x80\", \"",
                      "not in the vocab");
    {   /* Without merges, byte tokens can be damaged on their own. */
        const char *txt[] = {"abc"};
        ecr_tokenizer_train_opts o;
        ecr_tokenizer_train_opts_default(&o);
        o.vocab_size = 258;
        o.quiet = 1;
        ecr_tokenizer *t0 = NULL;
        CHECK_OK(ecr_tokenizer_train(txt, 1, &o, &t0));
        char p0[256];
        snprintf(p0, sizeof p0, "%s/small.json", dir);
        CHECK_OK(ecr_tokenizer_save(t0, p0));
        ecr_tokenizer_free(t0);
        size_t l0 = 0;
        char *s0 = slurp(p0, &l0);
        CHECK(s0 && strstr(s0, "\"merges\": [\n    ]"));
        expect_load_error(pb, s0, "\"a\": 99", "\"a-\": 99", "byte 0x61");
        expect_load_error(pb, s0, "\"a\": 99", "\"a\u0400\": 99", "byte-level");
        expect_load_error(pb, s0, "\"a\": 99", "\"b\": 99", "\"b\"");
        free(s0);
    }
    expect_load_error(pb, s1, "\"merges\": [", "\"merges\": 7, \"x\": [", "model.merges");
    ecr_tokenizer *t3 = NULL;
    snprintf(pb, sizeof pb, "%s/missing.json", dir);
    CHECK_STATUS(ecr_tokenizer_load(pb, &t3), ECR_E_IO);
    CHECK(strstr(ecr_last_error(), "missing.json") != NULL);
    free(s1);
    free(s2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_thread_count_invariance(void) {
    ecr_tokenizer_train_opts o;
    ecr_tokenizer_train_opts_default(&o);
    o.vocab_size = 600;
    o.quiet = 1;
    ecr_tokenizer *a = NULL, *b = NULL;
    o.threads = 1;
    CHECK_OK(ecr_tokenizer_train((const char *const *)g_train->text + 5000, 1500, &o, &a));
    o.threads = 3;
    CHECK_OK(ecr_tokenizer_train((const char *const *)g_train->text + 5000, 1500, &o, &b));
    CHECK(a && b && a->n_vocab == 600 && b->n_vocab == 600 && a->n_merges == b->n_merges);
    if (a && b) {
        int same = !memcmp(a->merge, b->merge, 3 * sizeof(int32_t) * (size_t)a->n_merges);
        for (int i = 0; i < a->n_vocab; i++) same &= !strcmp(a->str[i], b->str[i]);
        CHECK(same);
    }
    ecr_tokenizer_free(a);
    ecr_tokenizer_free(b);
}

/* Encoding from several threads on one tokenizer gives the single-thread result. */
static void test_shared_encode(void) {
    int bad = 0;
#ifdef _OPENMP
#pragma omp parallel for reduction(+ : bad) num_threads(2)
#endif
    for (int i = 0; i < 2000; i++) {
        const char *s = g_valid->text[i];
        size_t len = strlen(s), n = 0;
        int32_t *ids = malloc((len + 1) * sizeof *ids);
        if (ecr_tokenizer_encode(g_tok, s, len, ids, len + 1, &n) != ECR_OK) bad++;
        char *out = malloc(len + 1);
        size_t dl = 0;
        if (ecr_tokenizer_decode(g_tok, ids, n, out, len + 1, &dl) != ECR_OK || dl != len ||
            memcmp(out, s, len))
            bad++;
        free(out);
        free(ids);
    }
    CHECK(bad == 0);
}

int main(void) {
    load_fixtures();
    RUN(test_byte_map);
    RUN(test_utf8_check);
    RUN(test_class_table);
    RUN(test_pretokenizer_known);
    RUN(test_toy_merges);
    RUN(test_invalid_encode);
    RUN(test_specials_and_decode);
    RUN(test_valid_roundtrip);
    RUN(test_random_roundtrip);
    RUN(test_save_load);
    RUN(test_trainer_matches_naive);
    RUN(test_thread_count_invariance);
    RUN(test_shared_encode);
    ecr_tokenizer_free(g_tok);
    ecr_corpus_free(g_train);
    ecr_corpus_free(g_valid);
    return test_finish("test_tokenizer");
}
