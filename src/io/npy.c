/* npy.c — NumPy .npy files: float32 ('<f4'), C order, 1-D or 2-D.
 *
 * Format (numpy.lib.format): "\x93NUMPY", major, minor, header length (u16 LE for 1.0,
 * u32 LE for 2.0), then an ASCII Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and ended by '\n', then the raw data. The header is parsed with a
 * small strict parser (exactly those three keys); anything the rest of ecr cannot use is
 * refused with a message saying what the file holds. */
#define _POSIX_C_SOURCE 200809L
#include "ecr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host"
#endif

#define NPY_MAX_HEADER (1u << 20)          /* numpy itself refuses far smaller ones */
#define NPY_MAX_DIM 9007199254740992LL     /* 2^53 */

typedef struct npy_header {
    int major, minor;
    char descr[32];
    int fortran;
    int ndim;
    int64_t shape[ECR_MAX_DIMS];
    long long data_start;                 /* byte offset of the data in the file */
    long long file_size;
} npy_header;

/* ---- dict literal parser ------------------------------------------------------------ */

typedef struct npy_lex {
    const char *path;
    const char *s;                        /* header text (not NUL-terminated) */
    size_t n, i;
    size_t base;                          /* file offset of s[0], for messages */
} npy_lex;

static void lex_ws(npy_lex *L) {
    while (L->i < L->n && (L->s[L->i] == ' ' || L->s[L->i] == '\t')) L->i++;
}

static ecr_status lex_fail(const npy_lex *L, const char *what) {
    return ecr_fail(ECR_E_INVALID, "%s: header byte %zu: %s", L->path, L->base + L->i, what);
}

/* Consumes `c` after optional spaces; 0 if the next character is something else. */
static int lex_char(npy_lex *L, char c) {
    lex_ws(L);
    if (L->i < L->n && L->s[L->i] == c) { L->i++; return 1; }
    return 0;
}

/* A '...' or "..." string (no escapes) into out (cap bytes, truncated silently). */
static ecr_status lex_string(npy_lex *L, char *out, size_t cap) {
    lex_ws(L);
    if (L->i >= L->n || (L->s[L->i] != '\'' && L->s[L->i] != '"')) return lex_fail(L, "expected a quoted string");
    char q = L->s[L->i++];
    size_t o = 0;
    while (L->i < L->n && L->s[L->i] != q) {
        if (L->s[L->i] == '\\' || L->s[L->i] == '\n') return lex_fail(L, "unsupported character in string");
        if (o + 1 < cap) out[o++] = L->s[L->i];
        L->i++;
    }
    if (L->i >= L->n) return lex_fail(L, "unterminated string");
    L->i++;
    out[o] = '\0';
    return ECR_OK;
}

static ecr_status lex_bool(npy_lex *L, int *out) {
    lex_ws(L);
    if (L->n - L->i >= 4 && !memcmp(L->s + L->i, "True", 4)) { *out = 1; L->i += 4; return ECR_OK; }
    if (L->n - L->i >= 5 && !memcmp(L->s + L->i, "False", 5)) { *out = 0; L->i += 5; return ECR_OK; }
    return lex_fail(L, "fortran_order: expected True or False");
}

/* A non-negative integer (an 'L' suffix, as old Python 2 writers add, is accepted). */
static ecr_status lex_dim(npy_lex *L, int64_t *out) {
    lex_ws(L);
    size_t i0 = L->i;
    int64_t x = 0;
    while (L->i < L->n && L->s[L->i] >= '0' && L->s[L->i] <= '9') {
        x = x * 10 + (L->s[L->i++] - '0');
        if (x > NPY_MAX_DIM) return lex_fail(L, "shape: dimension too large");
    }
    if (L->i == i0) return lex_fail(L, "shape: expected a non-negative integer");
    if (L->i < L->n && L->s[L->i] == 'L') L->i++;
    *out = x;
    return ECR_OK;
}

/* A tuple "()", "(3,)", "(3, 4)" with at most ECR_MAX_DIMS entries. */
static ecr_status lex_shape(npy_lex *L, int *ndim, int64_t *shape) {
    if (!lex_char(L, '(')) return lex_fail(L, "shape: expected '('");
    *ndim = 0;
    while (!lex_char(L, ')')) {
        if (*ndim == ECR_MAX_DIMS) return lex_fail(L, "shape: too many dimensions");
        ecr_status st = lex_dim(L, &shape[(*ndim)++]);
        if (st != ECR_OK) return st;
        if (lex_char(L, ',')) continue;
        if (lex_char(L, ')')) break;
        return lex_fail(L, "shape: expected ',' or ')'");
    }
    return ECR_OK;
}

