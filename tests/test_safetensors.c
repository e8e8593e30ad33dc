/* test_safetensors.c — safetensors reader/writer and the fp16/bf16 conversions.
 *
 * Checks: round trip of every dtype with metadata; the exact bytes of a small file;
 * files in the layout other writers produce (unaligned tensors included); every kind of
 * malformed file refused with ECR_E_INVALID and a message naming the file and place;
 * ecr_st_get's dtype/shape checks; f16/bf16 rounding against exact references. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "testlib.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>




/* Reads a whole file (malloc'd); NULL on error. */
static uint8_t *slurp(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(b, 1, (size_t)n, fp);
    fclose(fp);
    return b;
}

/* An image: u64 LE len(header), header, `data_len` bytes 0, 1, 2, ... (malloc'd). */
static uint8_t *make_image(const char *header, size_t data_len, size_t *len) {
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++) b[8 + h + i] = (uint8_t)i;
    return b;
}

/* ---- fp16 / bf16 ------------------------------------------------------------------- */

static uint32_t fbits(float x) { uint32_t b; memcpy(&b, &x, 4); return b; }
static float bitsf(uint32_t b) { float x; memcpy(&x, &b, 4); return x; }

static void test_half_known_values(void) {
    CHECK(ecr_f32_to_f16(0.0f) == 0x0000);
    CHECK(ecr_f32_to_f16(-0.0f) == 0x8000);
    CHECK(ecr_f32_to_f16(1.0f) == 0x3C00);
    CHECK(ecr_f32_to_f16(-2.0f) == 0xC000);
    CHECK(ecr_f32_to_f16(65504.0f) == 0x7BFF);             /* largest finite          */
    CHECK(ecr_f32_to_f16(65519.99f) == 0x7BFF);            /* just below the midpoint */
    CHECK(ecr_f32_to_f16(65520.0f) == 0x7C00);             /* midpoint: ties to even = inf */
    CHECK(ecr_f32_to_f16(1e10f) == 0x7C00);
    CHECK(ecr_f32_to_f16(-1e10f) == 0xFC00);
    CHECK(ecr_f32_to_f16(bitsf(0x7F800000u)) == 0x7C00);   /* inf */
    CHECK(ecr_f32_to_f16(0x1p-14f) == 0x0400);             /* smallest normal         */
    CHECK(ecr_f32_to_f16(0x1p-24f) == 0x0001);             /* smallest subnormal      */
    CHECK(ecr_f32_to_f16(0x1p-25f) == 0x0000);             /* tie -> even (0)         */
    CHECK(ecr_f32_to_f16(0x1.000002p-25f) == 0x0001);      /* just above the tie      */
    CHECK(ecr_f32_to_f16(0x3p-25f) == 0x0002);             /* 1.5 ulp tie -> even (2) */
    CHECK(ecr_f32_to_f16(1.0f + 0x1p-11f) == 0x3C00);      /* tie -> even             */
    CHECK(ecr_f32_to_f16(1.0f + 0x3p-11f) == 0x3C02);      /* tie -> even (up)        */
    CHECK(ecr_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f) == 0x3C01);
    CHECK(ecr_f32_to_f16(0x1.ffcp-15f) == 0x0400);         /* subnormal rounds up to normal */
    uint16_t qn = ecr_f32_to_f16(bitsf(0x7F800001u));      /* signalling NaN stays NaN */
    CHECK((qn & 0x7C00) == 0x7C00 && (qn & 0x3FF) != 0);
    CHECK(ecr_f32_to_f16(bitsf(0xFFC00000u)) == 0xFE00);   /* -qNaN */
    CHECK(ecr_f16_to_f32(0x3C00) == 1.0f);
    CHECK(ecr_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(ecr_f16_to_f32(0x03FF) == 0x3FFp-24f);
    CHECK(ecr_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(fbits(ecr_f16_to_f32(0x8000)) == 0x80000000u);
    CHECK(isinf(ecr_f16_to_f32(0xFC00)) && ecr_f16_to_f32(0xFC00) < 0);
    CHECK(isnan(ecr_f16_to_f32(0x7E00)));

    CHECK(ecr_f32_to_bf16(1.0f) == 0x3F80);
    CHECK(ecr_f32_to_bf16(-0.0f) == 0x8000);
    CHECK(ecr_f32_to_bf16(bitsf(0x3F808000u)) == 0x3F80);  /* tie -> even (down) */
    CHECK(ecr_f32_to_bf16(bitsf(0x3F818000u)) == 0x3F82);  /* tie -> even (up)   */
    CHECK(ecr_f32_to_bf16(bitsf(0x3F808001u)) == 0x3F81);
    CHECK(ecr_f32_to_bf16(bitsf(0x7F7FFFFFu)) == 0x7F80);  /* FLT_MAX rounds to inf */
    CHECK(ecr_f32_to_bf16(bitsf(0x00000001u)) == 0x0000);  /* tiny subnormal -> 0 */
    CHECK(ecr_f32_to_bf16(bitsf(0x00008000u)) == 0x0000);  /* subnormal tie -> even */
    CHECK(ecr_f32_to_bf16(bitsf(0x00018000u)) == 0x0002);
    uint16_t bn = ecr_f32_to_bf16(bitsf(0x7F800001u));     /* NaN with low payload only */
    CHECK((bn & 0x7F80) == 0x7F80 && (bn & 0x7F) != 0);
    CHECK(ecr_bf16_to_f32(0x3F80) == 1.0f);
    CHECK(fbits(ecr_bf16_to_f32(0xC0A0)) == 0xC0A00000u);
}

/* Every f16 value converts to f32 and back unchanged (NaNs stay NaN of the same sign). */
static void test_half_exhaustive_roundtrip(void) {
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = ecr_f16_to_f32((uint16_t)h);
        uint16_t back = ecr_f32_to_f16(f);
        int nan = (h & 0x7C00) == 0x7C00 && (h & 0x3FF);
        if (nan ? !(isnan(f) && (back & 0x7C00) == 0x7C00 && (back & 0x3FF) && (back & 0x8000) == (h & 0x8000))
                : back != h)
            bad++;
#ifdef __FLT16_MANT_DIG__
        _Float16 r;
        uint16_t hh = (uint16_t)h;
        memcpy(&r, &hh, 2);
        if (!nan && fbits((float)r) != fbits(f)) bad++;
#endif
        uint16_t b = (uint16_t)h;                  /* bf16 widening is exact, so round trip */
        float fb = ecr_bf16_to_f32(b);
        if (!isnan(fb) && ecr_f32_to_bf16(fb) != b) bad++;
    }
    CHECK_MSG(bad == 0, "%d f16/bf16 values did not round-trip", bad);
}

