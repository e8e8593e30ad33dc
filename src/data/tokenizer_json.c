/* tokenizer_json.c — tokenizer.json (Hugging Face `tokenizers` layout) writer and a
 * validating reader. The reader accepts exactly what our encoder reproduces: a BPE model
 * over byte-level tokens, no normalizer, our Split regex + ByteLevel(use_regex=false)
 * pre-tokenizer, a ByteLevel decoder, special added tokens. */
#include "tokenizer_internal.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- writing ----------------------------------------------------------------------- */

/* A JSON string literal: quotes, backslashes and controls escaped, other bytes raw. */
static void put_json_string(FILE *fp, const char *s) {
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') { fputc('\\', fp); fputc(*p, fp); }
        else if (*p < 0x20) fprintf(fp, "\\u%04x", *p);
        else fputc(*p, fp);
    }
    fputc('"', fp);
}

static void put_added_tokens(FILE *fp, const ecr_tokenizer *t) {
    fputs("  \"added_tokens\": [", fp);
    int first = 1;
    for (int i = 0; i < t->n_vocab; i++) {
        if (!t->special[i]) continue;
        fprintf(fp, "%s\n    {\"id\": %d, \"content\": ", first ? "" : ",", i);
        put_json_string(fp, t->str[i]);
        fputs(", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
              "\"normalized\": false, \"special\": true}", fp);
        first = 0;
    }
    fputs("\n  ],\n", fp);
}

static void put_model(FILE *fp, const ecr_tokenizer *t) {
    fputs("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
          "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
          "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
          "    \"vocab\": {", fp);
    for (int i = 0; i < t->n_vocab; i++) {
        fputs(i ? ",\n      " : "\n      ", fp);
        put_json_string(fp, t->str[i]);
        fprintf(fp, ": %d", i);
    }
    fputs("\n    },\n    \"merges\": [", fp);
    for (int r = 0; r < t->n_merges; r++) {
        fputs(r ? ",\n      \"" : "\n      \"", fp);
        /* Byte-level strings hold neither spaces, quotes-needing-escape aside, nor controls. */
        const char *a = t->str[t->merge[3 * r]], *b = t->str[t->merge[3 * r + 1]];
        for (const char *p = a; *p; p++) { if (*p == '"' || *p == '\\') fputc('\\', fp); fputc(*p, fp); }
        fputc(' ', fp);
        for (const char *p = b; *p; p++) { if (*p == '"' || *p == '\\') fputc('\\', fp); fputc(*p, fp); }
        fputc('"', fp);
    }
    fputs("\n    ]\n  }\n", fp);
}

ecr_status ecr_tokenizer_save(const ecr_tokenizer *tok, const char *path) {
    ecr_atomic_file af;
    ecr_status st = ecr_atomic_open(&af, path);
    if (st) return st;
    FILE *fp = af.fp;
    fputs("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n", fp);
    put_added_tokens(fp, tok);
    fputs("  \"normalizer\": null,\n  \"pre_tokenizer\": {\n    \"type\": \"Sequence\",\n"
          "    \"pretokenizers\": [\n      {\"type\": \"Split\", \"pattern\": {\"Regex\": ", fp);
    put_json_string(fp, ECR_TOK_SPLIT_REGEX);
    fputs("}, \"behavior\": \"Isolated\", \"invert\": false},\n"
          "      {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
          "\"use_regex\": false}\n    ]\n  },\n  \"post_processor\": null,\n"
          "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
          "\"trim_offsets\": true, \"use_regex\": false},\n", fp);
    put_model(fp, tok);
    fputs("}\n", fp);
    return ecr_atomic_commit(&af);
}

/* ---- reading ----------------------------------------------------------------------- */

static int is_null_or_absent(const cJSON *x) { return !x || cJSON_IsNull(x); }

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* True when o[key] is the boolean `want` (absent counts as `dflt`). */
static int bool_is(const cJSON *o, const char *key, int want, int dflt) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x) return dflt == want;
    return cJSON_IsBool(x) && (cJSON_IsTrue(x) ? 1 : 0) == want;
}

