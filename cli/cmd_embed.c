/* cmd_embed.c — `ecr embed`: text embeddings of prepared data -> .npy. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: ecr embed --model MODEL_DIR --data DATA.safetensors --out EMB.npy [--raw]\n"
    "                 [--threads N] [--precision P] [--batch-tokens N] [--seq-len T]\n"
    "                 [--quiet]\n"
    "\n"
    "Writes one float32 row per text of the prepared data, in file order, to a .npy file\n"
    "(written atomically). By default the row is u = P h / |P h|, the text's embedding\n"
    "through the model's ECR projection (in the anchors' space, comparable with the\n"
    "teacher's); with --raw, or when the model has no projection, it is h, the mean of the\n"
    "final-norm output over the text's tokens. Texts/s on stderr. Under `mpirun -np N` the\n"
    "batches are shared among the processes and the first one writes --out: the same bytes\n"
    "as one process with the same --threads.\n"
    "\n"
    "  --model DIR            model folder (config.json, model.safetensors, tokenizer.json)\n"
    "  --data FILE            prepared data (ecr prepare) with the model's tokenizer\n"
    "  --out FILE             output .npy (<f4, n_texts x D or x dim)\n"
    "  --raw                  the pooled hidden state h instead of the projection u\n"
    "  --threads N            threads (default: all cores)\n"
    CLI_PRECISION_HELP
    "  --batch-tokens N       token slots per forward pass (default 4096)\n"
    "  --seq-len T            row length (default: the model's max_seq_len); longer texts are\n"
    "                         embedded from their first T-1 tokens\n"
    "  --quiet                no progress on stderr\n"
    "\n"
    "Exit status: 0 done, 1 runtime failure (e.g. unreadable files), 2 bad usage or bad\n"
    "input (malformed files, data prepared with another tokenizer or vocabulary).\n";

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

int cmd_embed(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr embed", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    ecr_embed_opts o;
    ecr_embed_opts_default(&o);
    const char *dir = cli_require(&a, "--model");
    const char *data = cli_require(&a, "--data");
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
    if (a.npos > 0) {
        fprintf(stderr, "ecr embed: unexpected argument '%s' (see --help)\n", a.pos[0]);
        return 2;
    }
    ecr_set_threads(threads);
    ecr_model *m = NULL;
    ecr_data *d = NULL;
    float *emb = NULL;
    int64_t cols = 0;
    int projected = 0;
    ecr_status st = ecr_data_open(data, &d);
    if (!st) st = ecr_model_load(dir, &m);
    if (!st) st = check_tokenizer(dir, data, d);
    if (!st) st = cli_set_precision(m, prec, "embed", o.quiet);
    if (!st && !o.quiet && o.raw && ecr_model_find_tensor(m, "ecr.proj.weight"))
        fprintf(stderr, "embed: --raw: writing the pooled hidden state h (dim %d), not the projection\n",
                ecr_model_config(m)->dim);
    if (!st && !o.quiet && !o.raw && !ecr_model_find_tensor(m, "ecr.proj.weight"))
        fprintf(stderr, "embed: %s has no ECR projection; writing the pooled hidden state h (dim %d)\n", dir,
                ecr_model_config(m)->dim);
    double t0 = ecr_now();
    if (!st) st = ecr_embed(m, d, &o, &emb, &cols, &projected);
    double dt = ecr_now() - t0;
    if (!st && cli_comm_rank() == 0) st = ecr_npy_write(out, emb, (int64_t)d->n_texts, cols);
    if (!st && !o.quiet)
        fprintf(stderr, "embed: %zu texts x %lld (%s) in %.2f s, %.0f texts/s -> %s\n", d->n_texts,
                (long long)cols, projected ? "u, ECR projection" : "h, pooled", dt,
                dt > 0 ? (double)d->n_texts / dt : 0.0, out);
    free(emb);
    ecr_model_free(m);
    ecr_data_free(d);
    return st ? cli_fail(st) : 0;
}