/* Nearest-even reference on a sorted grid: is `got` (an encoding) the correctly rounded
 * value of x?  `dec` widens an encoding; neighbours are got - 1 and got + 1 in magnitude. */
static int rne_ok(double x, uint16_t got, float (*dec)(uint16_t), uint16_t inf_bits) {
    double g = dec(got);
    uint16_t mag = got & 0x7FFF, sign = got & 0x8000;
    if (mag == inf_bits) {                       /* overflow: x must be >= the midpoint */
        double maxf = dec((uint16_t)(inf_bits - 1)), ulp = maxf - dec((uint16_t)(inf_bits - 2));
        return fabs(x) >= maxf + ulp / 2;
    }
    if (mag == inf_bits - 1) {                   /* largest finite: x below the midpoint */
        double gm = dec(mag), ulp = gm - dec((uint16_t)(inf_bits - 2));
        if (fabs(x) >= gm + ulp / 2) return 0;
    }
    double err = fabs(x - g);
    for (int d = -1; d <= 1; d += 2) {
        int m = (int)mag + d;
        if (m < 0 || m >= inf_bits) continue;
        double nb = dec((uint16_t)(sign | m));
        double e2 = fabs(x - nb);
        if (e2 < err) return 0;
        if (e2 == err && (got & 1)) return 0;    /* tie must pick the even encoding */
    }
    return 1;
}

