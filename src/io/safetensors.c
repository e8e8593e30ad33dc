/* safetensors.c — the one binary format: a validating mmap reader and an atomic writer.
 *
 * File layout: u64 little-endian N, N bytes of UTF-8 JSON header, then the data region.
 * The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the data region) and may hold "__metadata__": {str: str}.
 *
 * The reader trusts nothing: every check listed in ecr.h runs before any tensor is
 * exposed, and the first failure is reported as ECR_E_INVALID with a one-line message
 * "<label>: <place>: <reason>". Tensors whose bytes are not aligned to their element
 * size in the image are copied to owned (malloc-aligned) memory at open time. */
#define _POSIX_C_SOURCE 200809L
#include "ecr.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utf8proc.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_MAX_HEADER (100u * 1000u * 1000u) /* 100 MB, as the reference implementation */
#define ST_MAX_EXACT 9007199254740992.0      /* 2^53: larger JSON numbers are not exact */
#define ST_NAME_SHOWN 120                    /* longest name quoted in a message        */

static const char *const dtype_names[ECR_DTYPE_COUNT] = {
    "F32", "F16", "BF16", "I64", "I32", "U16", "U8", "U32"};
static const size_t dtype_sizes[ECR_DTYPE_COUNT] = {4, 2, 2, 8, 4, 2, 1, 4};

const char *ecr_dtype_name(ecr_dtype dt) {
    return (unsigned)dt < ECR_DTYPE_COUNT ? dtype_names[dt] : "?";
}

size_t ecr_dtype_size(ecr_dtype dt) {
    return (unsigned)dt < ECR_DTYPE_COUNT ? dtype_sizes[dt] : 0;
}

/* Dtype for a header string; -1 if unknown. */
static int dtype_parse(const char *s) {
    for (int i = 0; i < ECR_DTYPE_COUNT; i++)
        if (!strcmp(s, dtype_names[i])) return i;
    return -1;
}

/* 1 if `s` (length n) is valid UTF-8 (no overlongs, surrogates); else 0 and *bad = offset. */
static int utf8_valid(const uint8_t *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) { i++; continue; }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) { *bad = i; return 0; }
        i += (size_t)k;
    }
    return 1;
}

/* Writes "[2, 3]" (or "[2, *]" for -1 wildcards) into buf. */
static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < ndim && o < cap; i++) {
        if (shape[i] < 0)
            o += (size_t)snprintf(buf + o, cap - o, "%s*", i ? ", " : "");
        else
            o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* numel of a shape into *numel; 0 if the product (times 8 bytes) would overflow size_t. */
static int shape_numel(int ndim, const int64_t *shape, size_t *numel) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (d != 0 && n > (SIZE_MAX / 8) / d) return 0;
        n *= (size_t)d;
    }
    *numel = n;
    return 1;
}

/* ==== reader ========================================================================== */

struct ecr_st_file {
    char *label;                 /* file name for messages (owned)                     */
    const uint8_t *buf;          /* the image: mapping or caller's buffer              */
    size_t len;
    void *map;                   /* mmap base, NULL for ecr_st_open_memory             */
    size_t header_len;           /* N                                                  */
    size_t n;                    /* tensors, in header order                           */
    ecr_tensor_view *t;          /* t[i].name owned (char *), t[i].data see `copies`   */
    void **copies;               /* [n] aligned owned copy or NULL                     */
    size_t *by_name;             /* [n] tensor indices sorted by name                  */
    size_t n_meta;
    char **meta_key, **meta_val; /* [n_meta] owned, sorted by key                      */
};

/* Shared zero-byte target for empty tensors, aligned for every dtype. */
static const uint64_t st_empty_data = 0;

static ecr_st_file *st_alloc(const char *label) {
    ecr_st_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->label = strdup(label ? label : "<memory>");
    if (!f->label) { free(f); return NULL; }
    return f;
}

void ecr_st_close(ecr_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) {
        free((char *)f->t[i].name);
        if (f->copies) free(f->copies[i]);
    }
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->t);
    free(f->copies);
    free(f->by_name);
    free(f->meta_key);
    free(f->meta_val);
    if (f->map) munmap(f->map, f->len);
    free(f->label);
    free(f);
}

/* ---- header framing --------------------------------------------------------------- */

