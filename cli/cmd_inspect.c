/* cmd_inspect.c — `ecr inspect FILE`: what a safetensors, .npy or tokenizer.json holds.
 *
 * The kind comes from the extension (.safetensors, .npy, .json), else from the content.
 * tokenizer.json is read with cJSON directly (not through the tokenizer module) so that
 * any Hugging Face tokenizer file can be inspected. Output goes to stdout; a bad file
 * is a one-line "ecr: FILE: place: reason" on stderr and exit 2; a file that cannot be
 * read at all (missing, a directory) exits 1. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
    "usage: ecr inspect FILE\n"
    "\n"
    "Shows what FILE holds:\n"
    "  safetensors     each tensor's name, dtype, shape and size; the __metadata__ pairs\n"
    "  .npy            dtype, shape, fortran order (and whether ecr can read it)\n"
    "  tokenizer.json  model type, vocab size, merges, added/special tokens with ids\n"
    "The kind is taken from the extension (.safetensors, .npy, .json), else from the content.\n"
    "\n"
    "flags:\n"
    "  --quiet   accepted for uniformity (inspect prints no progress)\n"
    "  --help    this text\n"
    "\n"
    "exit status: 0 success; 2 malformed or unrecognised file, bad usage;\n"
    "             1 the file cannot be read (missing, a directory, I/O error)\n";

#define META_SHOWN 72    /* metadata values longer than this are cut */
#define TOKEN_SHOWN 48   /* likewise for added-token contents        */

/* ---- formatting helpers ------------------------------------------------------------- */

/* Prints a byte size with its unit: "16 B", "4.0 KiB", "1.5 MiB". */
static void print_size(FILE *fp, double bytes) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4) { bytes /= 1024; u++; }
    if (u == 0) fprintf(fp, "%.0f B", bytes);
    else fprintf(fp, "%.1f %s", bytes, unit[u]);
}

/* Prints `s` on one line: control characters escaped, cut after `max` bytes (at a UTF-8
 * boundary) with a note of the full length. */
static void print_escaped(FILE *fp, const char *s, size_t max) {
    size_t n = strlen(s), i = 0;
    for (; s[i] && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", fp);
        else if (c == '\t') fputs("\\t", fp);
        else if (c == '\r') fputs("\\r", fp);
        else if (c < 0x20 || c == 0x7F) fprintf(fp, "\\x%02x", c);
        else fputc(c, fp);
    }
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) fputc(s[i++], fp);  /* finish a character */
    if (i < n) fprintf(fp, "... (%zu bytes)", n);
}

static void shape_text(char *buf, size_t cap, int ndim, const int64_t *shape, const char *open, const char *close) {
    size_t o = (size_t)snprintf(buf, cap, "%s", open);
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "%s", close);
}

/* ---- safetensors -------------------------------------------------------------------- */

static void print_st_meta(const ecr_st_file *f) {
    size_t n = ecr_st_meta_count(f), kw = 0;
    if (!n) return;
    for (size_t i = 0; i < n; i++) {
        const char *k;
        ecr_st_meta_at(f, i, &k, NULL);
        if (strlen(k) > kw) kw = strlen(k);
    }
    if (kw > 32) kw = 32;
    printf("metadata (%zu):\n", n);
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        ecr_st_meta_at(f, i, &k, &v);
        printf("  ");
        print_escaped(stdout, k, 64);
        printf("%*s  ", (int)(kw > strlen(k) ? kw - strlen(k) : 0), "");
        print_escaped(stdout, v, META_SHOWN);
        printf("\n");
    }
}

static void print_st_tensors(const ecr_st_file *f) {
    size_t n = ecr_st_count(f), nw = 4, sw = 5;
    char shape[200];
    for (size_t i = 0; i < n; i++) {
        const ecr_tensor_view *v = ecr_st_at(f, i);
        shape_text(shape, sizeof shape, v->ndim, v->shape, "[", "]");
        if (strlen(v->name) > nw) nw = strlen(v->name);
        if (strlen(shape) > sw) sw = strlen(shape);
    }
    if (nw > 60) nw = 60;
    printf("tensors (%zu):\n  %-*s  %-5s  %-*s  %s\n", n, (int)nw, "name", "dtype", (int)sw, "shape", "size");
    for (size_t i = 0; i < n; i++) {
        const ecr_tensor_view *v = ecr_st_at(f, i);
        shape_text(shape, sizeof shape, v->ndim, v->shape, "[", "]");
        printf("  ");
        print_escaped(stdout, v->name, 120);
        printf("%*s  %-5s  %-*s  ", (int)(nw > strlen(v->name) ? nw - strlen(v->name) : 0), "",
               ecr_dtype_name(v->dtype), (int)sw, shape);
        print_size(stdout, (double)v->nbytes);
        printf("\n");
    }
}