/* Sweeps f32 bit patterns (all exponents, many mantissas) against the reference. */
static void test_half_rounding_sweep(void) {
    int bad16 = 0, badbf = 0, n = 0;
    for (uint64_t b = 0; b < 0x100000000ull; b += 65521) { /* prime stride: varied mantissas */
        uint32_t bits = (uint32_t)b ^ (uint32_t)(b >> 7);
        float x = bitsf(bits);
        if (isnan(x) || isinf(x)) continue;
        n++;
        if (!rne_ok(x, ecr_f32_to_f16(x), ecr_f16_to_f32, 0x7C00)) bad16++;
        if (!rne_ok(x, ecr_f32_to_bf16(x), ecr_bf16_to_f32, 0x7F80)) badbf++;
#ifdef __FLT16_MANT_DIG__
        _Float16 r = (_Float16)x;                /* the compiler's conversion (RNE) */
        uint16_t rb;
        memcpy(&rb, &r, 2);
        if (rb != ecr_f32_to_f16(x)) bad16++;
#endif
    }
    CHECK(n > 60000);
    CHECK_MSG(bad16 == 0, "%d of %d f16 conversions not nearest-even", bad16, n);
    CHECK_MSG(badbf == 0, "%d of %d bf16 conversions not nearest-even", badbf, n);
}

/* ---- round trip --------------------------------------------------------------------- */

/* Writes one tensor of every dtype (U8 first so the writer's layout is exercised),
 * plus metadata; reads it back and checks every field and byte. */
