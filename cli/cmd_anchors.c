/* cmd_anchors.c — `ecr anchors`: spherical k-means over embeddings -> anchors.safetensors. */
#include "cli.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: ecr anchors --emb EMB.npy --out ANCHORS.safetensors [--k 256] [--soft M]\n"
    "                   [--seed S] [--iters 25] [--restarts 3] [--tau 0.05] [--threads N]\n"
    "                   [--data DATA.safetensors] [--quiet]\n"
    "       ecr anchors --control shuffle-codes|random-anchors --from ANCHORS.safetensors\n"
    "                   --out CONTROL.safetensors [--seed S]\n"
    "\n"
    "Derives ECR's semantic anchors from teacher embeddings (one float32 row per text, in\n"
    "corpus order; from `ecr embed` or any model): rows are centred by their mean and\n"
    "L2-normalised, then clustered by spherical k-means (k-means++ seeding on the cosine\n"
    "distance, Lloyd iterations with centroids renormalised, an empty cluster split from the\n"
    "largest, best of --restarts by mean cosine). Writes the anchors [K, D], each text's code\n"
    "(its most similar anchor, uint16) and the mean, optionally the top-M soft codes. The\n"
    "result depends only on the data and the flags, not on --threads.\n"
    "\n"
    "  --emb FILE        embeddings .npy (<f4, N x D)\n"
    "  --out FILE        output anchors .safetensors (written atomically)\n"
    "  --k K             number of anchors, 1..65535 and at most N (default 256)\n"
    "  --soft M          also store the M most similar anchors and their cosines per text\n"
    "  --seed S          random seed (default 1)\n"
    "  --iters N         Lloyd iterations per restart (default 25; stops early when no row moves)\n"
    "  --restarts R      k-means++ restarts, the best kept (default 3)\n"
    "  --tau T           ECR temperature recorded for the trainer (default 0.05)\n"
    "  --threads N       threads (default: all cores)\n"
    "  --data FILE       prepared data the embeddings belong to: their row count must equal its\n"
    "                    number of texts\n"
    "  --quiet           no progress (objective per iteration) on stderr\n"
    "\n"
    "Ablation controls (anchors that keep the shape of --from but lose the teacher's\n"
    "information; metadata \"control\" says which):\n"
    "  --control shuffle-codes   the codes (and soft codes) permuted across texts by --seed\n"
    "  --control random-anchors  random unit anchors (from --seed), the codes kept, soft\n"
    "                            codes dropped\n"
    "  --from FILE               the anchors file to derive the control from\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input (unreadable .npy,\n"
    "K > N, rows that do not match --data)\n";

/* Fails with ECR_E_INVALID unless emb's row count equals data's n_texts. */
static ecr_status check_rows(const char *emb, int64_t rows, const char *data) {
    ecr_data *d;
    ecr_status st = ecr_data_open(data, &d);
    if (st) return st;
    size_t n = d->n_texts;
    ecr_data_free(d);
    if ((uint64_t)rows != (uint64_t)n)
        return ecr_fail(ECR_E_INVALID, "%s: %lld rows, but %s holds %zu texts (one row per text "
                        "expected)", emb, (long long)rows, data, n);
    return ECR_OK;
}

/* `ecr anchors --control KIND --from IN --out OUT [--seed S]`. */
static int control_main(const char *kind, const char *from, const char *out, uint64_t seed, int quiet) {
    ecr_anchors_control_kind k = !strcmp(kind, "shuffle-codes")    ? ECR_CONTROL_SHUFFLE_CODES
                                 : !strcmp(kind, "random-anchors") ? ECR_CONTROL_RANDOM_ANCHORS
                                                                   : 0;
    if (!k) {
        fprintf(stderr, "ecr anchors: --control '%s': expected shuffle-codes or random-anchors\n", kind);
        return 2;
    }
    ecr_anchors *an = NULL;
    ecr_status st = ecr_anchors_load(from, &an);
    if (!st) st = ecr_anchors_control(an, k, seed);
    if (!st) st = ecr_anchors_save(an, out);
    if (!st && !quiet)
        fprintf(stderr, "ecr anchors: control %s of %s (%d anchors, %lld codes, seed %llu) -> %s\n",
                an->control, from, an->k, (long long)an->rows, (unsigned long long)seed, out);
    ecr_anchors_free(an);
    return st ? cli_fail(st) : 0;
}

int cmd_anchors(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr anchors", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    ecr_anchors_opts o;
    ecr_anchors_opts_default(&o);
    const char *control = cli_str(&a, "--control", NULL);
    const char *from = control ? cli_require(&a, "--from") : NULL;
    const char *emb = control ? NULL : cli_require(&a, "--emb");
    const char *out = cli_require(&a, "--out");
    const char *data = cli_str(&a, "--data", NULL);
    o.k = (int)cli_int(&a, "--k", 256, 1, ECR_ANCHORS_MAX_K);
    o.soft = (int)cli_int(&a, "--soft", 0, 0, ECR_ANCHORS_MAX_K);
    o.seed = (uint64_t)cli_int(&a, "--seed", 1, 0, INT64_MAX);
    o.iters = (int)cli_int(&a, "--iters", 25, 0, 1000000);
    o.restarts = (int)cli_int(&a, "--restarts", 3, 1, 1000);
    o.tau = (float)cli_float(&a, "--tau", 0.05, 1e-6, 1e6);
    int threads = (int)cli_int(&a, "--threads", 0, 0, 1024);
    o.quiet = cli_flag(&a, "--quiet");
    int ok = cli_finish(&a);
    if (ok && a.npos > 0) {
        fprintf(stderr, "ecr anchors: unexpected argument '%s'\n", a.pos[0]);
        ok = 0;
    }
    if (ok && o.soft > o.k) {
        fprintf(stderr, "ecr anchors: --soft %d is more than --k %d\n", o.soft, o.k);
        ok = 0;
    }
    if (ok && control && (emb || data)) {
        fprintf(stderr, "ecr anchors: --control derives from --from; --emb and --data do not apply\n");
        ok = 0;
    }
    cli_args_free(&a);
    if (!ok) return 2;
    if (control) return control_main(control, from, out, o.seed, o.quiet);
    ecr_set_threads(threads);
    o.source = emb;

    double t0 = ecr_now();
    int64_t shape[ECR_MAX_DIMS];
    int ndim;
    ecr_status st = ecr_npy_info(emb, NULL, 0, NULL, &ndim, shape);
    if (!st && data) st = check_rows(emb, shape[0], data);
    float *x = NULL;
    int64_t rows = 0, cols = 0;
    if (!st) st = ecr_npy_read(emb, &x, &rows, &cols);
    if (st) { free(x); return cli_fail(st); }

    ecr_anchors *an = NULL;
    st = ecr_anchors_fit(x, rows, cols, &o, &an);
    free(x);
    if (!st) st = ecr_anchors_save(an, out);
    if (!st && !o.quiet)
        fprintf(stderr, "ecr anchors: %d anchors of %d dims from %lld rows, objective (mean cosine) "
                "%.6f, %s -> %s (%.1f s)\n", an->k, an->dim, (long long)an->rows, an->objective,
                o.soft ? "hard and soft codes" : "hard codes", out, ecr_now() - t0);
    ecr_anchors_free(an);
    return st ? cli_fail(st) : 0;
}
