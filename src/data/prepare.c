/* prepare.c — JSONL corpus + tokenizer -> data.safetensors (the layout is documented in
 * ecr.h, "Corpus (JSONL) and prepared data"), and the reader of that file. */
#include "ecr.h"
#include "strmap.h"
#include "util.h"

#include <cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#ifdef ECR_HAVE_OMP
#include <omp.h>
#endif

#define DATA_FORMAT "ecr-data-1"

/* ---- writing ----------------------------------------------------------------------- */

/* Per-text token ids, produced in parallel. */
typedef struct encoded {
    int32_t **ids;            /* [n] owned arrays */
    size_t *len;              /* [n]              */
} encoded;

static void encoded_free(encoded *e, size_t n) {
    if (e->ids)
        for (size_t i = 0; i < n; i++) free(e->ids[i]);
    free(e->ids);
    free(e->len);
}

/* Encodes texts[0..n) (lens[i] bytes each; lens NULL: NUL-terminated); the first failing
 * text (lowest index) determines the error, "WHAT: text N: reason" (WHAT NULL: "text N: ..."). */
static ecr_status encode_all(const char *const *texts, const size_t *lens, size_t n, const ecr_tokenizer *tok,
                             const char *what, encoded *e, int quiet) {
    e->ids = calloc(n ? n : 1, sizeof *e->ids);
    e->len = calloc(n ? n : 1, sizeof *e->len);
    if (!e->ids || !e->len) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", what ? what : "prepare");
    long first_bad = -1;
    char bad_msg[512] = "";
    double t0 = ecr_now();
    size_t done = 0;
#pragma omp parallel for schedule(dynamic, 256)
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]), k = 0;
        int32_t *ids = malloc((len + 1) * sizeof *ids); /* BPE never yields more ids than bytes */
        ecr_status st = ids ? ecr_tokenizer_encode(tok, texts[i], len, ids, len + 1, &k) : ECR_E_NOMEM;
        if (st != ECR_OK) {
#pragma omp critical(prepare_err)
            if (first_bad < 0 || (long)i < first_bad) {
                first_bad = (long)i;
                snprintf(bad_msg, sizeof bad_msg, "%s", ids ? ecr_last_error() : "out of memory");
            }
            free(ids);
            continue;
        }
        e->ids[i] = ids;
        e->len[i] = k;
        if (!quiet) {
            size_t d;
#pragma omp atomic capture
            d = ++done;
            if (d % 20000 == 0)
                fprintf(stderr, "\rprepare: encoded %zu/%zu texts (%.1f s)", d, n, ecr_now() - t0);
        }
    }
    if (!quiet) fprintf(stderr, "\rprepare: encoded %zu texts in %.1f s          \n", n, ecr_now() - t0);
    if (first_bad >= 0)
        return what ? ecr_fail(ECR_E_INVALID, "%s: text %ld: %s", what, first_bad + 1, bad_msg)
                    : ecr_fail(ECR_E_INVALID, "text %ld: %s", first_bad + 1, bad_msg);
    return ECR_OK;
}

/* Builds an index column for one optional string field; names go to a JSON array string. */
static ecr_status index_field(char *const *vals, size_t n, int32_t *idx, char **json, int *count) {
    ecr_strmap map;
    if (ecr_strmap_init(&map, 64) != 0) return ECR_E_NOMEM;
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    ecr_status st = ECR_OK;
    for (size_t i = 0; i < n && st == ECR_OK; i++) {
        if (!vals[i]) { idx[i] = -1; continue; }
        size_t before = map.count;
        idx[i] = ecr_strmap_intern(&map, vals[i]);
        if (idx[i] < 0) st = ECR_E_NOMEM;
        else if (arr && map.count > before) cJSON_AddItemToArray(arr, cJSON_CreateString(vals[i]));
    }
    *count = (int)map.count;
    ecr_strmap_free(&map);
    if (arr) {
        *json = st == ECR_OK ? cJSON_PrintUnformatted(arr) : NULL;
        cJSON_Delete(arr);
        if (st == ECR_OK && !*json) st = ECR_E_NOMEM;
    }
    return st;
}

