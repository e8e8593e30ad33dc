/* cmd_report.c — `ecr report RUN_DIR... --out REPORT_DIR`: a Markdown report and SVG plots
 * comparing finished runs (folders of `ecr train --out`, after `ecr eval --json RUN/eval.json`).
 *
 * Inputs of a run, each optional (a run needs run.json or eval.json):
 *   run.json    {"preset", "tag" (string or null), "method", "seed", "steps", ...}
 *               (cli/cmd_train.c); "diverged" (a string: why training stopped; written by
 *               scripts/experiment.sh for a run stopped by a non-finite loss) is listed under
 *               the runs; without run.json the preset is "LxD" from config.json
 *   log.jsonl   step records {"step", "loss", "grad_norm", "clipped", ...} and validation
 *               records {"step", "val_loss", "val_bpb", "val_eff_rank", "val_eff_rank_u"}
 *   eval.json   the schema at the top of cli/cmd_eval.c, plus "pca": {"space", "texts",
 *               "explained": [s1, s2], "x": [n], "y": [n], "lang": [n], "label": [n],
 *               "langs": [...], "labels": [...]} (lang/label index langs/labels)
 * Group = (preset, tag if non-null else method); a group's seeds are aggregated as mean and
 * sample std (n - 1). The geometry of h (every model) and of u (models with a projection:
 * eval.json "geometry.u" non-null, or val_eff_rank_u in the log) are kept apart: one table
 * and one set of P@1 plots per space, so every row of a table is measured in the same
 * space. Every input is read and checked before REPORT_DIR is created, so bad input
 * (exit 2) writes nothing. Each output is atomic; numbers are printed with fixed precision,
 * so the same inputs give byte-identical files.
 * Plot primitives: cli/svg.c. */
#include "report.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *usage =
    "usage: ecr report RUN_DIR... --out REPORT_DIR [--title TEXT] [--quiet]\n"
    "\n"
    "Tables and SVG plots comparing finished runs (up to 64 RUN_DIRs). A RUN_DIR is the\n"
    "folder of `ecr train --out` after `ecr eval ... --json RUN_DIR/eval.json`; it is only\n"
    "read.\n"
    "\n"
    "Inputs of each RUN_DIR (all optional, but a run needs run.json or eval.json):\n"
    "  run.json     from ecr train: preset, tag, method, seed, steps (and \"diverged\", why a\n"
    "               run stopped, listed under the runs table). Without it the size is\n"
    "               \"LxD\" (layers x width) from config.json, the method \"?\", the seed 0\n"
    "  log.jsonl    training log: step records (loss, grad_norm, clipped) and validation\n"
    "               records (val_loss, val_bpb, val_eff_rank, val_eff_rank_u); unknown fields\n"
    "               are ignored and a truncated last line is skipped with a warning\n"
    "  eval.json    ecr eval --json: loss and bits/byte, geometry of h and u, \"stability\"\n"
    "               (eval --log), \"pca\" (2-D PCA of the evaluated texts' embeddings, for\n"
    "               the scatter plots)\n"
    "A missing piece leaves the run out of the plots that need it (one line on stderr).\n"
    "Runs without eval.json take val loss, val bits/byte and the effective ranks from their\n"
    "last validation record; runs without \"stability\" get spikes, grad-norm CV and the\n"
    "clipped share from log.jsonl; the seconds per training step always come from it.\n"
    "\n"
    "Grouping: runs with the same size (preset) and label (the --tag given to ecr train,\n"
    "else the method: none, kd, feat, rkd, ecr, ecr+kd, ...) form a group; its seeds are\n"
    "aggregated as mean ± sample std (n-1). Order: tiny, small, base, other sizes A-Z; then\n"
    "none, kd, feat, rkd, ecr, ecr+kd, other labels A-Z. Spaces are never mixed: h (the\n"
    "pooled hidden state) exists for every model; u (the projection P h / |P h|) only for\n"
    "models trained with ECR, feat or rkd (eval.json \"geometry.u\", or val_eff_rank_u).\n"
    "\n"
    "Outputs in REPORT_DIR (created if needed; every file written atomically):\n"
    "  report.md       the runs, then tables with one row per group: language model and\n"
    "                  stability (val bits/byte, val loss, spikes per 1k steps, grad-norm\n"
    "                  CV, clipped share, train s/step); geometry of h (eff. rank,\n"
    "                  anisotropy, P@1, label transfer, silhouette, CKA, kNN@10; every\n"
    "                  group); geometry of u (the same and anchor agreement; groups with u\n"
    "                  only); P@1 per language on h and on u; the plots\n"
    "  loss_train.svg  training loss (LM term, moving average over 2% of the steps, mean\n"
    "                  over seeds) vs step\n"
    "  loss_valid.svg  validation loss vs step\n"
    "  eff_rank.svg    validation effective rank (val_eff_rank_u, else val_eff_rank) vs step\n"
    "  p1_steps.svg    validation P@1 on h (val_p1) vs step (not written when no run logs it)\n"
    "  pca_lang.svg    2-D PCA scatter of each group's first seed (up to 12), by language\n"
    "  pca_label.svg   the same, coloured by label\n"
    "  p1_bars.svg     cross-lingual P@1 on h per language and group, error bars ± std\n"
    "  p1_bars_u.svg   the same on u, groups with u (not written when no run has u)\n"
    "  tradeoff.svg    val bits/byte vs mean P@1 on h per group (e.g. an ECR weight sweep)\n"
    "  tradeoff_u.svg  val bits/byte vs mean P@1 on u, groups with u\n"
    "Line, bar and trade-off plots have one panel per size. A plot without data is not\n"
    "written (stderr says so). The path of each file written is printed on stdout.\n"
    "\n"
    "  --out DIR       report folder\n"
    "  --title TEXT    title of report.md (default \"ecr report\")\n"
    "  --quiet         no progress on stderr (warnings still appear)\n"
    "\n"
    "exit status: 0 success, 1 runtime failure (REPORT_DIR not writable), 2 bad usage or bad\n"
    "input (no RUN_DIR, a folder with neither run.json nor eval.json, malformed JSON or a\n"
    "field of the wrong type: the message names the file and place; nothing is written)\n";