/* Reads and bounds N; checks the header is UTF-8 and starts with '{'. */
static ecr_status st_check_frame(ecr_st_file *f) {
    if (f->len < 8)
        return ecr_fail(ECR_E_INVALID, "%s: file is %zu bytes, too short for the 8-byte header length",
                        f->label, f->len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->buf[i];
    if (n > ST_MAX_HEADER)
        return ecr_fail(ECR_E_INVALID, "%s: header length %llu exceeds the 100 MB limit",
                        f->label, (unsigned long long)n);
    if (n > f->len - 8)
        return ecr_fail(ECR_E_INVALID, "%s: header length %llu exceeds the file (%zu bytes after the length field)",
                        f->label, (unsigned long long)n, f->len - 8);
    f->header_len = (size_t)n;
    if (n < 2 || f->buf[8] != '{')
        return ecr_fail(ECR_E_INVALID, "%s: header does not start with '{' (header length %zu)",
                        f->label, f->header_len);
    size_t bad;
    if (!utf8_valid(f->buf + 8, f->header_len, &bad))
        return ecr_fail(ECR_E_INVALID, "%s: header byte %zu: invalid UTF-8", f->label, 8 + bad);
    return ECR_OK;
}

/* Rejects number tokens written as non-integers ("2.0", "1e3"): cJSON keeps only the
 * double, so the raw text is scanned. `h` is the header (n bytes), already valid JSON. */
static ecr_status st_check_number_tokens(const ecr_st_file *f, const char *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '"') {                      /* skip a string with its escapes */
            for (i++; i < n && h[i] != '"'; i++)
                if (h[i] == '\\') i++;
            continue;
        }
        if (h[i] != '-' && (h[i] < '0' || h[i] > '9')) continue;
        size_t j = i;
        int frac = 0;
        while (j < n && strchr("-+.eE0123456789", h[j])) {
            if (h[j] == '.' || h[j] == 'e' || h[j] == 'E') frac = 1;
            j++;
        }
        if (frac)
            return ecr_fail(ECR_E_INVALID, "%s: header byte %zu: number '%.*s' is not an integer",
                            f->label, 8 + i, (int)(j - i > 40 ? 40 : j - i), h + i);
        i = j - 1;
    }
    return ECR_OK;
}

/* Parses the header into *root (caller deletes): JSON object, nothing but whitespace
 * after it, integer-only numbers. */
static ecr_status st_parse_json(const ecr_st_file *f, cJSON **root) {
    const char *h = (const char *)f->buf + 8;
    size_t n = f->header_len;
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(h, n, &end, 0);
    if (!*root) {
        size_t at = cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - h) : 0;
        if (at > n) at = n;
        return ecr_fail(ECR_E_INVALID, "%s: header byte %zu: not valid JSON", f->label, 8 + at);
    }
    if (!cJSON_IsObject(*root))
        return ecr_fail(ECR_E_INVALID, "%s: header: JSON is not an object", f->label);
    for (size_t i = (size_t)(end - h); i < n; i++)
        if (!strchr(" \t\r\n", h[i]) || h[i] == '\0')
            return ecr_fail(ECR_E_INVALID, "%s: header byte %zu: data after the JSON object",
                            f->label, 8 + i);
    return st_check_number_tokens(f, h, n);
}

/* ---- entries ------------------------------------------------------------------------ */

/* *out = item as an exact non-negative integer; 0 if it is not one. */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return 0;
    double d = item->valuedouble;
    if (!(d >= 0) || d > ST_MAX_EXACT || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static ecr_status st_parse_dtype(const ecr_st_file *f, const cJSON *e, ecr_tensor_view *v) {
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    if (!cJSON_IsString(dt))
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': dtype %s", f->label, ST_NAME_SHOWN,
                        v->name, dt ? "is not a string" : "is missing");
    int d = dtype_parse(dt->valuestring);
    if (d < 0)
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': unknown dtype '%.40s' (known: F32 F16 BF16 I64 I32 U32 U16 U8)",
                        f->label, ST_NAME_SHOWN, v->name, dt->valuestring);
    v->dtype = (ecr_dtype)d;
    return ECR_OK;
}

