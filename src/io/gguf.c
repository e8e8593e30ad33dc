/* gguf.c — GGUF version 3 (ggml's file format, what llama.cpp loads): an atomic writer and
 * Q8_0 quantisation (contracts: ecr.h, "GGUF").
 *
 * Layout (ggml's docs/gguf.md), all little-endian:
 *   "GGUF"  u32 version 3  u64 tensor count  u64 key-value count
 *   per key:     string key, u32 value type, value   (an array: u32 element type, u64 count,
 *                                                     the elements)
 *   per tensor:  string name, u32 n_dims, u64 ne[n_dims] (fastest-varying first), u32 ggml
 *                type, u64 offset of its data from the start of the data region
 *   zero padding to a multiple of the alignment (32) when there are tensors, then the data
 *   region: each tensor's data in header order, each padded with zeros to a multiple of 32
 *   (llama.cpp requires the offsets to follow one another exactly so).
 * A string is a u64 byte count and the bytes, no NUL. */
#include "ecr.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host"
#endif

#define GGUF_VERSION 3
#define GGUF_MAX_DIMS 4           /* ggml's GGML_MAX_DIMS                                    */
#define GGUF_MAX_NAME 63          /* ggml's GGML_MAX_NAME (64) less the NUL                  */

/* GGUF value types (gguf_type). */
enum { GT_UINT32 = 4, GT_INT32 = 5, GT_FLOAT32 = 6, GT_BOOL = 7, GT_STRING = 8, GT_ARRAY = 9 };

typedef struct gguf_kv {
    char *key;                    /* owned                                                   */
    uint32_t type;                /* GT_*                                                    */
    uint32_t elem;                /* element type of an array                                */
    uint64_t n;                   /* array length                                            */
    uint32_t scalar;              /* bits of a u32 / f32 / bool                              */
    char *str;                    /* owned string value                                      */
    char **strs;                  /* owned [n] strings of a string array                     */
    int32_t *i32;                 /* owned [n] of an int32 array                             */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;                   /* owned                                                   */
    ecr_gguf_type type;
    int ndim;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;             /* borrowed until ecr_gguf_writer_write                    */
    size_t nbytes;
} gguf_tensor;

struct ecr_gguf_writer {
    gguf_kv *kv;
    size_t n_kv, kv_cap;
    gguf_tensor *t;
    size_t n_t, t_cap;
};

/* ---- types and Q8_0 ------------------------------------------------------------------- */

const char *ecr_gguf_type_name(ecr_gguf_type t) {
    switch (t) {
    case ECR_GGUF_F32: return "F32";
    case ECR_GGUF_F16: return "F16";
    case ECR_GGUF_Q8_0: return "Q8_0";
    case ECR_GGUF_BF16: return "BF16";
    }
    return "?";
}

size_t ecr_gguf_row_bytes(ecr_gguf_type t, int64_t n) {
    if (n < 0) return 0;
    switch (t) {
    case ECR_GGUF_F32: return (size_t)n * 4;
    case ECR_GGUF_F16:
    case ECR_GGUF_BF16: return (size_t)n * 2;
    case ECR_GGUF_Q8_0: return n % ECR_GGUF_Q8_0_BLOCK ? 0 : (size_t)(n / ECR_GGUF_Q8_0_BLOCK) * 34;
    }
    return 0;
}

