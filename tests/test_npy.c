/* test_npy.c — .npy reader/writer: round trip, files exactly as NumPy writes them
 * (versions 1.0 and 2.0, 1-D and 2-D), ecr_npy_info, and refusals with messages that say
 * what the file holds. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "testlib.h"

#include <string.h>
#include <unistd.h>



static void write_bytes(const char *path, const void *b, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (n) fwrite(b, 1, n, fp);
    fclose(fp);
}

/* A .npy image: magic, version, header dict padded like NumPy (total % 64 == 0, or no
 * padding when pad == 0), then `n_data` bytes of float data 0, 1, 2, ... (as floats
 * while they fit, then raw bytes). Returns the length. */
static size_t make_npy(uint8_t *out, int major, const char *dict, int pad, size_t n_data) {
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t hl = dl + 1;
    if (pad) hl += (64 - (pre + hl) % 64) % 64;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (uint8_t)major;
    out[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) out[8 + i] = (uint8_t)(hl >> (8 * i));
    memcpy(out + pre, dict, dl);
    memset(out + pre + dl, ' ', hl - dl - 1);
    out[pre + hl - 1] = '\n';
    for (size_t i = 0; i < n_data; i += 4) {
        float v = (float)(i / 4);
        memcpy(out + pre + hl + i, &v, n_data - i < 4 ? n_data - i : 4);
    }
    return pre + hl + n_data;
}

static void test_roundtrip(void) {
    const char *p = tl_tmp_path("m.npy");
    float m[6] = {1.5f, -2.0f, 0.0f, 1e-40f, 3.25f, -0.0f};
    CHECK_OK(ecr_npy_write(p, m, 2, 3));
    CHECK(access(tl_tmp_path("m.npy.tmp"), F_OK) != 0);
    float *d = NULL;
    int64_t r = 0, c = 0;
    CHECK_OK(ecr_npy_read(p, &d, &r, &c));
    CHECK(r == 2 && c == 3);
    CHECK(d && !memcmp(d, m, sizeof m));
    free(d);
    /* The bytes follow NumPy's layout: version 1.0, dict, spaces, '\n', 64-byte aligned. */
    uint8_t img[256];
    FILE *fp = fopen(p, "rb");
    size_t n = fread(img, 1, sizeof img, fp);
    fclose(fp);
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    size_t hl = (size_t)img[8] | (size_t)img[9] << 8;
    CHECK(!memcmp(img, "\x93NUMPY\x01\x00", 8));
    CHECK((10 + hl) % 64 == 0 && n == 10 + hl + sizeof m);
    CHECK(!memcmp(img + 10, dict, strlen(dict)));
    CHECK(img[10 + hl - 1] == '\n' && img[10 + hl - 2] == ' ');
    char descr[16];
    int fortran = -1, nd = 0;
    int64_t shape[ECR_MAX_DIMS];
    CHECK_OK(ecr_npy_info(p, descr, sizeof descr, &fortran, &nd, shape));
    CHECK(!strcmp(descr, "<f4") && fortran == 0 && nd == 2 && shape[0] == 2 && shape[1] == 3);
    /* Empty matrix. */
    CHECK_OK(ecr_npy_write(p, NULL, 0, 5));
    CHECK_OK(ecr_npy_read(p, &d, &r, &c));
    CHECK(r == 0 && c == 5 && d != NULL);
    free(d);
    CHECK_STATUS(ecr_npy_write(p, NULL, 2, 2), ECR_E_INVALID);
    CHECK_STATUS(ecr_npy_write(p, m, -1, 2), ECR_E_INVALID);
    remove(p);
}

/* Byte-for-byte what NumPy 1.24 np.save writes (header padded to 128 bytes). */
static void test_numpy_bytes(void) {
    static const char numpy_2x3[] =
        "\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        "                                                          \n";
    uint8_t img[256];
    size_t hl = sizeof numpy_2x3 - 1;
    CHECK(hl == 128);
    memcpy(img, numpy_2x3, hl);
    for (int i = 0; i < 6; i++) { float v = (float)i; memcpy(img + hl + 4 * i, &v, 4); }
    const char *p = tl_tmp_path("np.npy");
    write_bytes(p, img, hl + 24);
    float *d;
    int64_t r, c;
    CHECK_OK(ecr_npy_read(p, &d, &r, &c));
    CHECK(r == 2 && c == 3 && d && d[0] == 0.0f && d[5] == 5.0f);
    free(d);
    /* 1-D (3,) in version 1.0 and 2.0; reads as rows = 3, cols = 1. */
    for (int major = 1; major <= 2; major++) {
        size_t n = make_npy(img, major, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 1, 12);
        write_bytes(p, img, n);
        CHECK_OK(ecr_npy_read(p, &d, &r, &c));
        CHECK(r == 3 && c == 1 && d && d[2] == 2.0f);
        free(d);
        int nd;
        int64_t shape[ECR_MAX_DIMS];
        CHECK_OK(ecr_npy_info(p, NULL, 0, NULL, &nd, shape));
        CHECK(nd == 1 && shape[0] == 3);
    }
    /* Other key order, double quotes, no trailing comma, no padding. */
    size_t n = make_npy(img, 1, "{\"shape\": (1, 2), \"descr\": \"<f4\", \"fortran_order\": False}", 0, 8);
    write_bytes(p, img, n);
    CHECK_OK(ecr_npy_read(p, &d, &r, &c));
    CHECK(r == 1 && c == 2);
    free(d);
    remove(p);
}