/* Parses one "'key': value" pair into h; `seen` is a bit set of keys already read. */
static ecr_status lex_pair(npy_lex *L, npy_header *h, int *seen) {
    char key[32];
    ecr_status st = lex_string(L, key, sizeof key);
    if (st != ECR_OK) return st;
    if (!lex_char(L, ':')) return lex_fail(L, "expected ':'");
    int bit = !strcmp(key, "descr") ? 1 : !strcmp(key, "fortran_order") ? 2 : !strcmp(key, "shape") ? 4 : 0;
    if (!bit) {
        char msg[96];
        snprintf(msg, sizeof msg, "unknown key '%s'", key);
        return lex_fail(L, msg);
    }
    if (*seen & bit) return lex_fail(L, "duplicate key");
    *seen |= bit;
    if (bit == 1) return lex_string(L, h->descr, sizeof h->descr);
    if (bit == 2) return lex_bool(L, &h->fortran);
    return lex_shape(L, &h->ndim, h->shape);
}

/* Parses the dict literal `s` (n bytes, ending in '\n') into h. */
static ecr_status npy_parse_dict(const char *path, const char *s, size_t n, size_t base, npy_header *h) {
    npy_lex L = {path, s, n, 0, base};
    if (!lex_char(&L, '{')) return lex_fail(&L, "expected '{'");
    int seen = 0;
    while (!lex_char(&L, '}')) {
        ecr_status st = lex_pair(&L, h, &seen);
        if (st != ECR_OK) return st;
        if (lex_char(&L, ',')) continue;
        if (lex_char(&L, '}')) break;
        return lex_fail(&L, "expected ',' or '}'");
    }
    if (seen != 7) {
        L.i = 0;
        return lex_fail(&L, !(seen & 1) ? "missing 'descr'" : !(seen & 2) ? "missing 'fortran_order'"
                                                                          : "missing 'shape'");
    }
    lex_ws(&L);
    if (L.i + 1 != n || s[n - 1] != '\n') return lex_fail(&L, "expected the header to end with '\\n'");
    return ECR_OK;
}

/* ---- header ------------------------------------------------------------------------- */

/* Reads the preamble and dict of an open file into h. */
static ecr_status npy_read_header(FILE *fp, const char *path, npy_header *h) {
    memset(h, 0, sizeof *h);
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) return ecr_fail(ECR_E_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return ecr_fail(ECR_E_IO, "%s: cannot read: is a directory", path);
    h->file_size = (long long)sb.st_size;
    unsigned char pre[12];
    size_t got = fread(pre, 1, 10, fp);
    if (got < 8 || memcmp(pre, "\x93NUMPY", 6) != 0)
        return ecr_fail(ECR_E_INVALID, "%s: not a .npy file (no \\x93NUMPY magic)", path);
    h->major = pre[6];
    h->minor = pre[7];
    if ((h->major != 1 && h->major != 2) || h->minor != 0)
        return ecr_fail(ECR_E_INVALID, "%s: format version %d.%d (expected 1.0 or 2.0)", path, h->major, h->minor);
    size_t pre_len = h->major == 1 ? 10 : 12;
    if (got < 10 || (pre_len == 12 && fread(pre + 10, 1, 2, fp) != 2))
        return ecr_fail(ECR_E_INVALID, "%s: truncated header", path);
    unsigned long hlen = h->major == 1 ? (unsigned long)pre[8] | (unsigned long)pre[9] << 8
        : (unsigned long)pre[8] | (unsigned long)pre[9] << 8 | (unsigned long)pre[10] << 16 | (unsigned long)pre[11] << 24;
    if (hlen > NPY_MAX_HEADER || (long long)(pre_len + hlen) > h->file_size)
        return ecr_fail(ECR_E_INVALID, "%s: header length %lu exceeds the file (%lld bytes)", path, hlen, h->file_size);
    char *text = malloc(hlen ? hlen : 1);
    if (!text) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    ecr_status st = fread(text, 1, hlen, fp) == hlen ? npy_parse_dict(path, text, hlen, pre_len, h)
                                                     : ecr_fail(ECR_E_IO, "%s: read failed", path);
    free(text);
    h->data_start = (long long)(pre_len + hlen);
    return st;
}

/* Item size implied by a descr like "<f4", "|u1", ">i8"; 0 if not of that form. */
static long long descr_itemsize(const char *d) {
    if (!d[0] || !strchr("<>|=", d[0]) || !d[1] || !strchr("fiubc", d[1])) return 0;
    char *end;
    long v = strtol(d + 2, &end, 10);
    return (*end || v <= 0 || v > 64) ? 0 : v;
}

static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, ndim == 1 ? ",)" : ")");
}

/* The data length must equal numel * itemsize (when the itemsize is known). */
static ecr_status npy_check_size(const char *path, const npy_header *h) {
    long long item = descr_itemsize(h->descr);
    if (!item) return ECR_OK;
    long long want = item;
    for (int i = 0; i < h->ndim; i++) {
        if (h->shape[i] && want > (long long)(INT64_MAX / 2) / h->shape[i])
            return ecr_fail(ECR_E_INVALID, "%s: shape too large", path);
        want *= h->shape[i];
    }
    long long have = h->file_size - h->data_start;
    if (have == want) return ECR_OK;
    char s[200];
    shape_text(s, sizeof s, h->ndim, h->shape);
    return ecr_fail(ECR_E_INVALID, "%s: data is %lld bytes, expected %lld for shape %s '%s'%s", path, have,
                    want, s, h->descr, have < want ? " (truncated)" : " (trailing bytes)");
}