typedef struct columns {
    void *tokens;
    int64_t *offsets;
    int32_t *n_bytes, *group, *lang, *label;
    char *langs_json, *labels_json, *tok_json;
    int n_groups, n_langs, n_labels;
    size_t n_tokens;
} columns;

static void columns_free(columns *k) {
    free(k->tokens); free(k->offsets); free(k->n_bytes); free(k->group); free(k->lang);
    free(k->label); free(k->langs_json); free(k->labels_json); free(k->tok_json);
}

/* The token columns (tokens, offsets, n_bytes) of n encoded texts of bytes[i] bytes each;
 * group, lang and label allocated, to be filled by the caller. */
static ecr_status build_columns(size_t n, const size_t *bytes, const encoded *e, int vocab, columns *k) {
    k->offsets = malloc((n + 1) * sizeof *k->offsets);
    k->n_bytes = malloc((n ? n : 1) * sizeof *k->n_bytes);
    k->group = malloc((n ? n : 1) * sizeof *k->group);
    k->lang = malloc((n ? n : 1) * sizeof *k->lang);
    k->label = malloc((n ? n : 1) * sizeof *k->label);
    if (!k->offsets || !k->n_bytes || !k->group || !k->lang || !k->label) return ECR_E_NOMEM;
    k->offsets[0] = 0;
    for (size_t i = 0; i < n; i++) {
        k->offsets[i + 1] = k->offsets[i] + (int64_t)e->len[i];
        k->n_bytes[i] = (int32_t)bytes[i];
    }
    k->n_tokens = (size_t)k->offsets[n];
    size_t w = vocab <= 65536 ? 2 : 4;
    k->tokens = malloc((k->n_tokens ? k->n_tokens : 1) * w);
    if (!k->tokens) return ECR_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < e->len[i]; j++) {
            size_t at = (size_t)k->offsets[i] + j;
            if (w == 2) ((uint16_t *)k->tokens)[at] = (uint16_t)e->ids[i][j];
            else ((uint32_t *)k->tokens)[at] = (uint32_t)e->ids[i][j];
        }
    return ECR_OK;
}