typedef struct { int major; const char *dict; size_t data; const char *msg; } bad_npy;

static void test_refusals(void) {
    static const bad_npy cases[] = {
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, "bad.npy: dtype '<f8' (expected '<f4')"},
        {1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, "dtype '>f4' (expected '<f4')"},
        {1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", 16, "dtype '<i8'"},
        {1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16, "bad.npy: fortran_order True"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", 32, "shape (2, 2, 2) is 3-D (expected 1-D or 2-D)"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", 4, "shape () is 0-D"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20,
         "data is 20 bytes, expected 24 for shape (2, 3) '<f4' (truncated)"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 28, "(trailing bytes)"},
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 8, "expected 16 for shape (2,) '<f8'"},
        {1, "{'descr': '<f4', 'shape': (2,), }", 8, "missing 'fortran_order'"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, "unknown key 'x'"},
        {1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8, "duplicate key"},
        {1, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }", 8, "expected True or False"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, "shape: expected a non-negative integer"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 8, "shape: expected '('"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2 2), }", 8, "expected ',' or ')'"},
        {1, "['descr', '<f4']", 0, "header byte 10: expected '{'"},
        {1, "{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }", 8, "header byte"},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8, "dimension too large"},
    };
    uint8_t img[512];
    const char *p = tl_tmp_path("bad.npy");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = make_npy(img, cases[i].major, cases[i].dict, 1, cases[i].data);
        write_bytes(p, img, n);
        float *d = (float *)1;
        int64_t r, c;
        CHECK_STATUS(ecr_npy_read(p, &d, &r, &c), ECR_E_INVALID);
        CHECK(d == NULL);
        const char *m = ecr_last_error();
        CHECK_MSG(strstr(m, "bad.npy: ") && strstr(m, cases[i].msg), "case %zu: message '%s' lacks '%s'", i, m,
                  cases[i].msg);
    }
    /* ecr_npy_info reports a well-formed file that ecr_npy_read refuses. */
    size_t n = make_npy(img, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2, 1), }", 1, 32);
    write_bytes(p, img, n);
    char descr[8];
    int fortran, nd;
    int64_t shape[ECR_MAX_DIMS];
    CHECK_OK(ecr_npy_info(p, descr, sizeof descr, &fortran, &nd, shape));
    CHECK(!strcmp(descr, "<f8") && fortran == 1 && nd == 3 && shape[2] == 1);
    /* Framing: empty, bad magic, bad version, header length beyond the file, truncation. */
    float *d;
    int64_t r, c;
    write_bytes(p, "", 0);
    CHECK_STATUS(ecr_npy_read(p, &d, &r, &c), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "not a .npy file") != NULL);
    static const char zip[] = "PK\x03\x04 zip file, not npy";
    write_bytes(p, zip, sizeof zip - 1);
    CHECK_STATUS(ecr_npy_read(p, &d, &r, &c), ECR_E_INVALID);
    n = make_npy(img, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1, 8);
    img[6] = 3;
    write_bytes(p, img, n);
    CHECK_STATUS(ecr_npy_read(p, &d, &r, &c), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "format version 3.0 (expected 1.0 or 2.0)") != NULL);
    img[6] = 1;
    img[9] = 0x7F;                                   /* header length ~32K > file */
    write_bytes(p, img, n);
    CHECK_STATUS(ecr_npy_read(p, &d, &r, &c), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "exceeds the file") != NULL);
    img[9] = 0;
    for (size_t cut = 0; cut < n; cut++) {           /* every truncation is refused */
        write_bytes(p, img, cut);
        ecr_status st = ecr_npy_read(p, &d, &r, &c);
        CHECK_MSG(st == ECR_E_INVALID, "truncated at %zu: %s", cut, ecr_status_name(st));
    }
    CHECK_STATUS(ecr_npy_read(tl_tmp_path("missing.npy"), &d, &r, &c), ECR_E_IO);
    CHECK(strstr(ecr_last_error(), "missing.npy: cannot open") != NULL);
    CHECK_STATUS(ecr_npy_read(tl_scratch(NULL), &d, &r, &c), ECR_E_IO);
    remove(p);
}

int main(void) {
    tl_scratch("npy");
    RUN(test_roundtrip);
    RUN(test_numpy_bytes);
    RUN(test_refusals);
    rmdir(tl_scratch(NULL));
    return test_finish("test_npy");
}
