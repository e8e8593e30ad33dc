/* cmd_generate.c — `ecr generate`: sample a continuation of a prompt with a KV cache. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: ecr generate --model MODEL_DIR --prompt TEXT [flags]\n"
    "\n"
    "Prints the prompt and its sampled continuation on stdout as it is generated (the model\n"
    "sees the end-of-text token, then the prompt). Stops at the end-of-text token, after\n"
    "--max-tokens, or when the context is full. On stderr, the speed of its two phases:\n"
    "prefill (the prompt through the model, up to 64 tokens per matrix product, until the\n"
    "first new token) and decode (one token per step, from the first new token to the last).\n"
    "\n"
    "  --model DIR            model folder (config.json, model.safetensors, tokenizer.json)\n"
    "  --prompt TEXT          the start of the text (may be empty)\n"
    "  --max-tokens N         new tokens at most (default 200)\n"
    "  --temperature T        0 = greedy (default 0.8)\n"
    "  --top-k K              sample among the K most likely tokens; 0 = all (default 40)\n"
    "  --top-p P              ... and among the most likely whose mass reaches P (default 0.95)\n"
    "  --seed S               sampling seed (default 1)\n"
    "  --threads N            threads (default: all cores)\n"
    CLI_PRECISION_HELP
    "  --ignore-eot           do not stop at the end-of-text token (for timing: always\n"
    "                         --max-tokens tokens, or until the context is full)\n"
    "  --quiet                no statistics on stderr\n"
    "\n"
    "For comparisons with other implementations (tests/cli_export.sh against llama.cpp):\n"
    "  --ids                  token ids instead of text: --prompt is space-separated ids,\n"
    "                         the whole input (no end-of-text token is put before them),\n"
    "                         and the new tokens print as ids, one line\n"
    "  --probs                generate nothing; print the next-token probabilities after\n"
    "                         each token of the input instead: one line per token, the V\n"
    "                         probabilities (softmax of the logits in double, %.9g)\n";

typedef struct gen_ctx {
    const ecr_tokenizer *tok;
    char *buf;
    size_t cap;
    ecr_status st;
    int ids;                  /* --ids: print ids, not text                               */
    size_t n;                 /* ids printed                                              */
    size_t n_new;             /* tokens seen by on_token                                  */
    double t_first, t_last;   /* ecr_now() at the first and the last of them              */
} gen_ctx;

/* --ids: the space-separated ids of `s` into ids[] (room for strlen(s) / 2 + 1). */
static ecr_status parse_ids(const char *s, int32_t *ids, size_t *n) {
    *n = 0;
    for (const char *p = s;;) {
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) return ECR_OK;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ' ' && *end != '\t'))
            return ecr_fail(ECR_E_INVALID, "--prompt: '%.*s' is not a token id", (int)strcspn(p, " \t"), p);
        ids[(*n)++] = (int32_t)v;
        p = end;
    }
}

/* --probs: feeds ids[n] through a KV cache and prints softmax(logits) after each one. */
static ecr_status print_probs(ecr_model *m, const int32_t *ids, size_t n) {
    int V = ecr_model_config(m)->vocab_size, T = ecr_model_config(m)->max_seq_len;
    if (n < 1 || n > (size_t)T)
        return ecr_fail(ECR_E_INVALID, "--prompt: %zu tokens (1 to the context, %d, for --probs)", n, T);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ecr_fail(ECR_E_INVALID, "--prompt: token id %d is outside the vocabulary (%d)", ids[i], V);
    ecr_kv_cache *kv = NULL;
    ecr_status st = ecr_kv_cache_create(m, T, &kv);
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!st && !logits) st = ecr_fail(ECR_E_NOMEM, "out of memory");
    for (size_t i = 0; !st && i < n; i++) {
        if ((st = ecr_model_step(m, kv, ids[i], logits))) break;
        double mx = logits[0], sum = 0;
        for (int j = 1; j < V; j++) mx = logits[j] > mx ? logits[j] : mx;
        for (int j = 0; j < V; j++) sum += exp((double)logits[j] - mx);
        for (int j = 0; j < V; j++) printf("%s%.9g", j ? " " : "", exp((double)logits[j] - mx) / sum);
        putchar('\n');
    }
    free(logits);
    ecr_kv_cache_free(kv);
    return st;
}

