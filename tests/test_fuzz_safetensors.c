/* test_fuzz_safetensors.c — deterministic mutation fuzzing of the safetensors reader.
 *
 * A few valid images (written by our writer, plus one in the compact unaligned layout of
 * other writers) are mutated thousands of times with a splitmix64 stream: truncation,
 * bit flips in the header and the length field, extreme length values, JSON splices
 * (digits replaced, quotes/braces inserted, spans deleted or copied, numbers replaced by
 * floats/negatives/huge values, whole entries duplicated), data-byte changes, and
 * combinations. Each mutant lives in a malloc'd buffer of exactly its length, so under
 * ASan any read past it aborts. Every outcome must be either ECR_OK with a
 * self-consistent file (all tensor bytes read back) or ECR_E_INVALID with a non-empty
 * one-line message starting with the label. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include <string.h>
#include <unistd.h>

#define N_MUTANTS 50000

static uint64_t g_rng = 0x5eed5afe7e115ull;

static uint64_t splitmix64(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform-ish in [0, n); n > 0. */
static size_t rnd(size_t n) { return (size_t)(splitmix64() % n); }

/* ---- images ------------------------------------------------------------------------- */

typedef struct { uint8_t *b; size_t len; } image;

static image img_dup(const uint8_t *b, size_t len) {
    image m = {malloc(len ? len : 1), len};
    if (len) memcpy(m.b, b, len);
    return m;
}

static uint64_t img_hlen(const image *m) {
    uint64_t n = 0;
    for (int i = 7; i >= 0 && m->len >= 8; i--) n = n << 8 | m->b[i];
    return n;
}

static void img_set_hlen(image *m, uint64_t n) {
    for (int i = 0; i < 8; i++) m->b[i] = (uint8_t)(n >> (8 * i));
}

/* Header span [8, 8 + N) clipped to the image; 0 if there is none. */
static size_t img_header_len(const image *m) {
    if (m->len < 8) return 0;
    uint64_t n = img_hlen(m);
    return n > m->len - 8 ? m->len - 8 : (size_t)n;
}

/* Replaces bytes [at, at + del) with ins[0..n_ins) and grows the length field by the
 * difference (the header stays framed, so the JSON itself is what gets tested). */
static void img_splice(image *m, size_t at, size_t del, const char *ins, size_t n_ins) {
    size_t len = m->len - del + n_ins;
    uint8_t *b = malloc(len ? len : 1);
    memcpy(b, m->b, at);
    if (n_ins) memcpy(b + at, ins, n_ins);
    memcpy(b + at + n_ins, m->b + at + del, m->len - at - del);
    free(m->b);
    m->b = b;
    m->len = len;
    if (len >= 8 && at >= 8) img_set_hlen(m, img_hlen(m) - del + n_ins);
}