/* The columns of a corpus: the tokens, and the group / lang / label indices. */
static ecr_status corpus_columns(const ecr_corpus *c, const encoded *e, int vocab, columns *k) {
    size_t n = c->n;
    size_t *bytes = malloc((n ? n : 1) * sizeof *bytes);
    if (!bytes) return ECR_E_NOMEM;
    for (size_t i = 0; i < n; i++) bytes[i] = strlen(c->text[i]);
    ecr_status st = build_columns(n, bytes, e, vocab, k);
    free(bytes);
    if (!st) st = index_field(c->group, n, k->group, NULL, &k->n_groups);
    if (!st) st = index_field(c->lang, n, k->lang, &k->langs_json, &k->n_langs);
    if (!st) st = index_field(c->label, n, k->label, &k->labels_json, &k->n_labels);
    return st;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static ecr_status write_columns(const columns *k, size_t n, int vocab, const char *corpus_path,
                                const char *out_path) {
    ecr_st_writer *w = NULL;
    ecr_status st = ecr_st_writer_create(&w);
    if (st) return st;
    int64_t sh_tok[1] = {(int64_t)k->n_tokens}, sh_off[1] = {(int64_t)n + 1}, sh_n[1] = {(int64_t)n};
    char num[3][32], hash[17];
    snprintf(num[0], 32, "%d", vocab);
    snprintf(num[1], 32, "%zu", n);
    snprintf(num[2], 32, "%d", k->n_groups);
    ecr_hash_hex(k->tok_json, strlen(k->tok_json), hash);
    if (!st) st = ecr_st_writer_add(w, "tokens", vocab <= 65536 ? ECR_U16 : ECR_U32, 1, sh_tok, k->tokens);
    if (!st) st = ecr_st_writer_add(w, "offsets", ECR_I64, 1, sh_off, k->offsets);
    if (!st) st = ecr_st_writer_add(w, "n_bytes", ECR_I32, 1, sh_n, k->n_bytes);
    if (!st) st = ecr_st_writer_add(w, "group", ECR_I32, 1, sh_n, k->group);
    if (!st) st = ecr_st_writer_add(w, "lang", ECR_I32, 1, sh_n, k->lang);
    if (!st) st = ecr_st_writer_add(w, "label", ECR_I32, 1, sh_n, k->label);
    if (!st) st = ecr_st_writer_meta(w, "format", DATA_FORMAT);
    if (!st) st = ecr_st_writer_meta(w, "vocab_size", num[0]);
    if (!st) st = ecr_st_writer_meta(w, "n_texts", num[1]);
    if (!st) st = ecr_st_writer_meta(w, "groups_count", num[2]);
    if (!st) st = ecr_st_writer_meta(w, "source", base_name(corpus_path));
    if (!st) st = ecr_st_writer_meta(w, "langs", k->langs_json);
    if (!st) st = ecr_st_writer_meta(w, "labels", k->labels_json);
    if (!st) st = ecr_st_writer_meta(w, "tokenizer_hash", hash);
    if (!st) st = ecr_st_writer_meta(w, "tokenizer.json", k->tok_json);
    if (!st) st = ecr_st_writer_write(w, out_path);
    ecr_st_writer_free(w);
    return st;
}

ecr_status ecr_prepare(const char *corpus_path, const char *tokenizer_path, const char *out_path,
                       int quiet) {
    ecr_corpus *c = NULL;
    ecr_tokenizer *tok = NULL;
    encoded e = {0};
    columns k = {0};
    ecr_status st = ecr_tokenizer_load(tokenizer_path, &tok);
    if (!st) st = ecr_corpus_read(corpus_path, &c);
    if (!st) {
        st = ecr_read_file(tokenizer_path, &k.tok_json, NULL);
    }
    if (!st) st = encode_all((const char *const *)c->text, NULL, c->n, tok, corpus_path, &e, quiet);
    int vocab = tok ? ecr_tokenizer_vocab_size(tok) : 0;
    if (!st) {
        st = corpus_columns(c, &e, vocab, &k);
        if (st == ECR_E_NOMEM) ecr_fail(st, "%s: out of memory", corpus_path);
    }
    if (!st) st = write_columns(&k, c->n, vocab, corpus_path, out_path);
    if (!st && !quiet)
        fprintf(stderr, "prepare: %zu texts, %zu tokens, %d languages, %d labels, %d groups -> %s\n",
                c->n, k.n_tokens, k.n_langs, k.n_labels, k.n_groups, out_path);
    columns_free(&k);
    encoded_free(&e, c ? c->n : 0);
    ecr_corpus_free(c);
    ecr_tokenizer_free(tok);
    return st;
}

/* ---- in memory -------------------------------------------------------------------- */

ecr_status ecr_data_from_texts(const ecr_tokenizer *tok, const char *const *texts, const size_t *lens,
                               size_t n, ecr_data **out) {
    *out = NULL;
    size_t bad = n; /* the first empty or oversized text; the texts before it are encoded, so
                       that invalid UTF-8 in one of them is named first (the lowest index) */
    for (size_t i = 0; i < n && bad == n; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]);
        if (len == 0 || len > (size_t)INT32_MAX) bad = i;
    }
    encoded e = {0};
    columns *k = calloc(1, sizeof *k);
    ecr_data *d = calloc(1, sizeof *d);
    size_t *bytes = malloc((n ? n : 1) * sizeof *bytes);
    int vocab = ecr_tokenizer_vocab_size(tok);
    ecr_status st = k && d && bytes ? ECR_OK : ecr_fail(ECR_E_NOMEM, "texts: out of memory");
    for (size_t i = 0; !st && i < n; i++) bytes[i] = lens ? lens[i] : strlen(texts[i]);
    if (!st) st = encode_all(texts, bytes, bad, tok, NULL, &e, 1);
    if (!st && bad < n)
        st = bytes[bad] == 0 ? ecr_fail(ECR_E_INVALID, "text %zu: empty (a text needs at least one token)", bad + 1)
                             : ecr_fail(ECR_E_INVALID, "text %zu: %zu bytes (at most %d)", bad + 1, bytes[bad], INT32_MAX);
    if (!st && build_columns(n, bytes, &e, vocab, k) != ECR_OK)
        st = ecr_fail(ECR_E_NOMEM, "texts: out of memory for %zu texts", n);
    encoded_free(&e, bad);
    free(bytes);
    if (st) {
        if (k) columns_free(k);
        free(k);
        free(d);
        return st;
    }
    for (size_t i = 0; i < n; i++) k->group[i] = k->lang[i] = k->label[i] = -1;
    d->mem = k;
    d->n_texts = n;
    d->n_tokens = k->n_tokens;
    d->vocab_size = vocab;
    if (vocab <= 65536) d->tok16 = k->tokens;
    else d->tok32 = k->tokens;
    d->offsets = k->offsets;
    d->n_bytes = k->n_bytes;
    d->group = k->group;
    d->lang = k->lang;
    d->label = k->label;
    *out = d;
    return ECR_OK;
}