static int inspect_safetensors(const char *path) {
    ecr_st_file *f;
    ecr_status st = ecr_st_open(path, &f);
    if (st != ECR_OK) return cli_fail(st);
    double params = 0, bytes = 0;
    for (size_t i = 0; i < ecr_st_count(f); i++) {
        params += (double)ecr_st_at(f, i)->numel;
        bytes += (double)ecr_st_at(f, i)->nbytes;
    }
    printf("%s: safetensors, %zu tensors, %.0f elements, ", path, ecr_st_count(f), params);
    print_size(stdout, bytes);
    printf(" of data\n");
    print_st_meta(f);
    print_st_tensors(f);
    ecr_st_close(f);
    return 0;
}

/* ---- .npy --------------------------------------------------------------------------- */

static int inspect_npy(const char *path) {
    char descr[32];
    int fortran = 0, ndim = 0;
    int64_t shape[ECR_MAX_DIMS];
    ecr_status st = ecr_npy_info(path, descr, sizeof descr, &fortran, &ndim, shape);
    if (st != ECR_OK) return cli_fail(st);
    char s[200];
    shape_text(s, sizeof s, ndim, shape, "(", ndim == 1 ? ",)" : ")");
    double numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (double)shape[i];
    printf("%s: npy, dtype %s, shape %s, fortran_order %s, %.0f elements\n", path, descr, s,
           fortran ? "True" : "False", numel);
    int readable = !strcmp(descr, "<f4") && !fortran && (ndim == 1 || ndim == 2);
    if (!readable) printf("note: ecr reads only '<f4' C-order 1-D or 2-D arrays; this one it refuses\n");
    return 0;
}

/* ---- tokenizer.json ----------------------------------------------------------------- */

/* Reads a whole file (malloc'd, NUL-terminated). */
static ecr_status read_all(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || S_ISDIR(sb.st_mode)) {
        fclose(fp);
        return ecr_fail(ECR_E_IO, "%s: cannot read: %s", path, S_ISDIR(sb.st_mode) ? "is a directory" : strerror(errno));
    }
    size_t n = (size_t)sb.st_size;
    char *b = malloc(n + 1);
    if (!b) { fclose(fp); return ecr_fail(ECR_E_NOMEM, "%s: out of memory (%zu bytes)", path, n); }
    size_t got = fread(b, 1, n, fp);
    fclose(fp);
    if (got != n) { free(b); return ecr_fail(ECR_E_IO, "%s: read failed", path); }
    b[n] = '\0';
    *out = b;
    *len = n;
    return ECR_OK;
}

/* Whether `s` is a key of model.vocab (object form) or a piece of it (Unigram list). */
static int vocab_has(const cJSON *vocab, const char *s) {
    if (cJSON_IsObject(vocab)) return cJSON_GetObjectItemCaseSensitive(vocab, s) != NULL;
    for (const cJSON *e = vocab ? vocab->child : NULL; e; e = e->next) {
        const cJSON *piece = cJSON_IsArray(e) ? e->child : e;
        if (cJSON_IsString(piece) && !strcmp(piece->valuestring, s)) return 1;
    }
    return 0;
}

/* Checks added_tokens entries: objects with a non-negative integer id and string content. */
static ecr_status check_added(const char *path, const cJSON *added) {
    if (!added || cJSON_IsNull(added)) return ECR_OK;
    if (!cJSON_IsArray(added)) return ecr_fail(ECR_E_INVALID, "%s: added_tokens: not an array", path);
    int i = 0;
    for (const cJSON *t = added->child; t; t = t->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble != (double)(long long)id->valuedouble ||
            id->valuedouble > 2147483647.0)
            return ecr_fail(ECR_E_INVALID, "%s: added_tokens[%d]: id is not a non-negative integer", path, i);
        if (!cJSON_IsString(content))
            return ecr_fail(ECR_E_INVALID, "%s: added_tokens[%d]: content is not a string", path, i);
    }
    return ECR_OK;
}

/* Validates the parts inspect reports on: model (object, vocab object or array). */
static ecr_status check_tokenizer(const char *path, const cJSON *root) {
    if (!cJSON_IsObject(root)) return ecr_fail(ECR_E_INVALID, "%s: not a JSON object", path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return ecr_fail(ECR_E_INVALID, "%s: model: %s (not a tokenizer.json?)", path, model ? "not an object" : "missing");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !cJSON_IsString(type)) return ecr_fail(ECR_E_INVALID, "%s: model.type: not a string", path);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab) && !cJSON_IsArray(vocab))
        return ecr_fail(ECR_E_INVALID, "%s: model.vocab: %s", path, vocab ? "not an object or array" : "missing");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges && !cJSON_IsArray(merges)) return ecr_fail(ECR_E_INVALID, "%s: model.merges: not an array", path);
    return check_added(path, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
}

