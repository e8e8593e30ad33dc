/* report_group.c — `ecr report`: runs into groups (preset, label) in report order, the
 * statistics of a group (mean and sample std over seeds), and the output files. */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const table_col lm_cols[L_N] = {
    {"val bits/byte", 3}, {"val loss", 3}, {"spikes/1k steps", 2}, {"grad-norm CV", 3},
    {"clipped share", 3}, {"train s/step", 3},
};
const table_col geo_cols[G_N] = {
    {"eff. rank", 1}, {"anisotropy", 3}, {"P@1 mean", 3}, {"label transfer", 3},
    {"silhouette", 3}, {"CKA", 3}, {"kNN@10", 3}, {"anchor agreement", 3},
};
const char space_name[SP_N] = {'h', 'u'};

/* ---- groups ------------------------------------------------------------------------------- */

static int preset_rank(const char *p) {
    static const char *order[] = {"tiny", "small", "base"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(p, order[i])) return i;
    return 3;
}

/* none, the single-term methods, combinations, then tags (ecr_train_method_rank). */
static int label_rank(const char *l) {
    int r = ecr_train_method_rank(l);
    return r < 0 ? 1 << 20 : r;
}

static int cmp_label(const char *a, const char *b) {
    int ra = label_rank(a), rb = label_rank(b);
    return ra != rb ? ra - rb : strcmp(a, b);
}

static int cmp_preset(const char *a, const char *b) {
    int ra = preset_rank(a), rb = preset_rank(b);
    return ra != rb ? ra - rb : strcmp(a, b);
}

static const run *g_sort_runs;   /* qsort context (single-threaded CLI) */

static int cmp_run_idx(const void *pa, const void *pb) {
    const run *a = &g_sort_runs[*(const int *)pa], *b = &g_sort_runs[*(const int *)pb];
    int c = cmp_preset(a->preset, b->preset);
    if (!c) c = cmp_label(a->label, b->label);
    if (!c) c = a->seed < b->seed ? -1 : a->seed > b->seed;
    if (!c) c = strcmp(a->dir, b->dir);
    if (!c) c = *(const int *)pa - *(const int *)pb;
    return c;
}

static int cmp_str_label(const void *a, const void *b) {
    return cmp_label(*(const char *const *)a, *(const char *const *)b);
}

/* Groups (preset, label) in report order; runs of a group by seed; colours by label. */
ecr_status rp_make_groups(report *r) {
    int *idx = malloc((size_t)r->n_runs * sizeof *idx);
    r->groups = calloc((size_t)r->n_runs, sizeof *r->groups);
    r->labels = calloc((size_t)r->n_runs, sizeof *r->labels);
    if (!idx || !r->groups || !r->labels) { free(idx); return ecr_fail(ECR_E_NOMEM, "out of memory"); }
    for (int i = 0; i < r->n_runs; i++) idx[i] = i;
    g_sort_runs = r->runs;
    qsort(idx, (size_t)r->n_runs, sizeof *idx, cmp_run_idx);
    for (int i = 0; i < r->n_runs; i++) {
        const run *u = &r->runs[idx[i]];
        group *g = r->n_groups ? &r->groups[r->n_groups - 1] : NULL;
        if (!g || strcmp(g->preset, u->preset) || strcmp(g->label, u->label)) {
            g = &r->groups[r->n_groups++];
            g->preset = u->preset, g->label = u->label, g->runs = idx + i;
        }
        g->n++;
    }
    for (int i = 0; i < r->n_groups; i++) {   /* distinct labels, in label order */
        int k = 0;
        while (k < r->n_labels && strcmp(r->labels[k], r->groups[i].label)) k++;
        if (k == r->n_labels) r->labels[r->n_labels++] = r->groups[i].label;
    }
    qsort(r->labels, (size_t)r->n_labels, sizeof *r->labels, cmp_str_label);
    for (int i = 0; i < r->n_groups; i++)
        for (int k = 0; k < r->n_labels; k++)
            if (!strcmp(r->labels[k], r->groups[i].label)) r->groups[i].color = k;
    return ECR_OK;   /* idx is owned through groups[0].runs */
}

const run *rp_grun(const report *r, const group *g, int k) {
    return &r->runs[g->runs[k]];
}

