/* cmd_eval.c — `ecr eval`: metrics of a model folder on prepared data.
 *
 * JSON written by --json:
 *   {"model": DIR, "data": FILE,
 *    "lm": {"overall": STATS, "per_lang": {"en": STATS, ...}, "truncated_texts": N, "seq_len": T}}
 *   STATS = {"loss": mean nats per target token, "ppl": exp(loss),
 *            "bpb": summed nats / ln 2 / UTF-8 bytes, "tokens", "bytes", "texts"}
 * Other sections (geometry) are added beside "lm" by their own functions. */
#include "cli.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: ecr eval --model MODEL_DIR --data DATA.safetensors [--json OUT.json]\n"
    "\n"
    "Language-model metrics of the model on every text of the prepared data, per language\n"
    "and overall: mean token loss (nats, including each text's closing end-of-text token),\n"
    "perplexity and bits per byte. A table goes to stdout; --json writes the numbers.\n"
    "\n"
    "  --model DIR            model folder\n"
    "  --data FILE            prepared data (ecr prepare) with the model's tokenizer\n"
    "  --json FILE            also write the metrics as JSON\n"
    "  --seq-len T            row length (default: the model's max_seq_len); longer texts are\n"
    "                         truncated\n"
    "  --tokens-per-batch N   token slots per forward pass (default 4096)\n"
    "  --threads N            threads (default: all cores)\n"
    "  --quiet                no progress on stderr\n";

static cJSON *stats_json(const ecr_lm_stats *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "loss", ecr_lm_loss(s));
    cJSON_AddNumberToObject(j, "ppl", ecr_lm_ppl(s));
    cJSON_AddNumberToObject(j, "bpb", ecr_lm_bpb(s));
    cJSON_AddNumberToObject(j, "tokens", (double)s->tokens);
    cJSON_AddNumberToObject(j, "bytes", (double)s->bytes);
    cJSON_AddNumberToObject(j, "texts", (double)s->texts);
    return j;
}

static void table_row(const char *name, const ecr_lm_stats *s) {
    printf("%-10s %8lld %10lld %11lld %8.4f %10.2f %9.4f\n", name, (long long)s->texts,
           (long long)s->tokens, (long long)s->bytes, ecr_lm_loss(s), ecr_lm_ppl(s), ecr_lm_bpb(s));
}

/* The "lm" section: evaluates, prints the table, returns the JSON object (or NULL). */
static ecr_status lm_section(ecr_model *m, const ecr_data *d, int seq_len, int64_t tpb, int quiet,
                             cJSON **out) {
    ecr_lm_eval ev;
    ecr_status st = ecr_eval_lm(m, d, seq_len, tpb, quiet, &ev);
    if (st) return st;
    int T = seq_len > 0 ? seq_len : ecr_model_config(m)->max_seq_len;
    printf("language model (%zu texts, rows of %d tokens)\n", d->n_texts, T);
    printf("%-10s %8s %10s %11s %8s %10s %9s\n", "lang", "texts", "tokens", "bytes", "loss", "ppl",
           "bits/byte");
    cJSON *lm = cJSON_CreateObject(), *per = cJSON_CreateObject();
    for (int i = 0; i < ev.n_langs; i++) {
        if (ev.per_lang[i].texts == 0) continue;
        table_row(d->langs[i], &ev.per_lang[i]);
        cJSON_AddItemToObject(per, d->langs[i], stats_json(&ev.per_lang[i]));
    }
    table_row("all", &ev.overall);
    if (ev.n_truncated > 0)
        printf("(%lld texts longer than %d tokens were truncated; their bytes are counted in "
               "proportion)\n", (long long)ev.n_truncated, T - 1);
    cJSON_AddItemToObject(lm, "overall", stats_json(&ev.overall));
    cJSON_AddItemToObject(lm, "per_lang", per);
    cJSON_AddNumberToObject(lm, "truncated_texts", (double)ev.n_truncated);
    cJSON_AddNumberToObject(lm, "seq_len", T);
    ecr_lm_eval_release(&ev);
    *out = lm;
    return ECR_OK;
}

static ecr_status write_json(const char *path, cJSON *root) {
    char *text = cJSON_Print(root);
    if (!text) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    ecr_atomic_file af;
    ecr_status st = ecr_atomic_open(&af, path);
    if (!st) {
        fputs(text, af.fp);
        fputc('\n', af.fp);
        st = ecr_atomic_commit(&af);
    }
    free(text);
    return st;
}

int cmd_eval(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr eval", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    const char *dir = cli_require(&a, "--model");
    const char *data = cli_require(&a, "--data");
    const char *json = cli_str(&a, "--json", NULL);
    int seq_len = (int)cli_int(&a, "--seq-len", 0, 2, 1 << 20);
    int64_t tpb = cli_int(&a, "--tokens-per-batch", 4096, 2, 1LL << 30);
    int threads = (int)cli_int(&a, "--threads", 0, 0, 4096);
    int quiet = cli_flag(&a, "--quiet");
    if (!cli_finish(&a)) { cli_args_free(&a); return 2; }
    cli_args_free(&a);
    if (a.npos > 0) {
        fprintf(stderr, "ecr eval: unexpected argument '%s' (see --help)\n", a.pos[0]);
        return 2;
    }
    ecr_set_threads(threads);

    ecr_model *m = NULL;
    ecr_data *d = NULL;
    cJSON *root = cJSON_CreateObject(), *lm = NULL;
    ecr_status st = ecr_data_open(data, &d);
    if (!st) st = ecr_model_load(dir, &m);
    if (!st) st = lm_section(m, d, seq_len, tpb, quiet, &lm);
    if (!st) {
        cJSON_AddStringToObject(root, "model", dir);
        cJSON_AddStringToObject(root, "data", data);
        cJSON_AddItemToObject(root, "lm", lm);
        if (json) st = write_json(json, root);
    }
    cJSON_Delete(root);
    ecr_model_free(m);
    ecr_data_free(d);
    return st ? cli_fail(st) : 0;
}