static ecr_status st_parse_shape(const ecr_st_file *f, const cJSON *e, ecr_tensor_view *v) {
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(sh))
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': shape %s", f->label, ST_NAME_SHOWN,
                        v->name, sh ? "is not an array" : "is missing");
    int nd = cJSON_GetArraySize(sh);
    if (nd > ECR_MAX_DIMS)
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': shape has %d dimensions (at most %d)",
                        f->label, ST_NAME_SHOWN, v->name, nd, ECR_MAX_DIMS);
    int i = 0;
    for (const cJSON *d = sh->child; d; d = d->next, i++) {
        uint64_t x = 0;
        if (!cJSON_IsNumber(d))
            return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': shape[%d] is not a number",
                            f->label, ST_NAME_SHOWN, v->name, i);
        if (!json_uint(d, &x))
            return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': shape[%d] = %.17g is not a non-negative integer",
                            f->label, ST_NAME_SHOWN, v->name, i, d->valuedouble);
        v->shape[i] = (int64_t)x;
    }
    v->ndim = nd;
    if (!shape_numel(nd, v->shape, &v->numel)) {
        char s[256];
        shape_str(s, sizeof s, nd, v->shape);
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': shape %s has too many elements",
                        f->label, ST_NAME_SHOWN, v->name, s);
    }
    v->nbytes = v->numel * dtype_sizes[v->dtype];
    return ECR_OK;
}

/* Reads data_offsets into begin/end and checks them against the shape and data region. */
static ecr_status st_parse_offsets(const ecr_st_file *f, const cJSON *e, const ecr_tensor_view *v,
                                   size_t *begin, size_t *end) {
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(off->child, &b) ||
        !json_uint(off->child->next, &en))
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': data_offsets %s", f->label, ST_NAME_SHOWN,
                        v->name, off ? "is not an array of 2 non-negative integers" : "is missing");
    if (en < b || en - b != v->nbytes) {
        char s[256];
        shape_str(s, sizeof s, v->ndim, v->shape);
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': data_offsets [%llu, %llu] do not match shape %s %s (%zu bytes)",
                        f->label, ST_NAME_SHOWN, v->name, (unsigned long long)b, (unsigned long long)en,
                        s, dtype_names[v->dtype], v->nbytes);
    }
    size_t region = f->len - 8 - f->header_len;
    if (en > region)
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': data_offsets [%llu, %llu] extend past the data region (%zu bytes)",
                        f->label, ST_NAME_SHOWN, v->name, (unsigned long long)b, (unsigned long long)en, region);
    *begin = (size_t)b;
    *end = (size_t)en;
    return ECR_OK;
}

/* Rejects fields other than dtype / shape / data_offsets in a tensor entry. */
static ecr_status st_check_fields(const ecr_st_file *f, const cJSON *e, const char *name) {
    for (const cJSON *c = e->child; c; c = c->next)
        if (strcmp(c->string, "dtype") && strcmp(c->string, "shape") && strcmp(c->string, "data_offsets"))
            return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': unknown field '%.40s'", f->label,
                            ST_NAME_SHOWN, name, c->string);
    int nd = 0, ns = 0, no = 0;                 /* cJSON keeps duplicate keys */
    for (const cJSON *c = e->child; c; c = c->next) {
        nd += !strcmp(c->string, "dtype");
        ns += !strcmp(c->string, "shape");
        no += !strcmp(c->string, "data_offsets");
    }
    if (nd > 1 || ns > 1 || no > 1)
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': duplicate field", f->label, ST_NAME_SHOWN, name);
    return ECR_OK;
}

/* Fills f->t[i] from entry `e`; the view's data is set later (st_bind_data). */
static ecr_status st_parse_tensor(ecr_st_file *f, const cJSON *e, size_t i, size_t *begin, size_t *end) {
    ecr_tensor_view *v = &f->t[i];
    char *name = strdup(e->string);
    if (!name) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", f->label);
    v->name = name;
    if (!cJSON_IsObject(e))
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': entry is not an object", f->label,
                        ST_NAME_SHOWN, name);
    if (name[0] == '\0')
        return ecr_fail(ECR_E_INVALID, "%s: header: empty tensor name", f->label);
    ecr_status st = st_check_fields(f, e, name);
    if (st == ECR_OK) st = st_parse_dtype(f, e, v);
    if (st == ECR_OK) st = st_parse_shape(f, e, v);
    if (st == ECR_OK) st = st_parse_offsets(f, e, v, begin, end);
    return st;
}