static ecr_status npy_open_header(const char *path, FILE **fp, npy_header *h) {
    *fp = fopen(path, "rb");
    if (!*fp) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    ecr_status st = npy_read_header(*fp, path, h);
    if (st == ECR_OK) st = npy_check_size(path, h);
    if (st != ECR_OK) {
        fclose(*fp);
        *fp = NULL;
    }
    return st;
}

ecr_status ecr_npy_info(const char *path, char *descr, size_t descr_len, int *fortran, int *ndim,
                        int64_t shape[ECR_MAX_DIMS]) {
    FILE *fp;
    npy_header h;
    ecr_status st = npy_open_header(path, &fp, &h);
    if (st != ECR_OK) return st;
    fclose(fp);
    if (descr && descr_len) snprintf(descr, descr_len, "%s", h.descr);
    if (fortran) *fortran = h.fortran;
    if (ndim) *ndim = h.ndim;
    if (shape) memcpy(shape, h.shape, sizeof h.shape);
    return ECR_OK;
}

/* Refuses headers other than <f4, C order, 1-D or 2-D. */
static ecr_status npy_check_f4(const char *path, const npy_header *h) {
    if (strcmp(h->descr, "<f4") != 0)
        return ecr_fail(ECR_E_INVALID, "%s: dtype '%s' (expected '<f4')", path, h->descr);
    if (h->fortran)
        return ecr_fail(ECR_E_INVALID, "%s: fortran_order True (expected C order, fortran_order False)", path);
    if (h->ndim < 1 || h->ndim > 2) {
        char s[200];
        shape_text(s, sizeof s, h->ndim, h->shape);
        return ecr_fail(ECR_E_INVALID, "%s: shape %s is %d-D (expected 1-D or 2-D)", path, s, h->ndim);
    }
    return ECR_OK;
}

ecr_status ecr_npy_read(const char *path, float **data, int64_t *rows, int64_t *cols) {
    *data = NULL;
    FILE *fp;
    npy_header h;
    ecr_status st = npy_open_header(path, &fp, &h);
    if (st != ECR_OK) return st;
    st = npy_check_f4(path, &h);
    int64_t r = h.ndim >= 1 ? h.shape[0] : 0, c = h.ndim == 2 ? h.shape[1] : 1;
    size_t n = (size_t)r * (size_t)c;            /* bounded by the file size checked above */
    float *buf = st == ECR_OK ? malloc(n ? n * sizeof *buf : 1) : NULL;
    if (st == ECR_OK && !buf) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory (%zu floats)", path, n);
    if (st == ECR_OK && fread(buf, sizeof *buf, n, fp) != n) st = ecr_fail(ECR_E_IO, "%s: read failed", path);
    fclose(fp);
    if (st != ECR_OK) {
        free(buf);
        return st;
    }
    *data = buf;
    *rows = r;
    *cols = c;
    return ECR_OK;
}

/* ---- writer ------------------------------------------------------------------------- */

ecr_status ecr_npy_write(const char *path, const float *data, int64_t rows, int64_t cols) {
    if (rows < 0 || cols < 0 || rows > NPY_MAX_DIM || cols > NPY_MAX_DIM ||
        (cols && (uint64_t)rows > (uint64_t)(SIZE_MAX / 4) / (uint64_t)cols))
        return ecr_fail(ECR_E_INVALID, "%s: bad matrix shape (%lld, %lld)", path, (long long)rows, (long long)cols);
    size_t n = (size_t)rows * (size_t)cols;
    if (n && !data) return ecr_fail(ECR_E_INVALID, "%s: NULL data", path);
    char dict[160];
    int len = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       (long long)rows, (long long)cols);
    /* Pad with spaces so magic + version + length + dict + '\n' is a multiple of 64. */
    size_t total = 10 + (size_t)len + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)len + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xFF),
                             (unsigned char)(hlen >> 8)};
    ecr_atomic_file af;
    ecr_status st = ecr_atomic_open(&af, path);
    if (st != ECR_OK) return st;
    int ok = fwrite(pre, 1, 10, af.fp) == 10 && fwrite(dict, 1, (size_t)len, af.fp) == (size_t)len;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', af.fp) != EOF;
    ok = ok && fputc('\n', af.fp) != EOF;
    ok = ok && (n == 0 || fwrite(data, sizeof *data, n, af.fp) == n);
    if (!ok) {
        int e = errno;
        ecr_atomic_abort(&af);
        return ecr_fail(ECR_E_IO, "%s: write failed: %s", path, strerror(e));
    }
    return ecr_atomic_commit(&af);
}