static void test_roundtrip_all_dtypes(void) {
    const char *path = tl_tmp_path("all.safetensors");
    uint8_t u8[5] = {0, 1, 127, 128, 255};
    float f32[6] = {1.5f, -2.25f, 0.0f, 3e-39f, 1e30f, -0.0f};
    uint16_t f16[4] = {0x3C00, 0x7BFF, 0x0001, 0xFC00}, bf16[3] = {0x3F80, 0xC0A0, 0x7F80};
    int64_t i64[3] = {INT64_MIN, -1, INT64_MAX};
    int32_t i32[2][2] = {{INT32_MIN, -7}, {0, INT32_MAX}};
    uint16_t u16[3] = {0, 1234, 65535};
    uint32_t u32[2] = {0, 4000000000u};
    struct { const char *name; ecr_dtype dt; int nd; int64_t shape[3]; const void *data; } t[] = {
        {"bytes", ECR_U8, 1, {5}, u8},
        {"model.w", ECR_F32, 2, {2, 3}, f32},
        {"half", ECR_F16, 3, {2, 1, 2}, f16},
        {"brain", ECR_BF16, 1, {3}, bf16},
        {"i64", ECR_I64, 1, {3}, i64},
        {"i32", ECR_I32, 2, {2, 2}, i32},
        {"u16", ECR_U16, 1, {3}, u16},
        {"u32", ECR_U32, 1, {2}, u32},
        {"scalar", ECR_F32, 0, {0}, f32},
        {"empty", ECR_I64, 2, {0, 4}, NULL},
    };
    size_t nt = sizeof t / sizeof t[0];
    ecr_st_writer *w;
    CHECK_OK(ecr_st_writer_create(&w));
    for (size_t i = 0; i < nt; i++) CHECK_OK(ecr_st_writer_add(w, t[i].name, t[i].dt, t[i].nd, t[i].shape, t[i].data));
    CHECK_OK(ecr_st_writer_meta(w, "format", "test"));
    CHECK_OK(ecr_st_writer_meta(w, "a \"quoted\"\nkey", "ünïcode ✓"));
    CHECK_OK(ecr_st_writer_meta(w, "format", "test-2"));      /* replaces */
    CHECK_OK(ecr_st_writer_write(w, path));
    ecr_st_writer_free(w);
    CHECK(access(tl_tmp_path("all.safetensors.tmp"), F_OK) != 0);

    size_t len;
    uint8_t *img = slurp(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | img[i];
    CHECK((8 + hlen) % 8 == 0);                                /* data region 8-aligned */
    free(img);

    ecr_st_file *f;
    CHECK_OK(ecr_st_open(path, &f));
    if (!f) return;
    CHECK(ecr_st_count(f) == nt);
    for (size_t i = 0; i < nt && i < ecr_st_count(f); i++) {
        const ecr_tensor_view *v = ecr_st_at(f, i);             /* header order = add order */
        CHECK(!strcmp(v->name, t[i].name));
        CHECK(v->dtype == t[i].dt && v->ndim == t[i].nd);
        size_t numel = 1;
        for (int d = 0; d < t[i].nd; d++) { CHECK(v->shape[d] == t[i].shape[d]); numel *= (size_t)t[i].shape[d]; }
        CHECK(v->numel == numel && v->nbytes == numel * ecr_dtype_size(t[i].dt));
        CHECK((uintptr_t)v->data % ecr_dtype_size(t[i].dt) == 0);
        CHECK(v->nbytes == 0 || !memcmp(v->data, t[i].data, v->nbytes));
        CHECK(ecr_st_find(f, t[i].name) == v);
    }
    CHECK(ecr_st_find(f, "nope") == NULL);
    CHECK(ecr_st_meta_count(f) == 2);
    const char *k, *val;
    ecr_st_meta_at(f, 0, &k, &val);                            /* sorted: 'a...' < 'format' */
    CHECK(!strcmp(k, "a \"quoted\"\nkey") && !strcmp(val, "ünïcode ✓"));
    ecr_st_meta_at(f, 1, &k, &val);
    CHECK(!strcmp(k, "format") && !strcmp(val, "test-2"));
    CHECK(ecr_st_meta(f, "format") && !strcmp(ecr_st_meta(f, "format"), "test-2"));
    CHECK(ecr_st_meta(f, "missing") == NULL);
    const ecr_tensor_view *v;
    CHECK_OK(ecr_st_get(f, "model.w", ECR_F32, 2, (int64_t[]){2, -1}, &v));
    CHECK(v && ((const float *)v->data)[4] == 1e30f);
    CHECK_STATUS(ecr_st_get(f, "model.w", ECR_F16, 2, (int64_t[]){2, 3}, &v), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "all.safetensors: tensor 'model.w': dtype F32 (expected F16)") != NULL);
    CHECK_STATUS(ecr_st_get(f, "model.w", ECR_F32, 2, (int64_t[]){3, -1}, &v), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "shape [2, 3] (expected [3, *])") != NULL);
    CHECK_STATUS(ecr_st_get(f, "model.w", ECR_F32, 1, (int64_t[]){6}, &v), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_get(f, "absent", ECR_F32, 1, (int64_t[]){6}, &v), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "tensor 'absent' not found") != NULL && v == NULL);
    ecr_st_close(f);
    ecr_st_close(NULL);
    ecr_st_writer_free(NULL);
    remove(path);
}

/* The writer's exact bytes for a small file: metadata first, tensors in add order,
 * largest element size first in the data region, header space-padded to 8. */
