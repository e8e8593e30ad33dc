/* report_md.c — `ecr report`: report.md (the runs, the three tables, P@1 per language,
 * the plots). */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- report.md --------------------------------------------------------------------------------- */

/* Markdown text with the characters that would break a table cell or start markup escaped. */
static void md_text(FILE *fp, const char *s) {
    for (; *s; s++) {
        if (strchr("\\|*`<>[]", *s)) fputc('\\', fp);
        fputc(*s == '\n' || *s == '\r' ? ' ' : *s, fp);
    }
}

/* `s` as inline code when it has no backtick or pipe, else escaped text. */
static void md_code(FILE *fp, const char *s) {
    if (strpbrk(s, "`|\n")) md_text(fp, s);
    else fprintf(fp, "`%s`", s);
}

static void md_files(FILE *fp, const run *u) {
    const char *sep = "";
#define FILE_ITEM(cond, name)   \
    if (cond) {                 \
        fprintf(fp, "%s%s", sep, name); \
        sep = ", ";             \
    }
    FILE_ITEM(u->has_run_json, "run.json")
    FILE_ITEM(!u->has_run_json && u->has_config, "config.json")
    FILE_ITEM(u->has_log, "log.jsonl")
    FILE_ITEM(u->has_eval, u->has_pca ? "eval.json (with pca)" : "eval.json")
#undef FILE_ITEM
}

static void md_runs(FILE *fp, const report *r) {
    fprintf(fp, "## Runs\n\n| run | size | method | tag | seed | steps | files |\n"
                "| --- | --- | --- | --- | ---: | ---: | --- |\n");
    for (int i = 0; i < r->n_groups; i++)
        for (int k = 0; k < r->groups[i].n; k++) {
            const run *u = rp_grun(r, &r->groups[i], k);
            long long steps = u->steps >= 0 ? u->steps : u->step.n ? (long long)u->step.v[u->step.n - 1] : -1;
            fputs("| ", fp);
            md_code(fp, u->dir);
            fputs(" | ", fp);
            md_text(fp, u->preset);
            fputs(" | ", fp);
            md_text(fp, u->method);
            fputs(" | ", fp);
            if (u->tag) md_text(fp, u->tag);
            else fputs(DASH, fp);
            fprintf(fp, " | %lld | ", u->seed);
            if (steps >= 0) fprintf(fp, "%lld", steps);
            else fputs(DASH, fp);
            fputs(" | ", fp);
            md_files(fp, u);
            fputs(" |\n", fp);
        }
    fputc('\n', fp);
    const char *sep = "Diverged (training stopped by a non-finite loss; the run's figures are those of its "
                      "log up to there): ";
    for (int i = 0; i < r->n_runs; i++) {
        if (!r->runs[i].diverged) continue;
        fputs(sep, fp);
        md_code(fp, r->runs[i].dir);
        fputs(" (", fp);
        md_text(fp, r->runs[i].diverged);
        fputs(")", fp);
        sep = ", ";
    }
    if (sep[0] != 'D') fputs(".\n\n", fp);
}

static void md_group_head(FILE *fp, const report *r, const group *g) {
    fputs("| ", fp);
    md_text(fp, g->preset);
    fputs(" | ", fp);
    md_text(fp, g->label);
    fprintf(fp, " | %d |", g->n);
    (void)r;
}

/* Values a run may take from log.jsonl instead of eval.json. */
enum { FL_LM, FL_ER_H, FL_ER_U, FL_STAB };

/* 1 if the run took value `which` from log.jsonl; *have: the run has the value at all. */
static int from_log(const run *u, int which, int *have) {
    switch (which) {
    case FL_LM:
        *have = isfinite(u->lm[L_BPB]) || isfinite(u->lm[L_LOSS]);
        return u->bpb_from_log || u->loss_from_log;
    case FL_ER_H:
    case FL_ER_U: {
        const geo_space *gs = &u->geo[which == FL_ER_H ? SP_H : SP_U];
        *have = isfinite(gs->m[G_ER]);
        return gs->er_from_log;
    }
    default:
        *have = isfinite(u->lm[L_SPIKES]) || isfinite(u->lm[L_GCV]) || isfinite(u->lm[L_CLIP]);
        return u->stab_from_log;
    }
}

/* "<what>all runs." when every run with the value took it from the log (and there are
 * several), else "<what>" and the list of those runs; nothing when none did. */
static void md_from_log(FILE *fp, const report *r, int which, const char *what) {
    int n = 0, have = 0, h;
    for (int i = 0; i < r->n_runs; i++) {
        n += from_log(&r->runs[i], which, &h);
        have += h;
    }
    if (n == 0) return;
    fputs(what, fp);
    if (n == have && n > 1) { fputs("all runs.\n", fp); return; }
    for (int i = 0, k = 0; i < r->n_groups; i++)
        for (int j = 0; j < r->groups[i].n; j++) {
            const run *u = rp_grun(r, &r->groups[i], j);
            if (!from_log(u, which, &h)) continue;
            fputs(k++ ? ", " : "", fp);
            md_code(fp, u->dir);
        }
    fputs(".\n", fp);
}

