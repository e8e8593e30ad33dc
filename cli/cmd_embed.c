/* cmd_embed.c — `ecr embed`: text embeddings of prepared data or raw text -> .npy or TSV. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: ecr embed --model MODEL_DIR (--data DATA.safetensors | --text FILE|-) --out OUT|-\n"
    "                 [--raw] [--format npy|tsv] [--text-format lines|jsonl] [--threads N]\n"
    "                 [--precision P] [--batch-tokens N] [--seq-len T] [--quiet]\n"
    "\n"
    "Writes one float32 row per text, in input order: of prepared data (--data), or of raw\n"
    "text (--text, no prepare step: the texts are encoded with the model folder's\n"
    "tokenizer.json exactly as ecr prepare encodes them, so the rows are the same bytes as\n"
    "prepare + --data with the same flags). By default the row is u = P h / |P h|, the\n"
    "text's embedding through the model's ECR projection (in the anchors' space, comparable\n"
    "with the teacher's); with --raw, or when the model has no projection, it is h, the mean\n"
    "of the final-norm output over the text's tokens. The output is written atomically;\n"
    "texts/s on stderr. Under `mpirun -np N` the batches are shared among the processes and\n"
    "the first one writes --out: the same bytes as one process with the same --threads.\n"
    "\n"
    "  --model DIR            model folder (config.json, model.safetensors, tokenizer.json)\n"
    "  --data FILE            prepared data (ecr prepare) with the model's tokenizer\n"
    "  --text FILE            raw UTF-8 texts instead: one text per line (row i is line i; the\n"
    "                         newline, and a CR before it, are not part of the text), or JSONL\n"
    "                         with a \"text\" field (as ecr prepare reads it: blank lines skipped,\n"
    "                         row i is the i-th object). '-' reads standard input (one process\n"
    "                         only: under mpirun give a file). An empty line is an error (exit 2,\n"
    "                         \"FILE:LINE: empty line\"), not a row: an empty text has no tokens\n"
    "                         to average, and skipping it would shift every later row against\n"
    "                         its line; so is invalid UTF-8 (\"FILE:LINE: invalid UTF-8 at byte\n"
    "                         B\") and a NUL byte. A line of spaces is a text\n"
    "  --text-format F        lines or jsonl (default: jsonl when FILE ends in .jsonl, else lines)\n"
    "  --out FILE             the output; '-' is stdout (--format tsv only)\n"
    "  --format F             npy (default: <f4, n_texts x D or x dim) or tsv: one line per\n"
    "                         text, its values tab-separated (%.9g: they read back as the same\n"
    "                         float32 values)\n"
    "  --raw                  the pooled hidden state h instead of the projection u\n"
    "  --threads N            threads (default: all cores)\n"
    CLI_PRECISION_HELP
    "  --batch-tokens N       token slots per forward pass (default 1024)\n"
    "  --seq-len T            row length (default: the model's max_seq_len); longer texts are\n"
    "                         embedded from their first T-1 tokens\n"
    "  --quiet                no progress on stderr\n"
    "\n"
    "Exit status: 0 done, 1 runtime failure (unreadable files, an output that cannot be\n"
    "written: checked before the model runs), 2 bad usage or bad input (malformed files, a\n"
    "folder that is not a Llama model of ecr's layout, data prepared with another tokenizer\n"
    "or vocabulary, an empty line or invalid UTF-8 in --text: the line is named).\n";

/* The data must come from the model folder's tokenizer (when both say which). */
static ecr_status check_tokenizer(const char *dir, const char *data_path, const ecr_data *d) {
    const char *want = ecr_st_meta(d->file, "tokenizer_hash");
    char *path = ecr_path_join(dir, "tokenizer.json"), *text = NULL;
    size_t len = 0;
    if (!path) return ecr_fail(ECR_E_NOMEM, "embed: out of memory");
    ecr_status st = ECR_OK;
    if (want && ecr_file_exists(path) && !(st = ecr_read_file(path, &text, &len))) {
        char hash[17];
        ecr_hash_hex(text, len, hash);
        if (strcmp(hash, want) != 0)
            st = ecr_fail(ECR_E_INVALID, "%s: prepared with another tokenizer (hash %s) than %s (hash %s)",
                          data_path, want, path, hash);
    }
    free(text);
    free(path);
    return st;
}