static void test_writer_exact_bytes(void) {
    const char *path = tl_tmp_path("exact.safetensors");
    uint8_t b[3] = {7, 8, 9};
    float x[2] = {1.0f, 2.0f};
    ecr_st_writer *w;
    CHECK_OK(ecr_st_writer_create(&w));
    CHECK_OK(ecr_st_writer_add(w, "b", ECR_U8, 1, (int64_t[]){3}, b));
    CHECK_OK(ecr_st_writer_add(w, "x", ECR_F32, 1, (int64_t[]){2}, x));
    CHECK_OK(ecr_st_writer_meta(w, "k", "v"));
    CHECK_OK(ecr_st_writer_write(w, path));
    ecr_st_writer_free(w);
    const char *want = "{\"__metadata__\":{\"k\":\"v\"},\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]},"
                       "\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t wl = strlen(want), pad = (8 - (8 + wl) % 8) % 8, len;
    uint8_t *img = slurp(path, &len);
    CHECK(len == 8 + wl + pad + 11);
    if (len != 8 + wl + pad + 11) { free(img); return; }
    CHECK(img[0] == wl + pad && img[1] == 0 && img[7] == 0);
    CHECK(!memcmp(img + 8, want, wl));
    for (size_t i = 0; i < pad; i++) CHECK(img[8 + wl + i] == ' ');
    CHECK(!memcmp(img + 8 + wl + pad, x, 8) && !memcmp(img + 16 + wl + pad, b, 3));
    free(img);
    remove(path);
}

/* A file as other writers make it: compact header, no padding, a 1-byte tensor before
 * an F32 one (so the F32 data is unaligned in the image); also a misaligned buffer. */
static void test_foreign_unaligned(void) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},\"flag\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]},"
                    "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[9,17]}}";
    size_t len;
    uint8_t *img = make_image(h, 17, &len);
    for (int shift = 0; shift < 8; shift++) {
        uint8_t *buf = malloc(len + 8);
        memcpy(buf + shift, img, len);
        ecr_st_file *f;
        CHECK_OK(ecr_st_open_memory(buf + shift, len, "foreign.safetensors", &f));
        if (f) {
            const ecr_tensor_view *v;
            CHECK_OK(ecr_st_get(f, "w", ECR_F32, 1, (int64_t[]){2}, &v));
            CHECK((uintptr_t)v->data % 4 == 0);
            uint8_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
            CHECK(!memcmp(v->data, want, 8));
            CHECK_OK(ecr_st_get(f, "i", ECR_I64, 1, (int64_t[]){1}, &v));
            CHECK((uintptr_t)v->data % 8 == 0);
            CHECK(*(const int64_t *)v->data == 0x100F0E0D0C0B0A09LL);
            CHECK(!strcmp(ecr_st_meta(f, "format"), "pt"));
            ecr_st_close(f);
        }
        free(buf);
    }
    free(img);
}

/* Headers other writers may produce that are nonetheless valid. */
static void test_valid_edge_cases(void) {
    static const struct { const char *header; size_t data; } ok[] = {
        {"{}", 0},                                                     /* no tensors */
        {"{}      ", 0},                                               /* trailing spaces */
        {"{\"__metadata__\":{}}", 0},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4},        /* scalar */
        {"{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2},         /* empty + tensor */
        {"{ \"b\" : { \"data_offsets\" : [4, 6], \"shape\" : [1], \"dtype\" : \"BF16\" },\n"
         "  \"a\" : { \"dtype\" : \"U32\", \"shape\" : [1], \"data_offsets\" : [0, 4] } }\n", 6},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        size_t len;
        uint8_t *img = make_image(ok[i].header, ok[i].data, &len);
        ecr_st_file *f;
        CHECK_OK(ecr_st_open_memory(img, len, "edge.safetensors", &f));
        ecr_st_close(f);
        free(img);
    }
}

/* ---- refusals ----------------------------------------------------------------------- */

typedef struct { const char *header; size_t data; const char *msg; } bad_case;