/* ---- command ---------------------------------------------------------------------------------- */

static ecr_status load_runs(report *r, const char *const *dirs, int n) {
    r->runs = calloc((size_t)n, sizeof *r->runs);
    if (!r->runs) return ecr_fail(ECR_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        r->n_runs = i + 1;
        ecr_status st = rp_load_run(&r->runs[i], dirs[i]);
        if (st) return st;
    }
    return ECR_OK;
}

static ecr_status write_report(report *r) {
    ecr_status st = ecr_make_dirs(r->out_dir);
    for (int k = 0; k < S_N && !st; k++) st = rp_plot_steps(r, k);
    for (int sp = 0; sp < SP_N && !st; sp++) st = rp_plot_p1_bars(r, sp);
    for (int sp = 0; sp < SP_N && !st; sp++) st = rp_plot_tradeoff(r, sp);
    for (int k = 0; k < 2 && !st; k++) st = rp_plot_pca(r, k);
    if (!st) st = rp_write_markdown(r);
    return st;
}

static void report_free(report *r) {
    for (int i = 0; i < r->n_runs; i++) rp_run_free(&r->runs[i]);
    free(r->runs);
    if (r->n_groups) free(r->groups[0].runs);
    free(r->groups);
    free(r->labels);
}

int cmd_report(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr report", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    report r = {0};
    r.out_dir = cli_require(&a, "--out");
    r.title = cli_str(&a, "--title", "ecr report");
    r.quiet = cli_flag(&a, "--quiet");
    int ok = cli_finish(&a);
    if (ok && a.npos == 0) {
        fprintf(stderr, "ecr report: no RUN_DIR given (see --help)\n");
        ok = 0;
    }
    if (!ok) { cli_args_free(&a); return 2; }
    ecr_status st = load_runs(&r, a.pos, a.npos);
    if (!st) st = rp_make_groups(&r);
    if (!st) rp_warn_runs(&r);
    if (!st && !r.quiet)
        fprintf(stderr, "ecr report: %d run%s in %d group%s -> %s\n", r.n_runs,
                r.n_runs == 1 ? "" : "s", r.n_groups, r.n_groups == 1 ? "" : "s", r.out_dir);
    if (!st) st = write_report(&r);
    report_free(&r);
    cli_args_free(&a);
    return st ? cli_fail(st) : 0;
}