/* ---- metadata ----------------------------------------------------------------------- */

typedef struct { const char *key; size_t i; } st_keyed;

static int cmp_keyed(const void *a, const void *b) {
    const st_keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Sorts idx[0..n) (entries of keys[]) by key; 0 on allocation failure. */
static int sort_by_key(const char *const *keys, size_t *idx, size_t n) {
    st_keyed *k = malloc((n ? n : 1) * sizeof *k);
    if (!k) return 0;
    for (size_t i = 0; i < n; i++) k[i] = (st_keyed){keys[i], i};
    qsort(k, n, sizeof *k, cmp_keyed);
    for (size_t i = 0; i < n; i++) idx[i] = k[i].i;
    free(k);
    return 1;
}

/* Copies "__metadata__" (an object of strings, no duplicate keys) into f->meta_*,
 * sorted by key. */
static ecr_status st_parse_meta(ecr_st_file *f, const cJSON *m) {
    if (!cJSON_IsObject(m))
        return ecr_fail(ECR_E_INVALID, "%s: __metadata__: not an object", f->label);
    size_t n = (size_t)cJSON_GetArraySize(m), i = 0;
    const char **key = malloc((n ? n : 1) * sizeof *key), **val = malloc((n ? n : 1) * sizeof *val);
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    f->meta_key = calloc(n ? n : 1, sizeof *f->meta_key);
    f->meta_val = calloc(n ? n : 1, sizeof *f->meta_val);
    ecr_status st = ECR_OK;
    if (!key || !val || !idx || !f->meta_key || !f->meta_val) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", f->label);
    for (const cJSON *c = m->child; st == ECR_OK && c; c = c->next, i++) {
        if (!cJSON_IsString(c))
            st = ecr_fail(ECR_E_INVALID, "%s: __metadata__: value of '%.*s' is not a string",
                          f->label, ST_NAME_SHOWN, c->string);
        key[i] = c->string;
        val[i] = c->valuestring;
    }
    if (st == ECR_OK && !sort_by_key(key, idx, n)) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", f->label);
    for (i = 1; st == ECR_OK && i < n; i++)
        if (!strcmp(key[idx[i - 1]], key[idx[i]]))
            st = ecr_fail(ECR_E_INVALID, "%s: __metadata__: duplicate key '%.*s'", f->label,
                          ST_NAME_SHOWN, key[idx[i]]);
    for (i = 0; st == ECR_OK && i < n; i++) {
        f->meta_key[i] = strdup(key[idx[i]]);
        f->meta_val[i] = strdup(val[idx[i]]);
        f->n_meta++;
        if (!f->meta_key[i] || !f->meta_val[i]) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", f->label);
    }
    free(key);
    free(val);
    free(idx);
    return st;
}

/* ---- layout -------------------------------------------------------------------------- */

typedef struct { size_t begin, end, i; } st_span;

static int cmp_span(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->i < y->i ? -1 : (x->i > y->i);
}

/* Sorted by offset, the tensors must tile the data region exactly. */
static ecr_status st_check_layout(const ecr_st_file *f, st_span *sp) {
    size_t region = f->len - 8 - f->header_len, pos = 0;
    qsort(sp, f->n, sizeof *sp, cmp_span);
    for (size_t k = 0; k < f->n; k++) {
        const char *name = f->t[sp[k].i].name;
        if (sp[k].begin < pos) {                 /* pos == sp[k - 1].end */
            size_t p = k - 1;
            return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': data_offsets [%zu, %zu] overlap tensor '%.*s' [%zu, %zu]",
                            f->label, ST_NAME_SHOWN, name, sp[k].begin, sp[k].end, ST_NAME_SHOWN,
                            f->t[sp[p].i].name, sp[p].begin, sp[p].end);
        }
        if (sp[k].begin > pos)
            return ecr_fail(ECR_E_INVALID, "%s: tensor '%.*s': gap of %zu bytes before its data_offsets [%zu, %zu]",
                            f->label, ST_NAME_SHOWN, name, sp[k].begin - pos, sp[k].begin, sp[k].end);
        pos = sp[k].end;
    }
    if (pos != region)
        return ecr_fail(ECR_E_INVALID, "%s: data region: bytes %zu..%zu (of %zu) belong to no tensor",
                        f->label, pos, region, region);
    return ECR_OK;
}