static int on_token(void *p, int32_t id) {
    gen_ctx *g = p;
    g->t_last = ecr_now();
    if (g->n_new++ == 0) g->t_first = g->t_last;
    if (g->ids) {
        printf("%s%d", g->n++ ? " " : "", (int)id);
        return 0;
    }
    size_t len = 0;
    g->st = ecr_tokenizer_decode(g->tok, &id, 1, g->buf, g->cap, &len);
    if (g->st) return 1;
    if (len >= g->cap) { /* a longer token than the buffer: decode again, bigger */
        char *nb = realloc(g->buf, len + 1);
        if (!nb) { g->st = ecr_fail(ECR_E_NOMEM, "generate: out of memory"); return 1; }
        g->buf = nb;
        g->cap = len + 1;
        if ((g->st = ecr_tokenizer_decode(g->tok, &id, 1, g->buf, g->cap, &len))) return 1;
    }
    fwrite(g->buf, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr generate", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    ecr_gen_opts go;
    ecr_gen_opts_default(&go);
    const char *dir = cli_require(&a, "--model");
    const char *prompt = cli_require(&a, "--prompt");
    go.max_tokens = (int)cli_int(&a, "--max-tokens", go.max_tokens, 0, 1 << 24);
    go.temperature = (float)cli_float(&a, "--temperature", go.temperature, 0.0, 1e6);
    go.top_k = (int)cli_int(&a, "--top-k", go.top_k, 0, 1 << 30);
    go.top_p = (float)cli_float(&a, "--top-p", go.top_p, 1e-9, 1.0);
    go.seed = (uint64_t)cli_int(&a, "--seed", 1, 0, 1LL << 62);
    int threads = (int)cli_int(&a, "--threads", 0, 0, 4096);
    ecr_precision prec;
    cli_precision(&a, &prec);
    int quiet = cli_flag(&a, "--quiet");
    int ignore_eot = cli_flag(&a, "--ignore-eot");
    int as_ids = cli_flag(&a, "--ids");
    int probs = cli_flag(&a, "--probs");
    if (!cli_finish(&a)) { cli_args_free(&a); return 2; }
    cli_args_free(&a);
    if (a.npos > 0) {
        fprintf(stderr, "ecr generate: unexpected argument '%s' (see --help)\n", a.pos[0]);
        return 2;
    }
    ecr_set_threads(threads);

    ecr_model *m = NULL;
    ecr_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    gen_ctx g = {0};
    size_t plen = strlen(prompt), n = 0, n_gen = 0;
    size_t tlen = strlen(dir) + 32;
    char *tok_path = malloc(tlen);
    ecr_status st = tok_path ? ECR_OK : ecr_fail(ECR_E_NOMEM, "out of memory");
    if (!st) {
        snprintf(tok_path, tlen, "%s/tokenizer.json", dir);
        st = ecr_tokenizer_load(tok_path, &tok);
    }
    if (!st) st = ecr_model_load(dir, &m);
    if (!st) st = cli_set_precision(m, prec, "generate", quiet);
    if (!st && ecr_tokenizer_vocab_size(tok) > ecr_model_config(m)->vocab_size)
        st = ecr_fail(ECR_E_INVALID, "%s: vocabulary of %d tokens, the model has %d", tok_path,
                      ecr_tokenizer_vocab_size(tok), ecr_model_config(m)->vocab_size);
    if (!st) {
        ids = malloc((plen + 2) * sizeof *ids);
        if (!ids) st = ecr_fail(ECR_E_NOMEM, "out of memory");
    }
    if (!st && as_ids) {
        st = parse_ids(prompt, ids, &n); /* n counts the whole input here: no EOT before it */
        if (!st && n == 0) st = ecr_fail(ECR_E_INVALID, "--prompt: no token ids");
        if (!st) n--;
    } else if (!st) {
        ids[0] = ecr_tokenizer_eot_id(tok);
        st = ecr_tokenizer_encode(tok, prompt, plen, ids + 1, plen + 1, &n);
        if (st) {
            char why[512];
            snprintf(why, sizeof why, "%s", ecr_last_error());
            ecr_fail(st, "--prompt: %s", why);
        }
    }
    if (!st && probs) {
        st = print_probs(m, ids, n + 1);
        goto done;
    }
    double t0 = ecr_now();
    g.ids = as_ids;
    if (!st && !as_ids) {
        fwrite(prompt, 1, plen, stdout);
        fflush(stdout);
    }
    if (!st) {
        g.tok = tok;
        g.cap = 256;
        g.buf = malloc(g.cap);
        if (!g.buf) st = ecr_fail(ECR_E_NOMEM, "out of memory");
    }
    if (!st) st = ecr_generate(m, ids, n + 1, ignore_eot ? -1 : ecr_tokenizer_eot_id(tok), &go, on_token, &g, &n_gen);
    if (!st) st = g.st;
    if (!st) {
        fputc('\n', stdout);
        fflush(stdout);
        /* prefill: from the start to the first new token (the prompt through the cache, then
         * one sampling); decode: the steps between the first new token and the last */
        double tp = (g.n_new ? g.t_first : ecr_now()) - t0, td = g.n_new > 1 ? g.t_last - g.t_first : 0;
        if (!quiet) {
            fprintf(stderr, "generate: %zu prompt tokens in %.3f s (%.1f tokens/s prefill)", n + 1, tp,
                    tp > 0 ? (double)(n + 1) / tp : 0.0);
            if (g.n_new > 1)
                fprintf(stderr, "; %zu new tokens, %zu decode steps in %.3f s (%.1f tokens/s decode)", n_gen,
                        g.n_new - 1, td, td > 0 ? (double)(g.n_new - 1) / td : 0.0);
            else
                fprintf(stderr, "; %zu new token%s", n_gen, n_gen == 1 ? "" : "s");
            fputc('\n', stderr);
        }
    }
done:
    fflush(stdout);
    free(g.buf);
    free(ids);
    free(tok_path);
    ecr_tokenizer_free(tok);
    ecr_model_free(m);
    return st ? cli_fail(st) : 0;
}