/* ---- reading ----------------------------------------------------------------------- */

/* Parses a JSON array of strings from metadata key `key`. */
static ecr_status parse_table(const ecr_st_file *f, const char *path, const char *key,
                              char ***out, int *count) {
    *out = NULL;
    *count = 0;
    const char *s = ecr_st_meta(f, key);
    if (!s) return ecr_fail(ECR_E_INVALID, "%s: metadata '%s' missing", path, key);
    cJSON *arr = cJSON_Parse(s);
    ecr_status st = ECR_OK;
    if (!cJSON_IsArray(arr)) {
        st = ecr_fail(ECR_E_INVALID, "%s: metadata '%s' is not a JSON array", path, key);
        goto done;
    }
    int n = cJSON_GetArraySize(arr);
    char **t = calloc((size_t)n + 1, sizeof *t);
    if (!t) { st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", path); goto done; }
    for (int i = 0; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(arr, i);
        t[i] = cJSON_IsString(it) ? strdup(it->valuestring) : NULL;
        if (!t[i]) {
            for (int j = 0; j < i; j++) free(t[j]);
            free(t);
            st = ecr_fail(ECR_E_INVALID, "%s: metadata '%s': entry %d is not a string", path, key, i);
            goto done;
        }
    }
    *out = t;
    *count = n;
done:
    cJSON_Delete(arr);
    return st;
}

static ecr_status meta_int(const ecr_st_file *f, const char *path, const char *key, long lo,
                           long hi, long *out) {
    const char *s = ecr_st_meta(f, key);
    char *end;
    if (!s) return ecr_fail(ECR_E_INVALID, "%s: metadata '%s' missing", path, key);
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi)
        return ecr_fail(ECR_E_INVALID, "%s: metadata '%s' = '%s' is not an integer in [%ld, %ld]",
                        path, key, s, lo, hi);
    *out = v;
    return ECR_OK;
}

/* Checks every index column against its table size. */
static ecr_status check_column(const char *path, const char *name, const int32_t *v, size_t n,
                               int limit) {
    for (size_t i = 0; i < n; i++)
        if (v[i] < -1 || v[i] >= limit)
            return ecr_fail(ECR_E_INVALID, "%s: tensor '%s'[%zu] = %d is outside [-1, %d)", path,
                            name, i, v[i], limit);
    return ECR_OK;
}