static int int_value(const cJSON *x, int lo, int hi, int *out) {
    if (!cJSON_IsNumber(x)) return 0;
    double v = x->valuedouble;
    if (v != floor(v) || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

static ecr_status check_pipeline(const cJSON *root, const char *path) {
    const char *ver = str_field(root, "version");
    if (cJSON_GetObjectItemCaseSensitive(root, "version") && (!ver || strcmp(ver, "1.0")))
        return ecr_fail(ECR_E_INVALID, "%s: version: expected \"1.0\"", path);
    if (!is_null_or_absent(cJSON_GetObjectItemCaseSensitive(root, "normalizer")))
        return ecr_fail(ECR_E_INVALID, "%s: normalizer: must be null (normalizers are not supported)", path);
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const cJSON *split = cJSON_GetArrayItem(seq, 0), *bl = cJSON_GetArrayItem(seq, 1);
    const char *behavior = str_field(split, "behavior");
    int ok = cJSON_IsObject(pt) && str_field(pt, "type") && !strcmp(str_field(pt, "type"), "Sequence") &&
             cJSON_GetArraySize(seq) == 2 && str_field(split, "type") &&
             !strcmp(str_field(split, "type"), "Split") &&
             str_field(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex") &&
             !strcmp(str_field(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex"),
                     ECR_TOK_SPLIT_REGEX) &&
             behavior && !strcmp(behavior, "Isolated") && bool_is(split, "invert", 0, 0) &&
             str_field(bl, "type") && !strcmp(str_field(bl, "type"), "ByteLevel") &&
             bool_is(bl, "add_prefix_space", 0, 1) && bool_is(bl, "use_regex", 0, 1);
    if (!ok)
        return ecr_fail(ECR_E_INVALID, "%s: pre_tokenizer: not the ecr pre-tokenizer (Sequence of "
                        "Split with the ecr Regex, Isolated, and ByteLevel with add_prefix_space "
                        "and use_regex false)", path);
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    if (!str_field(dec, "type") || strcmp(str_field(dec, "type"), "ByteLevel"))
        return ecr_fail(ECR_E_INVALID, "%s: decoder: expected {\"type\": \"ByteLevel\"}", path);
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    if (!is_null_or_absent(pp) && (!str_field(pp, "type") || strcmp(str_field(pp, "type"), "ByteLevel")))
        return ecr_fail(ECR_E_INVALID, "%s: post_processor: must be null or ByteLevel", path);
    return ECR_OK;
}

static ecr_status check_model_options(const cJSON *model, const char *path) {
    const char *type = str_field(model, "type");
    if (!cJSON_IsObject(model) || !type || strcmp(type, "BPE"))
        return ecr_fail(ECR_E_INVALID, "%s: model.type: expected \"BPE\"", path);
    if (!is_null_or_absent(cJSON_GetObjectItemCaseSensitive(model, "dropout")))
        return ecr_fail(ECR_E_INVALID, "%s: model.dropout: must be null", path);
    static const char *const empty_keys[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(model, empty_keys[k]);
        if (!is_null_or_absent(x) && !(cJSON_IsString(x) && !x->valuestring[0]))
            return ecr_fail(ECR_E_INVALID, "%s: model.%s: must be null", path, empty_keys[k]);
    }
    if (!bool_is(model, "ignore_merges", 0, 0))
        return ecr_fail(ECR_E_INVALID, "%s: model.ignore_merges: must be false", path);
    return ECR_OK;
}

typedef struct load_state {
    char **strs;
    int n;                    /* slots in strs */
    int *special;
    int n_special;
    int32_t *pairs;
    int n_merges;
} load_state;

static ecr_status put_token(load_state *s, int id, const char *content, const char *path,
                            const char *where) {
    if (s->strs[id]) {
        if (!strcmp(s->strs[id], content)) return ECR_OK;
        return ecr_fail(ECR_E_INVALID, "%s: %s: id %d is taken by \"%s\" and \"%s\"", path, where,
                        id, s->strs[id], content);
    }
    s->strs[id] = strdup(content);
    return s->strs[id] ? ECR_OK : ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
}

static ecr_status read_vocab(const cJSON *root, const cJSON *vocab, load_state *s, const char *path) {
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) return ecr_fail(ECR_E_INVALID, "%s: model.vocab: expected an object", path);
    if (!cJSON_IsArray(added)) return ecr_fail(ECR_E_INVALID, "%s: added_tokens: expected an array", path);
    const int max_id = 1 << 24;
    int top = -1, id = 0;
    for (const cJSON *x = vocab->child; x; x = x->next) {
        if (!int_value(x, 0, max_id, &id))
            return ecr_fail(ECR_E_INVALID, "%s: model.vocab: \"%s\": id must be an integer in [0, %d]",
                            path, x->string, max_id);
        if (id > top) top = id;
    }
    int k = 0;
    for (const cJSON *x = added->child; x; x = x->next, k++) {
        if (!int_value(cJSON_GetObjectItemCaseSensitive(x, "id"), 0, max_id, &id) || !str_field(x, "content"))
            return ecr_fail(ECR_E_INVALID, "%s: added_tokens[%d]: needs an integer id and a string content",
                            path, k);
        if (!bool_is(x, "special", 1, 0))
            return ecr_fail(ECR_E_INVALID, "%s: added_tokens[%d]: \"%s\": only special added tokens "
                            "are supported", path, k, str_field(x, "content"));
        if (id > top) top = id;
    }
    s->n = top + 1;
    s->strs = calloc((size_t)s->n + 1, sizeof *s->strs);
    s->special = malloc(((size_t)k + 1) * sizeof *s->special);
    if (!s->strs || !s->special) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    for (const cJSON *x = vocab->child; x; x = x->next) {
        int_value(x, 0, max_id, &id);
        ecr_status st = put_token(s, id, x->string, path, "model.vocab");
        if (st) return st;
    }
    for (const cJSON *x = added->child; x; x = x->next) {
        int_value(cJSON_GetObjectItemCaseSensitive(x, "id"), 0, max_id, &id);
        ecr_status st = put_token(s, id, str_field(x, "content"), path, "added_tokens");
        if (st) return st;
        s->special[s->n_special++] = id;
    }
    return ECR_OK;
}

/* Looks a merge side up by string (linear-time index built by the caller). */
typedef struct name_index { const char **name; int32_t *id; size_t mask; } name_index;

static uint64_t nhash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int32_t name_find(const name_index *x, const char *s) {
    for (size_t h = nhash(s) & x->mask; x->name[h]; h = (h + 1) & x->mask)
        if (!strcmp(x->name[h], s)) return x->id[h];
    return -1;
}

static ecr_status read_merges(const cJSON *merges, load_state *s, const char *path) {
    if (!cJSON_IsArray(merges)) return ecr_fail(ECR_E_INVALID, "%s: model.merges: expected an array", path);
    int n = cJSON_GetArraySize(merges);
    if (n > s->n) /* each merge makes a token of the vocabulary */
        return ecr_fail(ECR_E_INVALID, "%s: model.merges: %d merges for a vocabulary of %d tokens", path, n, s->n);
    size_t slots = 16;
    while (slots < 2 * (size_t)s->n + 16) slots *= 2;
    name_index x = {calloc(slots, sizeof(char *)), malloc(slots * sizeof(int32_t)), slots - 1};
    s->pairs = malloc(2 * ((size_t)n + 1) * sizeof *s->pairs);
    char *tmp = NULL;
    ecr_status st = ECR_OK;
    if (!x.name || !x.id || !s->pairs) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    for (int i = 0; !st && i < s->n; i++) {
        if (!s->strs[i]) continue;
        size_t h = nhash(s->strs[i]) & x.mask;
        while (x.name[h]) h = (h + 1) & x.mask;
        x.name[h] = s->strs[i];
        x.id[h] = i;
    }
    int r = 0;
    for (const cJSON *m = st ? NULL : merges->child; m && !st; m = m->next, r++) {
        const char *a = NULL, *b = NULL;
        if (cJSON_IsString(m)) {
            free(tmp);
            tmp = strdup(m->valuestring);
            if (!tmp) { st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", path); break; }
            char *sp = strchr(tmp, ' ');
            if (sp && !strchr(sp + 1, ' ')) { *sp = '\0'; a = tmp; b = sp + 1; }
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 &&
                   cJSON_IsString(cJSON_GetArrayItem(m, 0)) && cJSON_IsString(cJSON_GetArrayItem(m, 1))) {
            a = cJSON_GetArrayItem(m, 0)->valuestring;
            b = cJSON_GetArrayItem(m, 1)->valuestring;
        }
        if (!a) {
            st = ecr_fail(ECR_E_INVALID, "%s: model.merges[%d]: expected \"left right\" or "
                          "[\"left\", \"right\"]", path, r);
            break;
        }
        int32_t ia = name_find(&x, a), ib = name_find(&x, b);
        if (ia < 0 || ib < 0) {
            st = ecr_fail(ECR_E_INVALID, "%s: model.merges[%d]: \"%s\" is not in the vocab", path,
                          r, ia < 0 ? a : b);
            break;
        }
        s->pairs[2 * r] = ia;
        s->pairs[2 * r + 1] = ib;
    }
    s->n_merges = r;
    free(tmp);
    free(x.name);
    free(x.id);
    return st;
}

/* Largest tokenizer.json read: a 256k-token vocabulary with its merges takes about 20 MiB;
 * anything much larger is refused before it is parsed (parsing costs ~10x the file). */
#define TOKENIZER_MAX_BYTES ((long long)64 << 20)

ecr_status ecr_tokenizer_load(const char *path, ecr_tokenizer **out) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && (long long)sb.st_size > TOKENIZER_MAX_BYTES)
        return ecr_fail(ECR_E_INVALID, "%s: %lld MiB, larger than the %lld MiB a tokenizer.json may be", path,
                        (long long)sb.st_size >> 20, TOKENIZER_MAX_BYTES >> 20);
    ecr_status st = ecr_read_file(path, &buf, &len);
    if (st) return st;
    cJSON *root = cJSON_ParseWithLength(buf, len);
    if (!root || !cJSON_IsObject(root)) {
        long at = root ? 0 : (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - buf : 0);
        cJSON_Delete(root);
        free(buf);
        return ecr_fail(ECR_E_INVALID, "%s: byte %ld: not a JSON object (malformed JSON)", path, at);
    }
    load_state s = {0};
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    st = check_pipeline(root, path);
    if (!st) st = check_model_options(model, path);
    if (!st) st = read_vocab(root, cJSON_GetObjectItemCaseSensitive(model, "vocab"), &s, path);
    if (!st) st = read_merges(cJSON_GetObjectItemCaseSensitive(model, "merges"), &s, path);
    cJSON_Delete(root);
    free(buf);
    if (!st) {
        st = ecr_tok_build(s.strs, s.n, s.special, s.n_special, s.pairs, s.n_merges, path, out);
        s.strs = NULL; /* owned by the builder now, also on failure */
    }
    if (s.strs)
        for (int i = 0; i < s.n; i++) free(s.strs[i]);
    free(s.strs);
    free(s.special);
    free(s.pairs);
    return st;
}