static void print_added(const cJSON *added) {
    int n = cJSON_IsArray(added) ? cJSON_GetArraySize(added) : 0;
    printf("added tokens (%d):\n", n);
    for (const cJSON *t = n ? added->child : NULL; t; t = t->next) {
        const cJSON *special = cJSON_GetObjectItemCaseSensitive(t, "special");
        printf("  %6lld  \"", (long long)cJSON_GetObjectItemCaseSensitive(t, "id")->valuedouble);
        print_escaped(stdout, cJSON_GetObjectItemCaseSensitive(t, "content")->valuestring, TOKEN_SHOWN);
        printf("\"%s\n", cJSON_IsTrue(special) ? "  special" : "");
    }
}

static void print_tokenizer(const char *path, const cJSON *root) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int n_vocab = cJSON_GetArraySize(vocab), n_extra = 0;
    for (const cJSON *t = cJSON_IsArray(added) ? added->child : NULL; t; t = t->next)
        n_extra += !vocab_has(vocab, cJSON_GetObjectItemCaseSensitive(t, "content")->valuestring);
    printf("%s: tokenizer.json, model %s\n", path, type ? type->valuestring : "(no type)");
    printf("vocab size: %d (%d in model.vocab + %d added tokens not in it)\n", n_vocab + n_extra, n_vocab, n_extra);
    if (merges) printf("merges: %d\n", cJSON_GetArraySize(merges));
    else printf("merges: none\n");
    print_added(added);
}

static int inspect_tokenizer(const char *path) {
    char *text = NULL;
    size_t len = 0;
    ecr_status st = read_all(path, &text, &len);
    if (st != ECR_OK) return cli_fail(st);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        st = ecr_fail(ECR_E_INVALID, "%s: byte %zu: not valid JSON", path, e && e >= text ? (size_t)(e - text) : 0);
    }
    for (size_t i = root ? (size_t)(end - text) : len; st == ECR_OK && i < len; i++)
        if (!strchr(" \t\r\n", text[i]) || !text[i])
            st = ecr_fail(ECR_E_INVALID, "%s: byte %zu: data after the JSON value", path, i);
    if (st == ECR_OK) st = check_tokenizer(path, root);
    if (st == ECR_OK) print_tokenizer(path, root);
    cJSON_Delete(root);
    free(text);
    return st == ECR_OK ? 0 : cli_fail(st);
}

/* ---- dispatch ----------------------------------------------------------------------- */

typedef enum { KIND_UNKNOWN, KIND_ST, KIND_NPY, KIND_JSON } file_kind;

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* The kind of `path` by extension, else by its first bytes. ECR_E_IO if unreadable. */
static ecr_status detect_kind(const char *path, file_kind *kind) {
    *kind = KIND_UNKNOWN;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    int dir = fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode);
    unsigned char head[16] = {0};
    size_t n = dir ? 0 : fread(head, 1, sizeof head, fp);
    fclose(fp);
    if (dir) return ecr_fail(ECR_E_IO, "%s: cannot read: is a directory", path);
    if (ends_with(path, ".safetensors")) *kind = KIND_ST;
    else if (ends_with(path, ".npy")) *kind = KIND_NPY;
    else if (ends_with(path, ".json")) *kind = KIND_JSON;
    else if (n >= 6 && !memcmp(head, "\x93NUMPY", 6)) *kind = KIND_NPY;
    else if (n >= 9 && head[8] == '{') *kind = KIND_ST;
    else {
        size_t i = 0;
        while (i < n && strchr(" \t\r\n", head[i])) i++;
        if (i < n && head[i] == '{') *kind = KIND_JSON;
    }
    if (*kind == KIND_UNKNOWN)
        return ecr_fail(ECR_E_INVALID, "%s: not a safetensors, .npy or tokenizer.json file (unrecognised content)", path);
    return ECR_OK;
}

int cmd_inspect(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr inspect", argc, argv, usage_text);
    if (a.help) { cli_args_free(&a); return 0; }
    (void)cli_flag(&a, "--quiet");
    int ok = cli_finish(&a);
    if (ok && a.npos != 1) {
        fprintf(stderr, "ecr inspect: expected one FILE, got %d (see --help)\n", a.npos);
        ok = 0;
    }
    const char *path = ok ? a.pos[0] : NULL;
    cli_args_free(&a);
    if (!ok) return 2;
    file_kind kind;
    ecr_status st = detect_kind(path, &kind);
    if (st != ECR_OK) return cli_fail(st);
    if (kind == KIND_ST) return inspect_safetensors(path);
    if (kind == KIND_NPY) return inspect_npy(path);
    return inspect_tokenizer(path);
}