static ecr_status data_validate(ecr_data *d, const char *path) {
    if (d->offsets[0] != 0 || (size_t)d->offsets[d->n_texts] != d->n_tokens)
        return ecr_fail(ECR_E_INVALID, "%s: tensor 'offsets' does not span 'tokens'", path);
    for (size_t i = 0; i < d->n_texts; i++)
        if (d->offsets[i + 1] < d->offsets[i])
            return ecr_fail(ECR_E_INVALID, "%s: tensor 'offsets' decreases at %zu", path, i);
    for (size_t j = 0; j < d->n_tokens; j++)
        if (ecr_data_token(d, j) >= (uint32_t)d->vocab_size)
            return ecr_fail(ECR_E_INVALID, "%s: tensor 'tokens'[%zu] = %u is not below vocab_size %d",
                            path, j, ecr_data_token(d, j), d->vocab_size);
    for (size_t i = 0; i < d->n_texts; i++)
        if (d->n_bytes[i] < 0)
            return ecr_fail(ECR_E_INVALID, "%s: tensor 'n_bytes'[%zu] is negative", path, i);
    ecr_status st = check_column(path, "group", d->group, d->n_texts, d->n_groups);
    if (!st) st = check_column(path, "lang", d->lang, d->n_texts, d->n_langs);
    if (!st) st = check_column(path, "label", d->label, d->n_texts, d->n_labels);
    return st;
}

static ecr_status data_bind(ecr_data *d, const char *path) {
    const ecr_st_file *f = d->file;
    const char *fmt = ecr_st_meta(f, "format");
    if (!fmt || strcmp(fmt, DATA_FORMAT) != 0)
        return ecr_fail(ECR_E_INVALID, "%s: not prepared data (metadata format is '%s', expected '%s')",
                        path, fmt ? fmt : "(none)", DATA_FORMAT);
    long vocab, n, groups;
    ecr_status st = meta_int(f, path, "vocab_size", 1, 1L << 30, &vocab);
    if (!st) st = meta_int(f, path, "n_texts", 1, 1L << 40, &n);
    if (!st) st = meta_int(f, path, "groups_count", 0, 1L << 40, &groups);
    if (st) return st;
    d->vocab_size = (int)vocab;
    d->n_texts = (size_t)n;
    d->n_groups = (int)groups;
    int64_t sh_n[1] = {n}, sh_off[1] = {n + 1}, any[1] = {-1};
    const ecr_tensor_view *v;
    const ecr_tensor_view *tok = ecr_st_find(f, "tokens");
    if (!tok) return ecr_fail(ECR_E_INVALID, "%s: tensor 'tokens' missing", path);
    ecr_dtype want = vocab <= 65536 ? ECR_U16 : ECR_U32;
    st = ecr_st_get(f, "tokens", want, 1, any, &tok);
    if (st) return st;
    d->n_tokens = tok->numel;
    if (want == ECR_U16) d->tok16 = tok->data; else d->tok32 = tok->data;
    if ((st = ecr_st_get(f, "offsets", ECR_I64, 1, sh_off, &v))) return st;
    d->offsets = v->data;
    if ((st = ecr_st_get(f, "n_bytes", ECR_I32, 1, sh_n, &v))) return st;
    d->n_bytes = v->data;
    if ((st = ecr_st_get(f, "group", ECR_I32, 1, sh_n, &v))) return st;
    d->group = v->data;
    if ((st = ecr_st_get(f, "lang", ECR_I32, 1, sh_n, &v))) return st;
    d->lang = v->data;
    if ((st = ecr_st_get(f, "label", ECR_I32, 1, sh_n, &v))) return st;
    d->label = v->data;
    if ((st = parse_table(f, path, "langs", &d->langs, &d->n_langs))) return st;
    if ((st = parse_table(f, path, "labels", &d->labels, &d->n_labels))) return st;
    d->tokenizer_json = ecr_st_meta(f, "tokenizer.json");
    return data_validate(d, path);
}

ecr_status ecr_data_open(const char *path, ecr_data **out) {
    *out = NULL;
    ecr_data *d = calloc(1, sizeof *d);
    if (!d) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    ecr_status st = ecr_st_open(path, &d->file);
    if (!st) st = data_bind(d, path);
    if (st) {
        ecr_data_free(d);
        return st;
    }
    *out = d;
    return ECR_OK;
}

void ecr_data_free(ecr_data *d) {
    if (!d) return;
    for (int i = 0; d->langs && i < d->n_langs; i++) free(d->langs[i]);
    for (int i = 0; d->labels && i < d->n_labels; i++) free(d->labels[i]);
    free(d->langs);
    free(d->labels);
    ecr_st_close(d->file);
    if (d->mem) columns_free(d->mem);
    free(d->mem);
    free(d);
}
