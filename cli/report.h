/* report.h — the pieces of `ecr report` (internal to the CLI): a run's inputs, the groups,
 * and what the loading (report_load.c), grouping (report_group.c), plotting
 * (report_plot.c) and Markdown (report_md.c) files share. The command is cmd_report.c. */
#ifndef ECR_REPORT_H
#define ECR_REPORT_H
#include "cli.h"
#include "svg.h"

#include <cJSON.h>
#include <stdio.h>

#define MAX_PCA_PANELS 12
#define MAX_PCA_POINTS 1500   /* per panel, about: larger sets are thinned (pca_keep)     */
#define MAX_LINE_POINTS 1500  /* per curve                                               */
#define DASH "\xe2\x80\x93"   /* U+2013, an empty table cell                             */
#define PM " \xc2\xb1 "       /* " ± "                                                   */

typedef struct dvec {
    double *v;
    int n, cap;
} dvec;

/* Columns of the language-model table (L_*) and of the geometry tables (G_*), in order.
 * A geometry metric exists once per space: SP_H (h, the pooled hidden state) and SP_U (u,
 * the projection P h / |P h|). The column head's footnote mark is added by the table. */
enum { L_BPB, L_LOSS, L_SPIKES, L_GCV, L_CLIP, L_SPS, L_N };
enum { G_ER, G_ANISO, G_P1, G_LT, G_SIL, G_CKA, G_KNN, G_AGREE, G_N };
enum { SP_H, SP_U, SP_N };
enum { SP_LM = -1 };            /* "space" of the L_* metrics in group_metric             */
typedef struct table_col {
    const char *head;
    int prec;
} table_col;

typedef struct pca_data {
    int n;                      /* points                                                 */
    char space;                 /* 'u', 'h' or '?'                                        */
    double explained[2];        /* variance shares of PC1, PC2 (NaN if not given)         */
    double *x, *y;              /* [n]                                                    */
    int *cat[2];                /* [n] language, label indices (NULL = not given)         */
    char **names[2];            /* langs, labels                                          */
    int n_names[2];
} pca_data;

typedef struct geo_space {
    int has;                    /* u: the run's model has a projection (h: always 1)       */
    double m[G_N];
    int er_from_log;            /* m[G_ER] is the last val_eff_rank(_u) of log.jsonl       */
    int n_p1;                   /* P@1 per language                                        */
    char **p1_lang;
    double *p1;
} geo_space;

typedef struct run {
    const char *dir;            /* as given on the command line (borrowed)               */
    char *preset, *method, *tag;   /* owned; tag NULL when none                           */
    char *diverged;             /* owned: run.json "diverged" (why training stopped), or NULL */
    const char *label;          /* tag or method                                         */
    long long seed, steps;      /* steps -1 when unknown                                 */
    int has_run_json, has_config, has_log, has_eval;
    /* log.jsonl */
    dvec step, loss, gnorm, clip;
    int gnorm_ok;               /* every step record has a grad_norm                      */
    double el_step, el_s;       /* step and elapsed_s of the last step record with one    */
    dvec vstep, vloss, vbpb, ver, veru, vp1;
    /* metrics (NaN = missing) */
    double lm[L_N];             /* language model and stability                           */
    geo_space geo[SP_N];        /* geometry of h and of u                                 */
    int bpb_from_log, loss_from_log, stab_from_log;
    int has_pca;
    pca_data pca;
} run;

typedef struct group {
    const char *preset, *label;
    int *runs;                  /* indices into report.runs, by seed                     */
    int n;
    int color;                  /* index of the label: colour of the group in every plot */
} group;

typedef struct report {
    run *runs;
    int n_runs;
    group *groups;
    int n_groups;
    const char **labels;        /* distinct labels in group order (colour index)         */
    int n_labels;
    const char *out_dir, *title;
    int quiet;
    const char *written[16];    /* plot files written, for report.md                     */
    int n_written;
    char skipped[16][200];      /* why plots were not drawn                              */
    int n_skipped;
} report;

/* The constant tables: the columns of the LM and geometry tables, the names of the spaces. */
extern const table_col lm_cols[L_N];
extern const table_col geo_cols[G_N];
extern const char space_name[SP_N];

/* The curves over steps, one plot each. */
enum { S_TRAIN, S_VAL, S_ER, S_P1, S_N };

/* report_load.c: growable arrays, reading the runs. */
ecr_status rp_dvec_push(dvec *a, double x);
void rp_dvec_free(dvec *a);
double rp_dvec_last(const dvec *a);
void rp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rp_run_free(run *u);
ecr_status rp_load_run(run *u, const char *dir);
void rp_warn_missing(const run *u, int group_pca);

/* report_group.c: groups, their statistics, output files. */
ecr_status rp_make_groups(report *r);
const run *rp_grun(const report *r, const group *g, int k);
void rp_warn_runs(const report *r);
int rp_mean_std(const double *v, int n, double *mean, double *sd);
int rp_group_metric(const report *r, const group *g, int sp, int m, double *mean,
                    double *sd);
int rp_group_has_u(const report *r, const group *g);
int rp_group_p1_lang(const report *r, const group *g, int sp, const char *lang,
                     double *mean, double *sd);
void rp_fmt_cell(char *buf, size_t cap, int k, int n, double mean, double sd, int prec);
ecr_status rp_out_open(const report *r, const char *name, ecr_atomic_file *af);
ecr_status rp_out_commit(report *r, const char *name, ecr_atomic_file *af);
void rp_skip_plot(report *r, const char *name, const char *why);

/* report_plot.c: the SVG plots. */
ecr_status rp_plot_steps(report *r, int kind);
ecr_status rp_plot_pca(report *r, int k);
int rp_p1_langs(const report *r, int g0, int ng, int sp, const char **langs, int cap);
int rp_any_u(const report *r);
ecr_status rp_plot_p1_bars(report *r, int sp);
ecr_status rp_plot_tradeoff(report *r, int sp);

/* report_md.c: report.md. */
ecr_status rp_write_markdown(report *r);

#endif
