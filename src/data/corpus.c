/* corpus.c — reads a JSONL corpus: one JSON object per line with a required string
 * "text" and optional string fields "id", "group", "lang", "label"; or plain text, one
 * text per line (ecr embed --text). */
#include "ecr.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* Byte offset of the first invalid UTF-8 sequence in s[0..n), or -1 if valid. */
static long utf8_invalid_at(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) { i++; continue; }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) return (long)i;
        i += (size_t)k;
    }
    return -1;
}

/* Copies an optional string field; 0 = ok (absent or string), -1 = not a string/null. */
static int opt_string(const cJSON *obj, const char *key, char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsString(v)) return -1;
    *out = strdup(v->valuestring);
    return *out ? 0 : -2;
}

static ecr_status corpus_grow(ecr_corpus *c, size_t *cap) {
    size_t nc = *cap ? *cap * 2 : 1024;
    char **arrs[5] = {c->text, c->id, c->group, c->lang, c->label};
    for (int k = 0; k < 5; k++) {
        char **p = realloc(arrs[k], nc * sizeof *p);
        if (!p) return ECR_E_NOMEM;
        arrs[k] = p;
    }
    c->text = arrs[0]; c->id = arrs[1]; c->group = arrs[2]; c->lang = arrs[3]; c->label = arrs[4];
    *cap = nc;
    return ECR_OK;
}