/* Sets each view's data pointer; copies tensors misaligned for their dtype. */
static ecr_status st_bind_data(ecr_st_file *f, const st_span *sp) {
    const uint8_t *region = f->buf + 8 + f->header_len;
    for (size_t k = 0; k < f->n; k++) {
        ecr_tensor_view *v = &f->t[sp[k].i];
        const uint8_t *p = region + sp[k].begin;
        if (v->nbytes == 0) { v->data = &st_empty_data; continue; }
        if ((uintptr_t)p % dtype_sizes[v->dtype] == 0) { v->data = p; continue; }
        void *copy = malloc(v->nbytes);          /* malloc: aligned for every dtype */
        if (!copy) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", f->label);
        memcpy(copy, p, v->nbytes);
        f->copies[sp[k].i] = copy;
        v->data = copy;
    }
    return ECR_OK;
}

/* Builds f->by_name (tensor indices sorted by name) and rejects duplicate names. */
static ecr_status st_index_names(ecr_st_file *f) {
    const char **names = malloc((f->n ? f->n : 1) * sizeof *names);
    if (!names) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", f->label);
    for (size_t i = 0; i < f->n; i++) names[i] = f->t[i].name;
    int ok = sort_by_key(names, f->by_name, f->n);
    free(names);
    if (!ok) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", f->label);
    for (size_t i = 1; i < f->n; i++)
        if (!strcmp(f->t[f->by_name[i - 1]].name, f->t[f->by_name[i]].name))
            return ecr_fail(ECR_E_INVALID, "%s: header: duplicate tensor name '%.*s'", f->label,
                            ST_NAME_SHOWN, f->t[f->by_name[i]].name);
    return ECR_OK;
}

/* Counts "__metadata__" keys (cJSON keeps duplicates); sets *meta to the first. */
static ecr_status st_find_meta(const ecr_st_file *f, const cJSON *root, const cJSON **meta, size_t *n_tensors) {
    size_t n = 0, nm = 0;
    *meta = NULL;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) {
            if (!nm++) *meta = c;
        } else {
            n++;
        }
    }
    if (nm > 1) return ecr_fail(ECR_E_INVALID, "%s: header: duplicate __metadata__", f->label);
    *n_tensors = n;
    return ECR_OK;
}

/* Validates the header and the layout, then exposes the tensors. */
static ecr_status st_parse(ecr_st_file *f) {
    ecr_status st = st_check_frame(f);
    if (st != ECR_OK) return st;
    cJSON *root = NULL;
    st = st_parse_json(f, &root);
    const cJSON *meta = NULL;
    size_t n = 0;
    if (st == ECR_OK) st = st_find_meta(f, root, &meta, &n);
    if (st == ECR_OK && meta) st = st_parse_meta(f, meta);
    st_span *sp = NULL;
    if (st == ECR_OK) {
        f->t = calloc(n ? n : 1, sizeof *f->t);
        f->copies = calloc(n ? n : 1, sizeof *f->copies);
        f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
        sp = calloc(n ? n : 1, sizeof *sp);
        if (!f->t || !f->copies || !f->by_name || !sp) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", f->label);
    }
    for (const cJSON *c = root ? root->child : NULL; st == ECR_OK && c; c = c->next) {
        if (c == meta) continue;
        sp[f->n].i = f->n;
        f->n++;                                  /* count first: close frees the name */
        st = st_parse_tensor(f, c, f->n - 1, &sp[f->n - 1].begin, &sp[f->n - 1].end);
    }
    if (st == ECR_OK) st = st_index_names(f);
    if (st == ECR_OK) st = st_check_layout(f, sp);
    if (st == ECR_OK) st = st_bind_data(f, sp);
    free(sp);
    cJSON_Delete(root);
    return st;
}

ecr_status ecr_st_open_memory(const void *buf, size_t len, const char *label, ecr_st_file **out) {
    *out = NULL;
    if (!buf && len) return ecr_fail(ECR_E_INVALID, "%s: NULL buffer", label ? label : "<memory>");
    ecr_st_file *f = st_alloc(label);
    if (!f) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", label ? label : "<memory>");
    f->buf = buf;
    f->len = len;
    ecr_status st = st_parse(f);
    if (st != ECR_OK) {
        ecr_st_close(f);
        return st;
    }
    *out = f;
    return ECR_OK;
}

