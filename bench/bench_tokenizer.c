/* bench_tokenizer.c — tokenizer benchmark (run by `make bench` from the repo root).
 *
 *   1. trains an 8192-token vocabulary on the 100K lo10 training texts (all cores)
 *      requirement: <= 60 s
 *   2. encodes the training texts on one thread and reports MB/s
 *      requirement: >= 5 MB/s
 *   3. tokens per character (and bytes per token) of each lo10 language on validation
 *   4. peer: Hugging Face's JavaScript tokenizer (@huggingface/tokenizers, loaded from the
 *      same tokenizer.json by tests/interop/encode.mjs --bench) on the validation texts,
 *      when node and tests/interop/node_modules are present; prints ecr's speed ratio.
 * Exits 1 when a requirement fails. Timings on a shared machine are noisy. */
#include "ecr.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TRAIN_PATH "build/data/lo10/train.jsonl"
#define VALID_PATH "build/data/lo10/valid.jsonl"

/* Encodes texts[0..n) on this thread; returns seconds, adds bytes and tokens. */
static double encode_pass(const ecr_tokenizer *tok, char *const *texts, size_t n,
                          size_t *bytes, size_t *tokens) {
    int32_t *ids = NULL;
    size_t cap = 0;
    double t0 = ecr_now();
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(texts[i]), k = 0;
        if (len + 1 > cap) {
            cap = 2 * (len + 1);
            free(ids);
            ids = malloc(cap * sizeof *ids);
        }
        if (!ids || ecr_tokenizer_encode(tok, texts[i], len, ids, cap, &k) != ECR_OK) {
            fprintf(stderr, "bench_tokenizer: encode failed: %s\n", ecr_last_error());
            exit(1);
        }
        *bytes += len;
        *tokens += k;
    }
    double dt = ecr_now() - t0;
    free(ids);
    return dt;
}

static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static void lang_table(const ecr_tokenizer *tok, const ecr_corpus *v) {
    static const char *const langs[] = {"en", "de", "fr", "es", "it", "pt_BR", "ru", "pl", "ja", "zh_CN"};
    printf("\n  %-6s %6s %9s %9s %9s %11s %11s\n", "lang", "texts", "chars", "bytes", "tokens",
           "tokens/char", "bytes/token");
    size_t all_c = 0, all_b = 0, all_t = 0, all_n = 0;
    for (int l = 0; l < 10; l++) {
        size_t n = 0, chars = 0, bytes = 0, tokens = 0;
        for (size_t i = 0; i < v->n; i++) {
            if (!v->lang[i] || strcmp(v->lang[i], langs[l])) continue;
            n++;
            chars += utf8_chars(v->text[i]);
            encode_pass(tok, &v->text[i], 1, &bytes, &tokens);
        }
        printf("  %-6s %6zu %9zu %9zu %9zu %11.3f %11.2f\n", langs[l], n, chars, bytes, tokens,
               chars ? (double)tokens / (double)chars : 0.0, tokens ? (double)bytes / (double)tokens : 0.0);
        all_n += n, all_c += chars, all_b += bytes, all_t += tokens;
    }
    printf("  %-6s %6zu %9zu %9zu %9zu %11.3f %11.2f\n\n", "all", all_n, all_c, all_b, all_t,
           (double)all_t / (double)all_c, (double)all_b / (double)all_t);
}

/* Runs the JS tokenizer on the validation texts; returns its MB/s or 0 when unavailable. */
static double js_peer(const ecr_tokenizer *tok, const ecr_corpus *v, const char *dir, size_t *js_tokens) {
    if (access("tests/interop/node_modules/@huggingface/tokenizers", F_OK) != 0 ||
        system("node --version >/dev/null 2>&1") != 0)
        return 0;
    char tpath[512], lpath[512], cmd[1400];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", dir);
    snprintf(lpath, sizeof lpath, "%s/valid.txt", dir);
    if (ecr_tokenizer_save(tok, tpath) != ECR_OK) return 0;
    FILE *fp = fopen(lpath, "wb");
    if (!fp) return 0;
    for (size_t i = 0; i < v->n; i++) fprintf(fp, "%s\n", v->text[i]);
    fclose(fp);
    snprintf(cmd, sizeof cmd, "node tests/interop/encode.mjs --bench '%s' < '%s'", tpath, lpath);
    FILE *p = popen(cmd, "r");
    double mbs = 0;
    if (p) {
        if (fscanf(p, "%lf %zu", &mbs, js_tokens) != 2) mbs = 0;
        pclose(p);
    }
    return mbs;
}