static const bad_case bad_cases[] = {
    {"not json", 0, "header does not start with '{'"},
    {"{\"a\":", 0, "not valid JSON"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}}", 4, "data after the JSON object"},
    {"{} x", 0, "data after the JSON object"},
    {"[1,2]", 0, "does not start with '{'"},
    {"{\"w\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "tensor 'w': unknown dtype 'F64'"},
    {"{\"w\":{\"dtype\":3,\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "tensor 'w': dtype is not a string"},
    {"{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': dtype is missing"},
    {"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': shape is missing"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12,
     "tensor 'w': data_offsets [0, 12] do not match shape [2, 2] F32 (16 bytes)"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': shape[0] = -1 is not a non-negative integer"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "number '1.5' is not an integer"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "number '1.0' is not an integer"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, "not an integer"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape[0] is not a number"},
    {"{\"w\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, "shape is not an array"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "9 dimensions"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,1]}}", 1, "too many elements"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,1]}}", 1, "shape[0] = 1e+20 is not a non-negative integer"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, "data_offsets is not an array of 2"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,0]}}", 1, "do not match"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, "data_offsets is missing"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 2, "extend past the data region (2 bytes)"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[100,104]}}", 4, "extend past the data region"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"v\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 3,
     "tensor 'v': data_offsets [1, 3] overlap tensor 'w' [0, 2]"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"v\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
     "overlap"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},\"v\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[3,5]}}", 5,
     "tensor 'v': gap of 1 bytes"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", 4, "tensor 'w': gap of 2 bytes"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", 5, "bytes 2..5 (of 5) belong to no tensor"},
    {"{}", 3, "belong to no tensor"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2,
     "duplicate tensor name 'w'"},
    {"{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "tensor 'w': duplicate field"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":1}}", 1, "unknown field 'extra'"},
    {"{\"w\":[1]}", 0, "tensor 'w': entry is not an object"},
    {"{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "empty tensor name"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__: value of 'k' is not a string"},
    {"{\"__metadata__\":{\"k\":null}}", 0, "value of 'k' is not a string"},
    {"{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, "value of 'k' is not a string"},
    {"{\"__metadata__\":[\"a\"]}", 0, "__metadata__: not an object"},
    {"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "__metadata__: duplicate key 'k'"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__"},
    {"{\"w\xff\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "header byte 11: invalid UTF-8"},
    {"{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}\0", 1, NULL},  /* see below */
};

static void check_refused(const uint8_t *img, size_t len, const char *want) {
    ecr_st_file *f = (ecr_st_file *)1;
    CHECK_STATUS(ecr_st_open_memory(img, len, "bad.safetensors", &f), ECR_E_INVALID);
    CHECK(f == NULL);
    const char *m = ecr_last_error();
    CHECK_MSG(!strncmp(m, "bad.safetensors: ", 17), "message '%s' does not start with the file name", m);
    if (want) CHECK_MSG(strstr(m, want) != NULL, "message '%s' lacks '%s'", m, want);
    CHECK(!strchr(m, '\n'));
}

static void test_bad_headers(void) {
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        if (!bad_cases[i].msg) continue;
        size_t len;
        uint8_t *img = make_image(bad_cases[i].header, bad_cases[i].data, &len);
        check_refused(img, len, bad_cases[i].msg);
        free(img);
    }
    /* A NUL byte inside the header (after the JSON): not whitespace. */
    const char *h = bad_cases[sizeof bad_cases / sizeof bad_cases[0] - 1].header;
    size_t hl = strlen(h) + 1, len = 8 + hl + 1;
    uint8_t *img = calloc(len, 1);
    img[0] = (uint8_t)hl;
    memcpy(img + 8, h, hl);
    check_refused(img, len, "data after the JSON object");
    free(img);
}