/* Maps `path` read-only into f (f->buf/len/map). Empty files get no mapping. */
static ecr_status st_map(ecr_st_file *f, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ecr_fail(ECR_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return ecr_fail(ECR_E_IO, "%s: cannot read: %s", path,
                        S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    }
    f->len = (size_t)sb.st_size;
    if (f->len > 0) {
        void *m = mmap(NULL, f->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            return ecr_fail(ECR_E_IO, "%s: cannot map: %s", path, strerror(e));
        }
        f->map = m;
        f->buf = m;
    }
    close(fd);
    return ECR_OK;
}

ecr_status ecr_st_open(const char *path, ecr_st_file **out) {
    *out = NULL;
    ecr_st_file *f = st_alloc(path);
    if (!f) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    ecr_status st = st_map(f, path);
    if (st == ECR_OK) st = st_parse(f);
    if (st != ECR_OK) {
        ecr_st_close(f);
        return st;
    }
    *out = f;
    return ECR_OK;
}

/* ---- accessors -------------------------------------------------------------------- */

size_t ecr_st_count(const ecr_st_file *f) { return f ? f->n : 0; }

const ecr_tensor_view *ecr_st_at(const ecr_st_file *f, size_t i) {
    return f && i < f->n ? &f->t[i] : NULL;
}

const ecr_tensor_view *ecr_st_find(const ecr_st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->n;                    /* binary search over by_name */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[f->by_name[mid]].name, name);
        if (c == 0) return &f->t[f->by_name[mid]];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

const char *ecr_st_meta(const ecr_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    size_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta_key[mid], key);
        if (c == 0) return f->meta_val[mid];
        if (c < 0) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

size_t ecr_st_meta_count(const ecr_st_file *f) { return f ? f->n_meta : 0; }

void ecr_st_meta_at(const ecr_st_file *f, size_t i, const char **key, const char **value) {
    int ok = f && i < f->n_meta;
    if (key) *key = ok ? f->meta_key[i] : NULL;
    if (value) *value = ok ? f->meta_val[i] : NULL;
}

ecr_status ecr_st_get(const ecr_st_file *f, const char *name, ecr_dtype dtype, int ndim,
                      const int64_t *shape, const ecr_tensor_view **out) {
    *out = NULL;
    if (ndim < 0 || ndim > ECR_MAX_DIMS || (ndim > 0 && !shape))
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%s': bad expected shape (ndim %d)", f->label, name, ndim);
    const ecr_tensor_view *v = ecr_st_find(f, name);
    if (!v) return ecr_fail(ECR_E_INVALID, "%s: tensor '%s' not found", f->label, name);
    if (v->dtype != dtype)
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%s': dtype %s (expected %s)", f->label, name,
                        ecr_dtype_name(v->dtype), ecr_dtype_name(dtype));
    int ok = v->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        if (shape[i] >= 0 && shape[i] != v->shape[i]) ok = 0;
    if (!ok) {
        char got[256], want[256];
        shape_str(got, sizeof got, v->ndim, v->shape);
        shape_str(want, sizeof want, ndim, shape);
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%s': shape %s (expected %s)", f->label, name, got, want);
    }
    *out = v;
    return ECR_OK;
}

/* ==== writer ========================================================================== */

typedef struct st_wtensor {
    char *name;                  /* owned */
    ecr_dtype dtype;
    int ndim;
    int64_t shape[ECR_MAX_DIMS];
    size_t nbytes;
    const void *data;            /* borrowed until ecr_st_writer_write */
    size_t offset;               /* in the data region, set by st_writer_layout */
} st_wtensor;

struct ecr_st_writer {
    st_wtensor *t;
    size_t n, cap;
    char **mkey, **mval;         /* owned */
    size_t n_meta, meta_cap;
};

ecr_status ecr_st_writer_create(ecr_st_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "safetensors writer: out of memory");
}

void ecr_st_writer_free(ecr_st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < w->n_meta; i++) {
        free(w->mkey[i]);
        free(w->mval[i]);
    }
    free(w->t);
    free(w->mkey);
    free(w->mval);
    free(w);
}

/* Checks a name or metadata string: non-NULL, UTF-8. */
static int st_text_ok(const char *s) {
    size_t bad;
    return s && utf8_valid((const uint8_t *)s, strlen(s), &bad);
}