/* warn_missing for every run, in report order. */
void rp_warn_runs(const report *r) {
    for (int i = 0; i < r->n_groups; i++) {
        const group *g = &r->groups[i];
        int pca = 0;
        for (int k = 0; k < g->n; k++) pca |= rp_grun(r, g, k)->has_pca;
        for (int k = 0; k < g->n; k++) rp_warn_missing(rp_grun(r, g, k), pca);
    }
}

/* Mean and sample standard deviation (n - 1; NaN when n < 2) of the finite values. */
int rp_mean_std(const double *v, int n, double *mean, double *sd) {
    double s = 0, ss = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], k++;
    *mean = k ? s / k : NAN;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = k > 1 ? sqrt(ss / (k - 1)) : NAN;
    return k;
}

/* Metric m of a run: L_* when sp == SP_LM, else G_* of space sp. */
static double run_metric(const run *u, int sp, int m) {
    return sp == SP_LM ? u->lm[m] : u->geo[sp].m[m];
}

/* Mean and sd over a group's runs of metric m of space sp (SP_LM: an L_* metric); returns
 * how many runs have it. */
int rp_group_metric(const report *r, const group *g, int sp, int m, double *mean,
                    double *sd) {
    double v[64];
    int n = 0;
    for (int k = 0; k < g->n && n < 64; k++) v[n++] = run_metric(rp_grun(r, g, k), sp, m);
    return rp_mean_std(v, n, mean, sd);
}

/* 1 if some run of the group has u (a projection). */
int rp_group_has_u(const report *r, const group *g) {
    for (int k = 0; k < g->n; k++)
        if (rp_grun(r, g, k)->geo[SP_U].has) return 1;
    return 0;
}

/* P@1 on space sp of `lang` over a group's runs (NaN where a run lacks it). */
int rp_group_p1_lang(const report *r, const group *g, int sp, const char *lang,
                     double *mean, double *sd) {
    double v[64];
    int n = 0;
    for (int k = 0; k < g->n && n < 64; k++) {
        const geo_space *gs = &rp_grun(r, g, k)->geo[sp];
        v[n] = NAN;
        for (int i = 0; i < gs->n_p1; i++)
            if (!strcmp(gs->p1_lang[i], lang)) v[n] = gs->p1[i];
        n++;
    }
    return rp_mean_std(v, n, mean, sd);
}

/* "mean ± sd", "mean" (one value) or a dash; " (k of n)" when some runs lack the value.
 * Values that round to zero print without a sign. */
void rp_fmt_cell(char *buf, size_t cap, int k, int n, double mean, double sd, int prec) {
    if (k == 0) { snprintf(buf, cap, DASH); return; }
    if (fabs(mean) < 0.5 * pow(10, -prec)) mean = 0;
    int len = isfinite(sd) ? snprintf(buf, cap, "%.*f" PM "%.*f", prec, mean, prec, sd)
                           : snprintf(buf, cap, "%.*f", prec, mean);
    if (k < n && len > 0 && (size_t)len < cap) snprintf(buf + len, cap - (size_t)len, " (%d of %d)", k, n);
}

/* ---- output files -------------------------------------------------------------------------- */

ecr_status rp_out_open(const report *r, const char *name, ecr_atomic_file *af) {
    char *path = ecr_path_join(r->out_dir, name);
    ecr_status st = path ? ecr_atomic_open(af, path) : ecr_fail(ECR_E_NOMEM, "out of memory");
    free(path);
    return st;
}

/* Commits, prints the path on stdout, remembers the plot for report.md. */
ecr_status rp_out_commit(report *r, const char *name, ecr_atomic_file *af) {
    char *path = ecr_path_join(r->out_dir, name);
    if (!path) {
        ecr_atomic_abort(af);
        return ecr_fail(ECR_E_NOMEM, "out of memory");
    }
    ecr_status st = ecr_atomic_commit(af);
    if (!st) printf("%s\n", path);
    free(path);
    if (st) return st;
    fflush(stdout);
    if (strcmp(name, "report.md") && r->n_written < 16) r->written[r->n_written++] = name;
    return ECR_OK;
}

void rp_skip_plot(report *r, const char *name, const char *why) {
    rp_warn("%s not written: %s", name, why);
    if (r->n_skipped < 16)
        snprintf(r->skipped[r->n_skipped++], sizeof r->skipped[0], "`%s`: %s", name, why);
}