/* Reads a whole file into an image. */
static image slurp(const char *path) {
    image m = {NULL, 0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return m;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    m.b = malloc(n > 0 ? (size_t)n : 1);
    m.len = fread(m.b, 1, (size_t)n, fp);
    fclose(fp);
    return m;
}

/* Seed images: three written by our writer, one hand-made in another writer's layout. */
static int make_seeds(image *seeds) {
    const char *t = getenv("TMPDIR");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/ecr_fuzz_XXXXXX", t && *t ? t : P_tmpdir);
    if (!mkdtemp(dir)) return 0;
    snprintf(path, sizeof path, "%s/seed.safetensors", dir);
    float f32[6] = {1, 2, 3, 4, 5, 6};
    uint8_t u8[5] = {1, 2, 3, 4, 5};
    int64_t i64[2] = {-1, 1};
    uint16_t h[4] = {0x3C00, 0x4000, 0x4200, 0x4400};
    int n = 0;
    for (int s = 0; s < 3; s++) {
        ecr_st_writer *w;
        CHECK_OK(ecr_st_writer_create(&w));
        if (s == 0) {
            CHECK_OK(ecr_st_writer_meta(w, "format", "ecr-test"));
            CHECK_OK(ecr_st_writer_meta(w, "langs", "[\"en\",\"de\"]"));
            CHECK_OK(ecr_st_writer_add(w, "w", ECR_F32, 2, (int64_t[]){2, 3}, f32));
            CHECK_OK(ecr_st_writer_add(w, "b", ECR_U8, 1, (int64_t[]){5}, u8));
            CHECK_OK(ecr_st_writer_add(w, "offsets", ECR_I64, 1, (int64_t[]){2}, i64));
            CHECK_OK(ecr_st_writer_add(w, "s", ECR_BF16, 0, NULL, h));
            CHECK_OK(ecr_st_writer_add(w, "none", ECR_I32, 2, (int64_t[]){0, 3}, NULL));
        } else if (s == 1) {
            CHECK_OK(ecr_st_writer_add(w, "h", ECR_F16, 1, (int64_t[]){4}, h));
        } else {
            for (int i = 0; i < 12; i++) {
                char name[32];
                snprintf(name, sizeof name, "model.layers.%d.w", i);
                CHECK_OK(ecr_st_writer_add(w, name, i % 3 ? ECR_U16 : ECR_U32, 1, (int64_t[]){2}, f32));
            }
        }
        CHECK_OK(ecr_st_writer_write(w, path));
        ecr_st_writer_free(w);
        seeds[n++] = slurp(path);
        remove(path);
    }
    rmdir(dir);
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"flag\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}";
    size_t hl = strlen(hdr);
    image m = {malloc(8 + hl + 9), 8 + hl + 9};
    img_set_hlen(&m, hl);
    memcpy(m.b + 8, hdr, hl);
    for (size_t i = 0; i < 9; i++) m.b[8 + hl + i] = (uint8_t)(i * 37);
    seeds[n++] = m;
    return n;
}

/* ---- mutations ---------------------------------------------------------------------- */

/* Positions in the header of bytes matching `pred`; returns a random one or 0. */
static size_t pick_pos(const image *m, int (*pred)(uint8_t)) {
    size_t n = img_header_len(m), count = 0;
    for (size_t i = 8; i < 8 + n; i++) count += pred(m->b[i]) != 0;
    if (!count) return 0;
    size_t k = rnd(count);
    for (size_t i = 8; i < 8 + n; i++)
        if (pred(m->b[i]) && k-- == 0) return i;
    return 0;
}

static int is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
static int is_number_start(uint8_t c) { return is_digit(c); }

/* Top-level entry spans ("name": {...}) of the header, found by depth tracking. */
static size_t entry_spans(const image *m, size_t *start, size_t *end, size_t cap) {
    size_t n = img_header_len(m), k = 0;
    int depth = 0, in_str = 0;
    for (size_t i = 8; i < 8 + n && k < cap; i++) {
        uint8_t c = m->b[i];
        if (in_str) { if (c == '\\') i++; else if (c == '"') in_str = 0; continue; }
        if (c == '"') { if (depth == 1 && (k == 0 || end[k - 1])) { start[k] = i; end[k++] = 0; } in_str = 1; }
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') { depth--; if (depth == 1 && k && !end[k - 1]) end[k - 1] = i + 1; }
    }
    return (k && !end[k - 1]) ? k - 1 : k;
}

static void mut_truncate(image *m) { m->len = rnd(m->len + 1); }

static void mut_flip_header(image *m) {
    size_t n = img_header_len(m);
    if (!n) return;
    for (size_t k = 1 + rnd(4); k > 0; k--) m->b[8 + rnd(n)] ^= (uint8_t)(1u << rnd(8));
}

static void mut_flip_length(image *m) { m->b[rnd(8)] ^= (uint8_t)(1u << rnd(8)); }

static void mut_set_length(image *m) {
    uint64_t n = img_hlen(m);
    const uint64_t choices[] = {0, 1, 2, n - 1, n + 1, m->len - 8, m->len - 7, m->len, 100000000ull,
                                100000001ull, UINT64_MAX, 1ull << 63, 1ull << 32, n + (1ull << 32)};
    size_t k = rnd(sizeof choices / sizeof choices[0] + 1);
    img_set_hlen(m, k < sizeof choices / sizeof choices[0] ? choices[k] : splitmix64() % (2 * m->len + 1));
}

static void mut_digit(image *m) {
    size_t at = pick_pos(m, is_digit);
    if (at) m->b[at] = (uint8_t)('0' + rnd(10));
}

static void mut_insert_char(image *m) {
    static const char chars[] = "\"{}[],:-.0e\\ 9\x01\xff";
    size_t n = img_header_len(m);
    char c = chars[rnd(sizeof chars - 1)];
    img_splice(m, 8 + rnd(n + 1), 0, &c, 1);
}

static void mut_delete_span(image *m) {
    size_t n = img_header_len(m);
    if (!n) return;
    size_t at = rnd(n), del = 1 + rnd(8);
    if (at + del > n) del = n - at;
    img_splice(m, 8 + at, del, NULL, 0);
}

static void mut_copy_span(image *m) {
    size_t n = img_header_len(m);
    if (n < 2) return;
    size_t a = rnd(n), l = 1 + rnd(n - a < 40 ? n - a : 40);
    char *tmp = malloc(l);
    memcpy(tmp, m->b + 8 + a, l);
    img_splice(m, 8 + rnd(n + 1), 0, tmp, l);
    free(tmp);
}

/* Replaces one number token by a float, negative, huge or shifted value. */
static void mut_number(image *m) {
    static const char *const repl[] = {"-1", "0", "1.5", "2.0", "1e3", "-0", "18446744073709551616",
                                       "9007199254740993", "4294967296", "99999999999999999999999", "3", "8"};
    size_t at = pick_pos(m, is_number_start);
    if (!at || (at > 8 && (m->b[at - 1] == '-' || is_digit(m->b[at - 1])))) return;
    size_t e = at, hend = 8 + img_header_len(m);
    while (e < hend && is_digit(m->b[e])) e++;
    const char *r = repl[rnd(sizeof repl / sizeof repl[0])];
    img_splice(m, at, e - at, r, strlen(r));
}

/* Duplicates a whole top-level entry before the closing brace (a duplicate name), or
 * swaps the contents of two entries' data_offsets by copying one entry over another. */
static void mut_dup_entry(image *m) {
    size_t s[64], e[64];
    size_t k = entry_spans(m, s, e, 64);
    if (!k) return;
    size_t i = rnd(k), l = e[i] - s[i];
    char *tmp = malloc(l + 1);
    tmp[0] = ',';
    memcpy(tmp + 1, m->b + s[i], l);
    size_t close = 8 + img_header_len(m);
    while (close > 8 && m->b[close - 1] != '}') close--;
    if (close > 8) img_splice(m, close - 1, 0, tmp, l + 1);
    free(tmp);
}

static void mut_data(image *m) {
    size_t start = 8 + img_header_len(m);
    if (start < m->len) m->b[start + rnd(m->len - start)] ^= 0xFF;
}

typedef void (*mutator)(image *);
static const mutator mutators[] = {mut_truncate, mut_flip_header, mut_flip_length, mut_set_length,
                                   mut_digit, mut_insert_char, mut_delete_span, mut_copy_span,
                                   mut_number, mut_dup_entry, mut_data};
#define N_MUTATORS (sizeof mutators / sizeof mutators[0])

/* ---- checking ----------------------------------------------------------------------- */

static volatile uint64_t g_sink;

/* An accepted file must be self-consistent; every byte of every tensor is read. */
static int check_accepted(const ecr_st_file *f, const image *m) {
    uint64_t N = img_hlen(m);
    size_t region = m->len - 8 - (size_t)N, total = 0;
    for (size_t i = 0; i < ecr_st_count(f); i++) {
        const ecr_tensor_view *v = ecr_st_at(f, i);
        size_t esz = ecr_dtype_size(v->dtype), numel = 1;
        if (!esz || v->ndim < 0 || v->ndim > ECR_MAX_DIMS) return 0;
        for (int d = 0; d < v->ndim; d++) numel *= (size_t)v->shape[d];
        if (numel != v->numel || v->nbytes != numel * esz) return 0;
        if ((uintptr_t)v->data % esz != 0) return 0;
        const uint8_t *p = v->data;
        if (p >= m->b && p < m->b + m->len && p + v->nbytes > m->b + m->len) return 0;
        uint64_t sum = 0;
        for (size_t j = 0; j < v->nbytes; j++) sum += p[j];
        g_sink += sum;
        if (ecr_st_find(f, v->name) != v) return 0;
        total += v->nbytes;
    }
    if (total != region) return 0;
    const char *prev = NULL;
    for (size_t i = 0; i < ecr_st_meta_count(f); i++) {
        const char *k, *val;
        ecr_st_meta_at(f, i, &k, &val);
        if (!k || !val || (prev && strcmp(prev, k) >= 0) || ecr_st_meta(f, k) != val) return 0;
        prev = k;
    }
    return 1;
}

static int check_refused(ecr_status st, const ecr_st_file *f) {
    const char *msg = ecr_last_error();
    return st == ECR_E_INVALID && f == NULL && msg[0] && !strncmp(msg, "fuzz.safetensors: ", 18) &&
           !strchr(msg, '\n');
}

static void test_fuzz(void) {
    image seeds[8];
    int n_seeds = make_seeds(seeds);
    CHECK(n_seeds == 4);
    if (n_seeds != 4) return;
    for (int s = 0; s < n_seeds; s++) {                 /* the seeds themselves are valid */
        ecr_st_file *f;
        CHECK_OK(ecr_st_open_memory(seeds[s].b, seeds[s].len, "fuzz.safetensors", &f));
        CHECK(f && check_accepted(f, &seeds[s]));
        ecr_st_close(f);
    }
    long tried = 0, refused = 0, accepted = 0, bad = 0;
    long per_refused[N_MUTATORS] = {0}, per_tried[N_MUTATORS] = {0};
    long per_single[N_MUTATORS] = {0}, per_single_refused[N_MUTATORS] = {0};
    for (int it = 0; it < N_MUTANTS; it++) {
        const image *seed = &seeds[rnd((size_t)n_seeds)];
        image m = img_dup(seed->b, seed->len);
        size_t first = rnd(N_MUTATORS);
        mutators[first](&m);
        int extras = rnd(4) == 0 ? (int)rnd(3) + 1 : 0;
        for (int e = 0; e < extras && m.len >= 8; e++)
            mutators[1 + rnd(N_MUTATORS - 1)](&m);      /* combinations (no re-truncation) */
        if (!extras) per_single[first]++;
        image exact = img_dup(m.b, m.len);              /* exactly-sized copy for ASan */
        free(m.b);
        ecr_st_file *f = NULL;
        ecr_status st = ecr_st_open_memory(exact.b, exact.len, "fuzz.safetensors", &f);
        tried++;
        per_tried[first]++;
        if (st == ECR_OK) {
            accepted++;
            if (!check_accepted(f, &exact)) {
                bad++;
                fprintf(stderr, "fuzz: mutant %d accepted but inconsistent\n", it);
            }
        } else {
            refused++;
            per_refused[first]++;
            if (!extras) per_single_refused[first]++;
            if (!check_refused(st, f)) {
                bad++;
                fprintf(stderr, "fuzz: mutant %d: status %s, message '%s'\n", it, ecr_status_name(st), ecr_last_error());
            }
        }
        ecr_st_close(f);
        free(exact.b);
    }
    printf("fuzz: %ld mutated files, %ld refused cleanly, %ld accepted (valid)\n", tried, refused, accepted);
    CHECK(tried == N_MUTANTS);
    CHECK_MSG(bad == 0, "%ld mutants gave an unclean result", bad);
    CHECK(refused > N_MUTANTS / 2 && accepted > 100);
    for (size_t k = 0; k + 1 < N_MUTATORS; k++)         /* each header mutator bites */
        CHECK_MSG(per_refused[k] > 0, "mutator %zu never produced a refused file (%ld tried)", k, per_tried[k]);
    CHECK(per_single[N_MUTATORS - 1] > 0);              /* data bytes alone are never refused */
    CHECK(per_single_refused[N_MUTATORS - 1] == 0);
    for (int s = 0; s < n_seeds; s++) free(seeds[s].b);
}

int main(void) {
    RUN(test_fuzz);
    return test_finish("test_fuzz_safetensors");
}