static ecr_status st_writer_check(const ecr_st_writer *w, const char *name, ecr_dtype dtype, int ndim,
                                  const int64_t *shape, size_t *nbytes) {
    if (!st_text_ok(name) || !name[0] || !strcmp(name, "__metadata__"))
        return ecr_fail(ECR_E_INVALID, "safetensors writer: tensor name '%.*s' is not allowed",
                        ST_NAME_SHOWN, name ? name : "(null)");
    for (size_t i = 0; i < w->n; i++)
        if (!strcmp(w->t[i].name, name))
            return ecr_fail(ECR_E_INVALID, "safetensors writer: duplicate tensor '%.*s'", ST_NAME_SHOWN, name);
    if ((unsigned)dtype >= ECR_DTYPE_COUNT)
        return ecr_fail(ECR_E_INVALID, "safetensors writer: tensor '%.*s': bad dtype %d", ST_NAME_SHOWN,
                        name, (int)dtype);
    if (ndim < 0 || ndim > ECR_MAX_DIMS || (ndim > 0 && !shape))
        return ecr_fail(ECR_E_INVALID, "safetensors writer: tensor '%.*s': bad ndim %d", ST_NAME_SHOWN, name, ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || (double)shape[i] > ST_MAX_EXACT)
            return ecr_fail(ECR_E_INVALID, "safetensors writer: tensor '%.*s': shape[%d] = %lld",
                            ST_NAME_SHOWN, name, i, (long long)shape[i]);
    size_t numel;
    if (!shape_numel(ndim, shape, &numel))
        return ecr_fail(ECR_E_INVALID, "safetensors writer: tensor '%.*s': too many elements", ST_NAME_SHOWN, name);
    *nbytes = numel * dtype_sizes[dtype];
    return ECR_OK;
}

ecr_status ecr_st_writer_add(ecr_st_writer *w, const char *name, ecr_dtype dtype, int ndim,
                             const int64_t *shape, const void *data) {
    size_t nbytes = 0;
    ecr_status st = st_writer_check(w, name, dtype, ndim, shape, &nbytes);
    if (st != ECR_OK) return st;
    if (nbytes && !data)
        return ecr_fail(ECR_E_INVALID, "safetensors writer: tensor '%.*s': NULL data", ST_NAME_SHOWN, name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 16;
        st_wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return ecr_fail(ECR_E_NOMEM, "safetensors writer: out of memory");
        w->t = t;
        w->cap = cap;
    }
    st_wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return ecr_fail(ECR_E_NOMEM, "safetensors writer: out of memory");
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    t->data = data;
    w->n++;
    return ECR_OK;
}

ecr_status ecr_st_writer_meta(ecr_st_writer *w, const char *key, const char *value) {
    if (!st_text_ok(key) || !key[0] || !st_text_ok(value))
        return ecr_fail(ECR_E_INVALID, "safetensors writer: __metadata__: bad key or value for '%.*s'",
                        ST_NAME_SHOWN, key ? key : "(null)");
    char *v = strdup(value);
    if (!v) return ecr_fail(ECR_E_NOMEM, "safetensors writer: out of memory");
    for (size_t i = 0; i < w->n_meta; i++) {
        if (!strcmp(w->mkey[i], key)) {          /* a repeated key replaces the value */
            free(w->mval[i]);
            w->mval[i] = v;
            return ECR_OK;
        }
    }
    if (w->n_meta == w->meta_cap) {
        size_t cap = w->meta_cap ? 2 * w->meta_cap : 8;
        char **k = realloc(w->mkey, cap * sizeof *k);
        if (k) w->mkey = k;
        char **vv = k ? realloc(w->mval, cap * sizeof *vv) : NULL;
        if (vv) w->mval = vv;
        if (!k || !vv) { free(v); return ecr_fail(ECR_E_NOMEM, "safetensors writer: out of memory"); }
        w->meta_cap = cap;
    }
    w->mkey[w->n_meta] = strdup(key);
    if (!w->mkey[w->n_meta]) { free(v); return ecr_fail(ECR_E_NOMEM, "safetensors writer: out of memory"); }
    w->mval[w->n_meta++] = v;
    return ECR_OK;
}