void ecr_gguf_quantize_q8_0(const float *x, int64_t n, void *out) {
    uint8_t *o = out;
    for (int64_t b = 0; b < n / ECR_GGUF_Q8_0_BLOCK; b++, x += ECR_GGUF_Q8_0_BLOCK, o += 34) {
        float amax = 0.0f;
        for (int j = 0; j < ECR_GGUF_Q8_0_BLOCK; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = ecr_f32_to_f16(d);
        memcpy(o, &h, 2);
        for (int j = 0; j < ECR_GGUF_Q8_0_BLOCK; j++) o[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

void ecr_gguf_dequantize_q8_0(const void *in, int64_t n, float *y) {
    const uint8_t *p = in;
    for (int64_t b = 0; b < n / ECR_GGUF_Q8_0_BLOCK; b++, p += 34) {
        uint16_t h;
        memcpy(&h, p, 2);
        float d = ecr_f16_to_f32(h);
        for (int j = 0; j < ECR_GGUF_Q8_0_BLOCK; j++) *y++ = d * (float)(int8_t)p[2 + j];
    }
}

/* ---- building ------------------------------------------------------------------------- */

ecr_status ecr_gguf_writer_create(ecr_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory");
}

static void kv_release(gguf_kv *kv) {
    free(kv->key);
    free(kv->str);
    for (uint64_t i = 0; kv->strs && i < kv->n; i++) free(kv->strs[i]);
    free(kv->strs);
    free(kv->i32);
}

void ecr_gguf_writer_free(ecr_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) kv_release(&w->kv[i]);
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* A new key-value slot (zeroed, key copied); ECR_E_INVALID for an empty or repeated key. */
static ecr_status kv_new(ecr_gguf_writer *w, const char *key, uint32_t type, gguf_kv **out) {
    if (!key || !key[0] || strlen(key) > 65535)
        return ecr_fail(ECR_E_INVALID, "gguf writer: empty or overlong key");
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return ecr_fail(ECR_E_INVALID, "gguf writer: key '%s' set twice", key);
    if (w->n_kv == w->kv_cap) {
        size_t cap = w->kv_cap ? 2 * w->kv_cap : 32;
        gguf_kv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) return ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory");
        w->kv = kv;
        w->kv_cap = cap;
    }
    gguf_kv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof *kv);
    if (!(kv->key = strdup(key))) return ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory");
    kv->type = type;
    w->n_kv++;
    *out = kv;
    return ECR_OK;
}

/* Drops the last slot (after a failure while filling it). */
static ecr_status kv_drop(ecr_gguf_writer *w, ecr_status st) {
    kv_release(&w->kv[--w->n_kv]);
    return st;
}

static ecr_status kv_scalar(ecr_gguf_writer *w, const char *key, uint32_t type, uint32_t bits) {
    gguf_kv *kv;
    ecr_status st = kv_new(w, key, type, &kv);
    if (!st) kv->scalar = bits;
    return st;
}

ecr_status ecr_gguf_set_u32(ecr_gguf_writer *w, const char *key, uint32_t v) {
    if (key && !strcmp(key, "general.alignment") && v != ECR_GGUF_ALIGNMENT)
        return ecr_fail(ECR_E_INVALID, "gguf writer: general.alignment must be %d", ECR_GGUF_ALIGNMENT);
    return kv_scalar(w, key, GT_UINT32, v);
}

ecr_status ecr_gguf_set_f32(ecr_gguf_writer *w, const char *key, float v) {
    uint32_t bits;
    memcpy(&bits, &v, 4);
    return kv_scalar(w, key, GT_FLOAT32, bits);
}

ecr_status ecr_gguf_set_bool(ecr_gguf_writer *w, const char *key, int v) {
    return kv_scalar(w, key, GT_BOOL, v ? 1u : 0u);
}

ecr_status ecr_gguf_set_str(ecr_gguf_writer *w, const char *key, const char *v) {
    if (!v) return ecr_fail(ECR_E_INVALID, "gguf writer: key '%s': NULL string", key ? key : "");
    gguf_kv *kv;
    ecr_status st = kv_new(w, key, GT_STRING, &kv);
    if (st) return st;
    if (!(kv->str = strdup(v))) return kv_drop(w, ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory"));
    return ECR_OK;
}

ecr_status ecr_gguf_set_str_array(ecr_gguf_writer *w, const char *key, const char *const *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!v[i]) return ecr_fail(ECR_E_INVALID, "gguf writer: key '%s': NULL string at %zu", key ? key : "", i);
    gguf_kv *kv;
    ecr_status st = kv_new(w, key, GT_ARRAY, &kv);
    if (st) return st;
    kv->elem = GT_STRING;
    if (!(kv->strs = calloc(n ? n : 1, sizeof *kv->strs)))
        return kv_drop(w, ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory"));
    for (kv->n = 0; kv->n < n; kv->n++)
        if (!(kv->strs[kv->n] = strdup(v[kv->n]))) return kv_drop(w, ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory"));
    return ECR_OK;
}

ecr_status ecr_gguf_set_i32_array(ecr_gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    gguf_kv *kv;
    ecr_status st = kv_new(w, key, GT_ARRAY, &kv);
    if (st) return st;
    kv->elem = GT_INT32;
    if (!(kv->i32 = malloc((n ? n : 1) * sizeof *kv->i32)))
        return kv_drop(w, ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory"));
    if (n) memcpy(kv->i32, v, n * sizeof *v);
    kv->n = n;
    return ECR_OK;
}

ecr_status ecr_gguf_add_tensor(ecr_gguf_writer *w, const char *name, ecr_gguf_type type, int ndim,
                               const int64_t *ne, const void *data) {
    if (!name || !name[0] || strlen(name) > GGUF_MAX_NAME)
        return ecr_fail(ECR_E_INVALID, "gguf writer: tensor name '%.80s' is empty or longer than %d bytes",
                        name ? name : "", GGUF_MAX_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return ecr_fail(ECR_E_INVALID, "gguf writer: duplicate tensor '%s'", name);
    if (ndim < 1 || ndim > GGUF_MAX_DIMS)
        return ecr_fail(ECR_E_INVALID, "gguf writer: tensor '%s': %d dims (1 to %d)", name, ndim, GGUF_MAX_DIMS);
    if (type != ECR_GGUF_F32 && type != ECR_GGUF_F16 && type != ECR_GGUF_BF16 && type != ECR_GGUF_Q8_0)
        return ecr_fail(ECR_E_INVALID, "gguf writer: tensor '%s': unsupported type %d", name, (int)type);
    for (int i = 0; i < ndim; i++)
        if (ne[i] < 1 || ne[i] > ((int64_t)1 << 40))
            return ecr_fail(ECR_E_INVALID, "gguf writer: tensor '%s': ne[%d] = %lld", name, i, (long long)ne[i]);
    size_t nbytes = ecr_gguf_row_bytes(type, ne[0]);
    if (!nbytes)
        return ecr_fail(ECR_E_INVALID, "gguf writer: tensor '%s': %s needs rows of a multiple of %d elements, not %lld",
                        name, ecr_gguf_type_name(type), ECR_GGUF_Q8_0_BLOCK, (long long)ne[0]);
    for (int i = 1; i < ndim; i++) {
        if ((uint64_t)nbytes > ((uint64_t)1 << 62) / (uint64_t)ne[i])
            return ecr_fail(ECR_E_INVALID, "gguf writer: tensor '%s': too large", name);
        nbytes *= (size_t)ne[i];
    }
    if (!data) return ecr_fail(ECR_E_INVALID, "gguf writer: tensor '%s': NULL data", name);
    if (w->n_t == w->t_cap) {
        size_t cap = w->t_cap ? 2 * w->t_cap : 32;
        gguf_tensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) return ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory");
        w->t = t;
        w->t_cap = cap;
    }
    gguf_tensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) return ecr_fail(ECR_E_NOMEM, "gguf writer: out of memory");
    t->type = type;
    t->ndim = ndim;
    memcpy(t->ne, ne, (size_t)ndim * sizeof *ne);
    t->data = data;
    t->nbytes = nbytes;
    w->n_t++;
    return ECR_OK;
}

/* ---- writing -------------------------------------------------------------------------- */

static size_t pad_to(size_t n) { return (ECR_GGUF_ALIGNMENT - n % ECR_GGUF_ALIGNMENT) % ECR_GGUF_ALIGNMENT; }

/* Output with a running byte count; `ok` turns 0 at the first short write. */
typedef struct gguf_out {
    FILE *fp;
    size_t pos;
    int ok;
} gguf_out;

static void put(gguf_out *o, const void *p, size_t n) {
    if (o->ok && n && fwrite(p, 1, n, o->fp) != n) o->ok = 0;
    o->pos += n;
}
static void put_u32(gguf_out *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(gguf_out *o, uint64_t v) { put(o, &v, 8); }
static void put_str(gguf_out *o, const char *s) {
    size_t n = strlen(s);
    put_u64(o, n);
    put(o, s, n);
}
static void put_zeros(gguf_out *o, size_t n) {
    static const unsigned char z[ECR_GGUF_ALIGNMENT];
    put(o, z, n);
}

static void put_kv(gguf_out *o, const gguf_kv *kv) {
    put_str(o, kv->key);
    put_u32(o, kv->type);
    switch (kv->type) {
    case GT_STRING: put_str(o, kv->str); break;
    case GT_ARRAY:
        put_u32(o, kv->elem);
        put_u64(o, kv->n);
        if (kv->elem == GT_STRING)
            for (uint64_t i = 0; i < kv->n; i++) put_str(o, kv->strs[i]);
        else
            put(o, kv->i32, (size_t)kv->n * 4);
        break;
    case GT_BOOL: {
        uint8_t b = (uint8_t)kv->scalar;
        put(o, &b, 1);
        break;
    }
    default: put_u32(o, kv->scalar); break;
    }
}

ecr_status ecr_gguf_writer_write(const ecr_gguf_writer *w, const char *path) {
    ecr_atomic_file af;
    ecr_status st = ecr_atomic_open(&af, path);
    if (st) return st;
    gguf_out o = {af.fp, 0, 1};
    put(&o, "GGUF", 4);
    put_u32(&o, GGUF_VERSION);
    put_u64(&o, w->n_t);
    put_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) put_kv(&o, &w->kv[i]);
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const gguf_tensor *t = &w->t[i];
        put_str(&o, t->name);
        put_u32(&o, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) put_u64(&o, (uint64_t)t->ne[d]);
        put_u32(&o, (uint32_t)t->type);
        put_u64(&o, off);
        off += t->nbytes + pad_to(t->nbytes);
    }
    if (w->n_t) put_zeros(&o, pad_to(o.pos)); /* the data region starts aligned */
    for (size_t i = 0; i < w->n_t && o.ok; i++) {
        put(&o, w->t[i].data, w->t[i].nbytes);
        put_zeros(&o, pad_to(w->t[i].nbytes));
    }
    if (!o.ok) {
        int e = errno;
        ecr_atomic_abort(&af);
        return ecr_fail(ECR_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    return ecr_atomic_commit(&af);
}