#define SUP1 "\xc2\xb9"   /* footnote marks */
#define SUP2 "\xc2\xb2"

/* Header and alignment rows of a per-group table: size, method/tag, seeds, then the
 * columns cols[0..n) with footnote marks marks[i] (NULL = none). */
static void md_table_head(FILE *fp, const table_col *cols, int n, const char *const *marks) {
    fputs("| size | method/tag | seeds |", fp);
    for (int m = 0; m < n; m++)
        fprintf(fp, " %s%s |", cols[m].head, marks && marks[m] ? marks[m] : "");
    fputs("\n| --- | --- | ---: |", fp);
    for (int m = 0; m < n; m++) fputs(" ---: |", fp);
    fputc('\n', fp);
}

/* One row: the group and its metrics 0..n-1 of space sp (SP_LM: the L_* metrics). */
static void md_metric_row(FILE *fp, const report *r, const group *g, int sp,
                          const table_col *cols, int n) {
    md_group_head(fp, r, g);
    for (int m = 0; m < n; m++) {
        double mean, sd;
        char cell[96];
        int k = rp_group_metric(r, g, sp, m, &mean, &sd);
        rp_fmt_cell(cell, sizeof cell, k, g->n, mean, sd, cols[m].prec);
        fprintf(fp, " %s |", cell);
    }
    fputc('\n', fp);
}

/* The line under a u table naming the groups left out (none of their runs has u). */
static void md_without_u(FILE *fp, const report *r) {
    int n = 0;
    for (int i = 0; i < r->n_groups; i++) {
        const group *g = &r->groups[i];
        if (rp_group_has_u(r, g)) continue;
        fputs(n++ ? ", " : "\nLeft out (no run of the group has u): ", fp);
        md_text(fp, g->preset);
        fputs(" \xc2\xb7 ", fp);
        md_text(fp, g->label);
    }
    if (n) fputs(".\n", fp);
}

static void md_lm(FILE *fp, const report *r) {
    static const char *const marks[L_N] = {NULL, NULL, SUP1, SUP1, SUP1, NULL};
    fputs("## Language model and stability\n\nThis table and the next ones have one row per "
          "group (size, method or tag); each cell is the mean" PM "sample std (n\xe2\x88\x92"
          "1) over the group's seeds, the mean alone for one seed, " DASH " when missing; "
          "\"(k of n)\": only k runs have the value.\n\n", fp);
    md_table_head(fp, lm_cols, L_N, marks);
    for (int i = 0; i < r->n_groups; i++)
        md_metric_row(fp, r, &r->groups[i], SP_LM, lm_cols, L_N);
    fputs("\nVal bits/byte and val loss (mean nats per target token) are eval.json's "
          "`lm.overall`. " SUP1 " Spikes per 1,000 steps (loss above the mean + 3 std of the "
          "previous 50 steps), the grad-norm coefficient of variation and the share of clipped "
          "steps are from its \"stability\" (`ecr eval --log`), else computed from "
          "log.jsonl. Train s/step: wall-clock seconds per training step, `elapsed_s / step` "
          "of the last step record of log.jsonl (validation passes included; it depends on "
          "the machine and what else ran on it).\n", fp);
    md_from_log(fp, r, FL_LM, "\nVal bits/byte and val loss from the last validation record of "
                              "log.jsonl (no eval.json value): ");
    md_from_log(fp, r, FL_STAB, "\nStability computed from log.jsonl: ");
    fputc('\n', fp);
}

static void md_geometry_h(FILE *fp, const report *r) {
    static const char *const marks[G_N] = {NULL, NULL, NULL, NULL, NULL, SUP1, SUP1, NULL};
    fputs("## Geometry of h (the pooled hidden state; every model has it)\n\n", fp);
    md_table_head(fp, geo_cols, G_AGREE, marks);
    for (int i = 0; i < r->n_groups; i++)
        md_metric_row(fp, r, &r->groups[i], SP_H, geo_cols, G_AGREE);
    fputs("\nFrom eval.json's `geometry.h`. P@1: cross-lingual retrieval of the translation "
          "with English (both directions), mean over languages; label transfer: 10-NN "
          "classifier fitted on English, tested on the other languages; silhouette by label "
          "(cosine). " SUP1 " Against the teacher's embeddings (`ecr eval --teacher-emb`).\n",
          fp);
    md_from_log(fp, r, FL_ER_H, "\nEff. rank from the last validation record of log.jsonl "
                                "(val_eff_rank): ");
    fputc('\n', fp);
}