/* Data-region order: stable by element size, largest first. Every tensor's byte size is
 * a multiple of its element size, so each offset is then a multiple of its element size
 * and (with the 8-aligned data region) every tensor is aligned in the file. */
static void st_writer_layout(ecr_st_writer *w) {
    size_t off = 0;
    for (size_t sz = 8; sz >= 1; sz /= 2)
        for (size_t i = 0; i < w->n; i++)
            if (dtype_sizes[w->t[i].dtype] == sz) {
                w->t[i].offset = off;
                off += w->t[i].nbytes;
            }
}

static cJSON *json_int_raw(uint64_t x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)x);
    return cJSON_CreateRaw(buf);
}

/* One tensor entry {"dtype", "shape", "data_offsets"}; NULL on allocation failure. */
static cJSON *st_writer_entry(const st_wtensor *t) {
    cJSON *e = cJSON_CreateObject(), *sh = cJSON_CreateArray(), *off = cJSON_CreateArray();
    int ok = e && sh && off && cJSON_AddStringToObject(e, "dtype", dtype_names[t->dtype]);
    for (int d = 0; ok && d < t->ndim; d++) ok = cJSON_AddItemToArray(sh, json_int_raw((uint64_t)t->shape[d]));
    ok = ok && cJSON_AddItemToArray(off, json_int_raw(t->offset));
    ok = ok && cJSON_AddItemToArray(off, json_int_raw(t->offset + t->nbytes));
    if (ok && cJSON_AddItemToObject(e, "shape", sh)) sh = NULL;
    if (ok && cJSON_AddItemToObject(e, "data_offsets", off)) off = NULL;
    cJSON_Delete(sh);
    cJSON_Delete(off);
    if (!ok || sh || off) { cJSON_Delete(e); return NULL; }
    return e;
}

/* The header text, space-padded so 8 + length is a multiple of 8 (malloc'd). */
static char *st_writer_header(const ecr_st_writer *w, size_t *len) {
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && w->n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        ok = m != NULL;
        for (size_t i = 0; ok && i < w->n_meta; i++) ok = cJSON_AddStringToObject(m, w->mkey[i], w->mval[i]) != NULL;
    }
    for (size_t i = 0; ok && i < w->n; i++) {
        cJSON *e = st_writer_entry(&w->t[i]);
        ok = e && cJSON_AddItemToObject(root, w->t[i].name, e);
        if (!ok) cJSON_Delete(e);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) return NULL;
    size_t n = strlen(text), padded = n + (8 - (8 + n) % 8) % 8;
    char *h = malloc(padded + 1);
    if (h) {
        memcpy(h, text, n);
        memset(h + n, ' ', padded - n);
        h[padded] = '\0';
        *len = padded;
    }
    cJSON_free(text);
    return h;
}

/* Writes length, header and data (in layout order) to fp; 0 on a short write. */
static int st_writer_emit(const ecr_st_writer *w, FILE *fp, const char *header, size_t hlen) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    if (fwrite(le, 1, 8, fp) != 8 || fwrite(header, 1, hlen, fp) != hlen) return 0;
    for (size_t sz = 8; sz >= 1; sz /= 2)
        for (size_t i = 0; i < w->n; i++)
            if (dtype_sizes[w->t[i].dtype] == sz && w->t[i].nbytes &&
                fwrite(w->t[i].data, 1, w->t[i].nbytes, fp) != w->t[i].nbytes)
                return 0;
    return 1;
}

ecr_status ecr_st_writer_write(ecr_st_writer *w, const char *path) {
    st_writer_layout(w);
    size_t hlen = 0;
    char *header = st_writer_header(w, &hlen);
    if (!header) return ecr_fail(ECR_E_NOMEM, "%s: out of memory building the header", path);
    if (hlen > ST_MAX_HEADER) {
        free(header);
        return ecr_fail(ECR_E_INVALID, "%s: header would be %zu bytes (limit 100 MB)", path, hlen);
    }
    ecr_atomic_file af;
    ecr_status st = ecr_atomic_open(&af, path);
    if (st != ECR_OK) { free(header); return st; }
    int ok = st_writer_emit(w, af.fp, header, hlen);
    free(header);
    if (!ok) {
        int e = errno;
        ecr_atomic_abort(&af);
        return ecr_fail(ECR_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    return ecr_atomic_commit(&af);
}