/* Parses one line (NUL-terminated, length n) into entry c->n. */
static ecr_status parse_line(const char *path, size_t lineno, const char *line, size_t n,
                             ecr_corpus *c) {
    long bad = utf8_invalid_at(line, n);
    if (bad >= 0)
        return ecr_fail(ECR_E_INVALID, "%s:%zu: invalid UTF-8 at byte %ld", path, lineno, bad + 1);
    const char *end = NULL;
    cJSON *obj = cJSON_ParseWithLengthOpts(line, n, &end, 0);
    if (!obj) return ecr_fail(ECR_E_INVALID, "%s:%zu: malformed JSON", path, lineno);
    ecr_status st = ECR_OK;
    while (end && end < line + n && (*end == ' ' || *end == '\t' || *end == '\r')) end++;
    if (end && end < line + n) {
        st = ecr_fail(ECR_E_INVALID, "%s:%zu: trailing characters after the JSON object", path, lineno);
        goto done;
    }
    if (!cJSON_IsObject(obj)) {
        st = ecr_fail(ECR_E_INVALID, "%s:%zu: not a JSON object", path, lineno);
        goto done;
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, "text");
    if (!t) { st = ecr_fail(ECR_E_INVALID, "%s:%zu: missing \"text\"", path, lineno); goto done; }
    if (!cJSON_IsString(t)) { st = ecr_fail(ECR_E_INVALID, "%s:%zu: \"text\" is not a string", path, lineno); goto done; }
    if (!t->valuestring[0]) { st = ecr_fail(ECR_E_INVALID, "%s:%zu: \"text\" is empty", path, lineno); goto done; }
    size_t tl = strlen(t->valuestring);
    bad = utf8_invalid_at(t->valuestring, tl); /* \u escapes can encode what raw bytes cannot */
    if (bad >= 0) { st = ecr_fail(ECR_E_INVALID, "%s:%zu: \"text\" decodes to invalid UTF-8", path, lineno); goto done; }
    size_t i = c->n;
    c->text[i] = c->id[i] = c->group[i] = c->lang[i] = c->label[i] = NULL;
    c->text[i] = strdup(t->valuestring);
    if (!c->text[i]) { st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", path); goto done; }
    c->n++; /* entry i is now owned by c, even if a field below fails */
    const char *keys[4] = {"id", "group", "lang", "label"};
    char **dst[4] = {&c->id[i], &c->group[i], &c->lang[i], &c->label[i]};
    for (int k = 0; k < 4; k++) {
        int r = opt_string(obj, keys[k], dst[k]);
        if (r == -1) { st = ecr_fail(ECR_E_INVALID, "%s:%zu: \"%s\" is not a string", path, lineno, keys[k]); goto done; }
        if (r == -2) { st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", path); goto done; }
    }
done:
    cJSON_Delete(obj);
    return st;
}

/* One line of plain text (format ECR_TEXT_LINES) as entry c->n: the whole line is the text. */
static ecr_status text_line(const char *name, size_t lineno, const char *line, size_t n, ecr_corpus *c) {
    if (n == 0)
        return ecr_fail(ECR_E_INVALID, "%s:%zu: empty line (every line is a text; an empty text has no tokens)",
                        name, lineno);
    const char *nul = memchr(line, '\0', n);
    if (nul) return ecr_fail(ECR_E_INVALID, "%s:%zu: NUL byte at byte %zu", name, lineno, (size_t)(nul - line) + 1);
    long bad = utf8_invalid_at(line, n);
    if (bad >= 0) return ecr_fail(ECR_E_INVALID, "%s:%zu: invalid UTF-8 at byte %ld", name, lineno, bad + 1);
    size_t i = c->n;
    c->id[i] = c->group[i] = c->lang[i] = c->label[i] = NULL;
    c->text[i] = malloc(n + 1);
    if (!c->text[i]) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", name);
    memcpy(c->text[i], line, n + 1);
    c->n++;
    return ECR_OK;
}

ecr_status ecr_corpus_read_stream(FILE *fp, const char *name, ecr_text_format fmt, ecr_corpus **out) {
    *out = NULL;
    if (fmt != ECR_TEXT_JSONL && fmt != ECR_TEXT_LINES)
        return ecr_fail(ECR_E_INVALID, "%s: unknown text format %d", name, (int)fmt);
    ecr_corpus *c = calloc(1, sizeof *c);
    char *line = NULL;
    size_t cap = 0, line_cap = 0, lineno = 0;
    ecr_status st = c ? ECR_OK : ecr_fail(ECR_E_NOMEM, "%s: out of memory", name);
    while (st == ECR_OK) {
        errno = 0;
        long r = ecr_read_line(fp, &line, &line_cap, ECR_MAX_LINE);
        if (r == 0) break;
        lineno++;
        if (r == -1) st = ecr_fail(ECR_E_IO, "%s: read error: %s", name, strerror(errno));
        else if (r == -2) st = ecr_fail(ECR_E_INVALID, "%s:%zu: line longer than %zu MiB", name, lineno, ECR_MAX_LINE >> 20);
        else if (r == -3) st = ecr_fail(ECR_E_NOMEM, "%s:%zu: out of memory", name, lineno);
        if (st) break;
        size_t n = (size_t)r;
        if (line[n - 1] == '\n') line[--n] = '\0';
        if (fmt == ECR_TEXT_LINES) {
            if (n > 0 && line[n - 1] == '\r') line[--n] = '\0'; /* a CRLF file's lines */
        } else {
            size_t k = 0;
            while (k < n && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
            if (k == n) continue; /* blank lines are skipped */
        }
        if (c->n == cap && corpus_grow(c, &cap) != ECR_OK)
            st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", name);
        else if (fmt == ECR_TEXT_LINES)
            st = text_line(name, lineno, line, n, c);
        else
            st = parse_line(name, lineno, line, n, c);
    }
    free(line);
    if (st == ECR_OK && c->n == 0) st = ecr_fail(ECR_E_INVALID, "%s: no texts", name);
    if (st != ECR_OK) {
        ecr_corpus_free(c);
        return st;
    }
    *out = c;
    return ECR_OK;
}

ecr_status ecr_corpus_read(const char *path, ecr_corpus **out) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    ecr_status st = ecr_corpus_read_stream(fp, path, ECR_TEXT_JSONL, out);
    fclose(fp);
    return st;
}

void ecr_corpus_free(ecr_corpus *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->text[i]);
        free(c->id[i]);
        free(c->group[i]);
        free(c->lang[i]);
        free(c->label[i]);
    }
    free(c->text);
    free(c->id);
    free(c->group);
    free(c->lang);
    free(c->label);
    free(c);
}