static void md_geometry_u(FILE *fp, const report *r) {
    static const char *const marks[G_N] = {NULL, NULL, NULL, NULL, NULL, SUP1, SUP1, SUP2};
    fputs("## Geometry of u (the projection P h / \xe2\x80\x96P h\xe2\x80\x96; models trained "
          "with ECR, feat or rkd)\n\n", fp);
    if (!rp_any_u(r)) {
        fputs("No run has u: none of the models has a projection.\n\n", fp);
        return;
    }
    md_table_head(fp, geo_cols, G_N, marks);
    for (int i = 0; i < r->n_groups; i++)
        if (rp_group_has_u(r, &r->groups[i]))
            md_metric_row(fp, r, &r->groups[i], SP_U, geo_cols, G_N);
    md_without_u(fp, r);
    fputs("\nFrom eval.json's `geometry.u`, same definitions as for h. " SUP1 " Against the "
          "teacher's embeddings (`ecr eval --teacher-emb`). " SUP2 " Share of texts whose "
          "nearest anchor under u is the teacher's code (`ecr eval --anchors`).\n", fp);
    md_from_log(fp, r, FL_ER_U, "\nEff. rank from the last validation record of log.jsonl "
                                "(val_eff_rank_u): ");
    fputc('\n', fp);
}

/* P@1 per language on space sp: every group (h) or the groups with u. */
static void md_p1(FILE *fp, const report *r, int sp) {
    const char *langs[64];
    int nl = rp_p1_langs(r, 0, r->n_groups, sp, langs, 64);
    fprintf(fp, "## Cross-lingual P@1 per language on %c\n\n", space_name[sp]);
    if (sp == SP_U && !rp_any_u(r)) {
        fputs("No run has u: none of the models has a projection.\n\n", fp);
        return;
    }
    if (nl == 0) {
        fprintf(fp, "No eval.json has P@1 per language on %c.\n\n", space_name[sp]);
        return;
    }
    fprintf(fp, "P@1 of retrieving the translation between English and each language (both "
                "directions) on %c, from eval.json's `geometry.%c.p1`; mean" PM "std over "
                "seeds.\n\n| size | method/tag | seeds |", space_name[sp], space_name[sp]);
    for (int l = 0; l < nl; l++) {
        fputc(' ', fp);
        md_text(fp, langs[l]);
        fputs(" |", fp);
    }
    fputs(" mean |\n| --- | --- | ---: |", fp);
    for (int l = 0; l <= nl; l++) fputs(" ---: |", fp);
    fputc('\n', fp);
    for (int i = 0; i < r->n_groups; i++) {
        const group *g = &r->groups[i];
        if (sp == SP_U && !rp_group_has_u(r, g)) continue;
        md_group_head(fp, r, g);
        for (int l = 0; l <= nl; l++) {
            double mean, sd;
            char cell[96];
            int k = l < nl ? rp_group_p1_lang(r, g, sp, langs[l], &mean, &sd)
                           : rp_group_metric(r, g, sp, G_P1, &mean, &sd);
            rp_fmt_cell(cell, sizeof cell, k, g->n, mean, sd, 3);
            fprintf(fp, " %s |", cell);
        }
        fputc('\n', fp);
    }
    if (sp == SP_U) md_without_u(fp, r);
    fputc('\n', fp);
}

static void md_plots(FILE *fp, const report *r) {
    static const struct { const char *file, *alt; } plots[] = {
        {"loss_train.svg", "Training loss vs step"},
        {"loss_valid.svg", "Validation loss vs step"},
        {"eff_rank.svg", "Effective rank vs step"},
        {"p1_steps.svg", "P@1 on h vs step"},
        {"p1_bars.svg", "P@1 per language on h"},
        {"p1_bars_u.svg", "P@1 per language on u"},
        {"tradeoff.svg", "Validation bits/byte vs P@1 on h"},
        {"tradeoff_u.svg", "Validation bits/byte vs P@1 on u"},
        {"pca_lang.svg", "PCA of the embeddings by language"},
        {"pca_label.svg", "PCA of the embeddings by label"},
    };
    fputs("## Plots\n\n", fp);
    for (size_t i = 0; i < sizeof plots / sizeof plots[0]; i++)
        for (int k = 0; k < r->n_written; k++)
            if (!strcmp(r->written[k], plots[i].file))
                fprintf(fp, "![%s](%s)\n\n", plots[i].alt, plots[i].file);
    for (int k = 0; k < r->n_skipped; k++)
        fprintf(fp, "%s%s\n", k ? "- " : "Not drawn:\n\n- ", r->skipped[k]);
    if (r->n_skipped) fputc('\n', fp);
}

ecr_status rp_write_markdown(report *r) {
    ecr_atomic_file af;
    ecr_status st = rp_out_open(r, "report.md", &af);
    if (st) return st;
    FILE *fp = af.fp;
    fputs("# ", fp);
    md_text(fp, r->title);
    fprintf(fp, "\n\n%d run%s in %d group%s, written by `ecr report`.\n\n", r->n_runs,
            r->n_runs == 1 ? "" : "s", r->n_groups, r->n_groups == 1 ? "" : "s");
    md_runs(fp, r);
    md_lm(fp, r);
    md_geometry_h(fp, r);
    md_geometry_u(fp, r);
    for (int sp = 0; sp < SP_N; sp++) md_p1(fp, r, sp);
    md_plots(fp, r);
    return rp_out_commit(r, "report.md", &af);
}