/* Length field, truncation and empty files. */
static void test_bad_framing(void) {
    size_t len;
    const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    uint8_t *img = make_image(h, 8, &len);
    check_refused(img, 0, "file is 0 bytes, too short for the 8-byte header length");
    check_refused(img, 7, "file is 7 bytes");
    check_refused(img, 8, "header length");
    for (size_t cut = 9; cut < len; cut++) check_refused(img, cut, NULL);  /* every truncation */
    uint8_t save[8];
    memcpy(save, img, 8);
    memset(img, 0xFF, 8);
    check_refused(img, len, "header length 18446744073709551615 exceeds the 100 MB limit");
    memset(img, 0, 8);
    img[0] = 0x01; img[1] = 0xE1; img[2] = 0xF5; img[3] = 0x05;            /* 100000001 */
    check_refused(img, len, "exceeds the 100 MB limit");
    memset(img, 0, 8);
    img[0] = (uint8_t)(len - 7);
    check_refused(img, len, "exceeds the file");
    memset(img, 0, 8);
    check_refused(img, len, "does not start with '{'");
    memcpy(img, save, 8);
    img[0]--;                                                               /* one byte short */
    check_refused(img, len, "not valid JSON");
    free(img);

    /* Through the file API: empty, truncated, missing, a directory. */
    const char *p = tl_tmp_path("empty.safetensors");
    FILE *fp = fopen(p, "wb");
    fclose(fp);
    ecr_st_file *f;
    CHECK_STATUS(ecr_st_open(p, &f), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "empty.safetensors: file is 0 bytes") != NULL);
    remove(p);
    img = make_image(h, 8, &len);
    p = tl_tmp_path("trunc.safetensors");
    fp = fopen(p, "wb");
    fwrite(img, 1, len - 3, fp);
    fclose(fp);
    CHECK_STATUS(ecr_st_open(p, &f), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "trunc.safetensors: tensor 'w': data_offsets [0, 8] extend past the data region (5 bytes)") != NULL);
    remove(p);
    free(img);
    CHECK_STATUS(ecr_st_open(tl_tmp_path("missing.safetensors"), &f), ECR_E_IO);
    CHECK(strstr(ecr_last_error(), "missing.safetensors: cannot open") != NULL);
    CHECK_STATUS(ecr_st_open(tl_scratch(NULL), &f), ECR_E_IO);
}

static void test_writer_refusals(void) {
    ecr_st_writer *w;
    CHECK_OK(ecr_st_writer_create(&w));
    float x[4] = {0};
    CHECK_OK(ecr_st_writer_add(w, "x", ECR_F32, 1, (int64_t[]){4}, x));
    CHECK_STATUS(ecr_st_writer_add(w, "x", ECR_F32, 1, (int64_t[]){4}, x), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "duplicate tensor 'x'") != NULL);
    CHECK_STATUS(ecr_st_writer_add(w, "", ECR_F32, 1, (int64_t[]){4}, x), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_writer_add(w, "__metadata__", ECR_F32, 1, (int64_t[]){4}, x), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_writer_add(w, "bad\xc3", ECR_F32, 1, (int64_t[]){4}, x), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_writer_add(w, "y", ECR_F32, 1, (int64_t[]){-4}, x), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_writer_add(w, "y", ECR_F32, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_writer_add(w, "y", ECR_DTYPE_COUNT, 1, (int64_t[]){4}, x), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_writer_add(w, "y", ECR_F32, 1, (int64_t[]){4}, NULL), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_writer_meta(w, "k", NULL), ECR_E_INVALID);
    CHECK_STATUS(ecr_st_writer_meta(w, "", "v"), ECR_E_INVALID);
    /* A failed write (no such directory) leaves nothing behind and reports the path. */
    char p[600];
    snprintf(p, sizeof p, "%s/no/such/dir/x.safetensors", tl_scratch(NULL));
    CHECK_STATUS(ecr_st_writer_write(w, p), ECR_E_IO);
    CHECK(strstr(ecr_last_error(), "x.safetensors") != NULL);
    ecr_st_writer_free(w);
}

int main(void) {
    tl_scratch("st");
    RUN(test_half_known_values);
    RUN(test_half_exhaustive_roundtrip);
    RUN(test_half_rounding_sweep);
    RUN(test_roundtrip_all_dtypes);
    RUN(test_writer_exact_bytes);
    RUN(test_foreign_unaligned);
    RUN(test_valid_edge_cases);
    RUN(test_bad_headers);
    RUN(test_bad_framing);
    RUN(test_writer_refusals);
    rmdir(tl_scratch(NULL));
    return test_finish("test_safetensors");
}