/* --text: the texts of FILE ("-": stdin) in `fmt`. */
static ecr_status read_texts(const char *path, ecr_text_format fmt, ecr_corpus **out) {
    if (!strcmp(path, "-")) return ecr_corpus_read_stream(stdin, "<stdin>", fmt, out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    ecr_status st = ecr_corpus_read_stream(fp, path, fmt, out);
    fclose(fp);
    return st;
}

/* --format tsv: rows x cols as text lines to `out` ("-": stdout), atomically. */
static ecr_status write_tsv(const char *out, const float *x, int64_t rows, int64_t cols) {
    ecr_atomic_file af = {0};
    FILE *fp = stdout;
    if (strcmp(out, "-") != 0) {
        ecr_status st = ecr_atomic_open(&af, out);
        if (st) return st;
        fp = af.fp;
    }
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            fprintf(fp, "%.9g%c", (double)x[i * cols + j], j + 1 < cols ? '\t' : '\n');
    if (fp != stdout) return ecr_atomic_commit(&af);
    if (fflush(stdout) != 0 || ferror(stdout))
        return ecr_fail(ECR_E_IO, "<stdout>: write failed: %s", strerror(errno));
    return ECR_OK;
}

/* An unwritable --out fails before the model runs ("-" is stdout). */
static ecr_status check_out(const char *out) {
    return strcmp(out, "-") != 0 ? ecr_atomic_check(out) : ECR_OK;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

int cmd_embed(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr embed", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    ecr_embed_opts o;
    ecr_embed_opts_default(&o);
    const char *dir = cli_require(&a, "--model");
    const char *data = cli_str(&a, "--data", NULL);
    const char *text = cli_str(&a, "--text", NULL);
    const char *text_format = cli_str(&a, "--text-format", NULL);
    const char *format = cli_str(&a, "--format", "npy");
    const char *out = cli_require(&a, "--out");
    o.raw = cli_flag(&a, "--raw");
    int threads = (int)cli_int(&a, "--threads", 0, 0, 4096);
    ecr_precision prec;
    cli_precision(&a, &prec);
    o.tokens_per_batch = cli_int(&a, "--batch-tokens", o.tokens_per_batch, 2, 1LL << 30);
    o.seq_len = (int)cli_int(&a, "--seq-len", 0, 2, 1 << 20);
    o.quiet = cli_flag(&a, "--quiet") || cli_comm_rank() > 0; /* under mpirun, rank 0 reports */
    o.comm = cli_comm();
    if (!cli_finish(&a)) { cli_args_free(&a); return 2; }
    cli_args_free(&a);
    const char *why = NULL;
    if (a.npos > 0) {
        fprintf(stderr, "ecr embed: unexpected argument '%s' (see --help)\n", a.pos[0]);
        return 2;
    }
    int tsv = !strcmp(format, "tsv");
    ecr_text_format tf = text && ends_with(text, ".jsonl") ? ECR_TEXT_JSONL : ECR_TEXT_LINES;
    if (!data == !text) why = "give either --data or --text";
    else if (!tsv && strcmp(format, "npy") != 0) why = "--format: expected npy or tsv";
    else if (text_format && !text) why = "--text-format goes with --text";
    else if (text_format && !strcmp(text_format, "jsonl")) tf = ECR_TEXT_JSONL;
    else if (text_format && !strcmp(text_format, "lines")) tf = ECR_TEXT_LINES;
    else if (text_format) why = "--text-format: expected lines or jsonl";
    if (!why && !tsv && !strcmp(out, "-")) why = "--out -: only with --format tsv (a .npy is binary)";
    if (!why && text && !strcmp(text, "-") && o.comm && o.comm->size > 1)
        why = "--text -: under mpirun only the first process reads standard input; give a file";
    if (why) {
        fprintf(stderr, "ecr embed: %s (see --help)\n", why);
        return 2;
    }
    ecr_set_threads(threads);
    ecr_model *m = NULL;
    ecr_data *d = NULL;
    ecr_corpus *texts = NULL;
    ecr_tokenizer *tok = NULL;
    float *emb = NULL;
    int64_t cols = 0;
    int projected = 0;
    int rank0 = cli_comm_rank() == 0;
    ecr_status st = rank0 ? check_out(out) : ECR_OK;
    if (!st && data) st = ecr_data_open(data, &d);
    if (!st) st = ecr_model_load(dir, &m);
    if (!st && data) st = check_tokenizer(dir, data, d);
    if (!st && text) {
        char *tok_path = ecr_path_join(dir, "tokenizer.json");
        st = tok_path ? ecr_tokenizer_load(tok_path, &tok) : ecr_fail(ECR_E_NOMEM, "embed: out of memory");
        free(tok_path);
        if (!st) st = read_texts(text, tf, &texts);
    }
    if (!st) st = cli_set_precision(m, prec, "embed", o.quiet);
    if (!st && !o.quiet && o.raw && ecr_model_find_tensor(m, "ecr.proj.weight"))
        fprintf(stderr, "embed: --raw: writing the pooled hidden state h (dim %d), not the projection\n",
                ecr_model_config(m)->dim);
    if (!st && !o.quiet && !o.raw && !ecr_model_find_tensor(m, "ecr.proj.weight"))
        fprintf(stderr, "embed: %s has no ECR projection; writing the pooled hidden state h (dim %d)\n", dir,
                ecr_model_config(m)->dim);
    size_t n = d ? d->n_texts : texts ? texts->n : 0;
    double t0 = ecr_now();
    if (!st && d) st = ecr_embed(m, d, &o, &emb, &cols, &projected);
    if (!st && texts) {
        st = ecr_embed_texts(m, tok, (const char *const *)texts->text, NULL, n, &o, &emb, &cols, &projected);
        if (st == ECR_E_INVALID && !strncmp(ecr_last_error(), "text ", 5))
            st = ecr_fail(st, "%s: %s", strcmp(text, "-") ? text : "<stdin>", ecr_last_error());
    }
    double dt = ecr_now() - t0;
    if (!st && rank0)
        st = tsv ? write_tsv(out, emb, (int64_t)n, cols) : ecr_npy_write(out, emb, (int64_t)n, cols);
    if (!st && !o.quiet)
        fprintf(stderr, "embed: %zu texts x %lld (%s) in %.2f s, %.0f texts/s -> %s\n", n, (long long)cols,
                projected ? "u, ECR projection" : "h, pooled", dt, dt > 0 ? (double)n / dt : 0.0,
                strcmp(out, "-") ? out : "<stdout>");
    free(emb);
    ecr_model_free(m);
    ecr_data_free(d);
    ecr_corpus_free(texts);
    ecr_tokenizer_free(tok);
    return st ? cli_fail(st) : 0;
}