int main(void) {
    ecr_corpus *train = NULL, *valid = NULL;
    if (ecr_corpus_read(TRAIN_PATH, &train) || ecr_corpus_read(VALID_PATH, &valid)) {
        fprintf(stderr, "bench_tokenizer: %s (run `make data` from the repo root)\n", ecr_last_error());
        return 1;
    }
    printf("== tokenizer benchmark (byte-level BPE; timings on a shared machine are noisy) ==\n");
    ecr_tokenizer_train_opts o;
    ecr_tokenizer_train_opts_default(&o);
    o.vocab_size = 8192;
    o.quiet = 1;
    ecr_tokenizer *tok = NULL;
    double t0 = ecr_now();
    if (ecr_tokenizer_train((const char *const *)train->text, train->n, &o, &tok)) {
        fprintf(stderr, "bench_tokenizer: %s\n", ecr_last_error());
        return 1;
    }
    double train_s = ecr_now() - t0;

    /* One warm-up pass over the validation texts, then the 100K training texts. */
    size_t b = 0, k = 0;
    encode_pass(tok, valid->text, valid->n, &b, &k);
    b = k = 0;
    double enc_s = encode_pass(tok, train->text, train->n, &b, &k);
    double enc_mbs = (double)b / 1e6 / enc_s;
    size_t vb = 0, vk = 0;
    double venc_s = encode_pass(tok, valid->text, valid->n, &vb, &vk);
    double venc_mbs = (double)vb / 1e6 / venc_s;

    int ok_train = train_s <= 60.0, ok_enc = enc_mbs >= 5.0;
    printf("train   %zu texts -> %d tokens: %7.2f s   (requirement <= 60 s: %.0fx margin)  %s\n",
           train->n, ecr_tokenizer_vocab_size(tok), train_s, 60.0 / train_s, ok_train ? "PASS" : "FAIL");
    printf("encode  1 thread, %zu texts, %.1f MB: %7.2f MB/s   (requirement >= 5 MB/s: %.1fx)  %s\n",
           train->n, (double)b / 1e6, enc_mbs, enc_mbs / 5.0, ok_enc ? "PASS" : "FAIL");
    printf("        %zu tokens, %.2f bytes/token on the training texts\n", k, (double)b / (double)k);
    lang_table(tok, valid);

    const char *base = getenv("TMPDIR");
    char dir[400];
    snprintf(dir, sizeof dir, "%s/ecr_bench_tok_XXXXXX", base && *base ? base : "build");
    size_t js_tokens = 0;
    double js_mbs = mkdtemp(dir) ? js_peer(tok, valid, dir, &js_tokens) : 0;
    if (js_mbs > 0) {
        printf("peer    @huggingface/tokenizers (node), same tokenizer.json, 1 thread, %zu validation "
               "texts:\n        JS %.2f MB/s vs ecr %.2f MB/s: ecr is %.1fx faster; token counts %s (%zu vs %zu)\n",
               valid->n, js_mbs, venc_mbs, venc_mbs / js_mbs, js_tokens == vk ? "equal" : "DIFFER",
               js_tokens, vk);
    } else {
        printf("peer    @huggingface/tokenizers not available (node or tests/interop/node_modules "
               "missing: npm ci --prefix tests/interop); ecr %.2f MB/s on validation texts\n", venc_mbs);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_tokenizer: could not remove %s\n", dir);
    printf("bench_tokenizer: %s\n", ok_train && ok_enc ? "PASS" : "FAIL");
    ecr_tokenizer_free(tok);
    ecr_corpus_free(train);
    ecr_corpus_free(valid);
    return ok_train && ok_enc ? 0 : 1;
}
