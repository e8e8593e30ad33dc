/* cmd_report.c — `ecr report RUN_DIR... --out REPORT_DIR`: a Markdown report and SVG plots
 * comparing finished runs (folders of `ecr train --out`, after `ecr eval --json RUN/eval.json`).
 *
 * Inputs of a run, each optional (a run needs run.json or eval.json):
 *   run.json    {"preset", "tag" (string or null), "method", "seed", "steps", ...}
 *               (cli/cmd_train.c); without it the preset is "LxD" from config.json
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
#include "cli.h"
#include "svg.h"

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
    "  run.json     from ecr train: preset, tag, method, seed, steps. Without it the size is\n"
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

#define MAX_PCA_PANELS 12
#define MAX_PCA_POINTS 1500   /* per panel, about: larger sets are thinned (pca_keep)     */
#define MAX_LINE_POINTS 1500  /* per curve                                               */
#define DASH "\xe2\x80\x93"   /* U+2013, an empty table cell                             */
#define PM " \xc2\xb1 "       /* " ± "                                                   */

/* ---- growable arrays -------------------------------------------------------------------- */

typedef struct dvec {
    double *v;
    int n, cap;
} dvec;

static ecr_status dvec_push(dvec *a, double x) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        double *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v) return ecr_fail(ECR_E_NOMEM, "ecr report: out of memory");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return ECR_OK;
}

static void dvec_free(dvec *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* The last finite value, NaN if none. */
static double dvec_last(const dvec *a) {
    for (int i = a->n - 1; i >= 0; i--)
        if (isfinite(a->v[i])) return a->v[i];
    return NAN;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void free_strs(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* ---- runs ------------------------------------------------------------------------------- */

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
static const table_col lm_cols[L_N] = {
    {"val bits/byte", 3}, {"val loss", 3}, {"spikes/1k steps", 2}, {"grad-norm CV", 3},
    {"clipped share", 3}, {"train s/step", 3},
};
static const table_col geo_cols[G_N] = {
    {"eff. rank", 1}, {"anisotropy", 3}, {"P@1 mean", 3}, {"label transfer", 3},
    {"silhouette", 3}, {"CKA", 3}, {"kNN@10", 3}, {"anchor agreement", 3},
};
static const char space_name[SP_N] = {'h', 'u'};

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
    const char *label;          /* tag or method                                         */
    long long seed, steps;      /* steps -1 when unknown                                 */
    int has_run_json, has_config, has_log, has_eval;
    /* log.jsonl */
    dvec step, loss, gnorm, clip;
    int gnorm_ok;               /* every step record has a grad_norm                      */
    double el_step, el_s;       /* step and elapsed_s of the last step record with one    */
    dvec vstep, vloss, vbpb, ver, veru;
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

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ecr report: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void pca_free(pca_data *p) {
    free(p->x);
    free(p->y);
    for (int k = 0; k < 2; k++) {
        free(p->cat[k]);
        free_strs(p->names[k], p->n_names[k]);
    }
    memset(p, 0, sizeof *p);
}

static void run_free(run *u) {
    free(u->preset);
    free(u->method);
    free(u->tag);
    dvec *v[] = {&u->step, &u->loss, &u->gnorm, &u->clip, &u->vstep, &u->vloss, &u->vbpb,
                 &u->ver, &u->veru};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) dvec_free(v[i]);
    for (int sp = 0; sp < SP_N; sp++) {
        free_strs(u->geo[sp].p1_lang, u->geo[sp].n_p1);
        free(u->geo[sp].p1);
    }
    pca_free(&u->pca);
}

/* ---- JSON input ----------------------------------------------------------------------- */

/* Line and column (1-based) of byte offset `at` of text. */
static void line_col(const char *text, size_t at, int *line, int *col) {
    *line = 1, *col = 1;
    for (size_t i = 0; i < at && text[i]; i++) {
        if (text[i] == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

/* Parses the JSON file at path (*root NULL and ECR_OK when the file does not exist).
 * Malformed: ECR_E_INVALID "path:LINE:COL: not valid JSON (byte N)". */
static ecr_status read_json(const char *path, cJSON **root) {
    char *text = NULL;
    size_t len = 0;
    *root = NULL;
    if (!ecr_file_exists(path)) return ECR_OK;
    ecr_status st = ecr_read_file(path, &text, &len);
    if (st) return st;
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = len;
    if (!*root) {
        const char *e = cJSON_GetErrorPtr();
        at = e && e >= text && e <= text + len ? (size_t)(e - text) : 0;
    } else {
        for (at = (size_t)(end - text); at < len && strchr(" \t\r\n", text[at]); at++) {}
    }
    if (at < len || !*root) {
        int line, col;
        line_col(text, at, &line, &col);
        st = ecr_fail(ECR_E_INVALID, "%s:%d:%d: %s (byte %zu)", path, line, col,
                      *root ? "data after the JSON value" : "not valid JSON", at);
        cJSON_Delete(*root);
        *root = NULL;
    }
    free(text);
    return st;
}

/* obj[key] as a number; NaN when absent or null; ECR_E_INVALID naming the field
 * ("path<place>: field '<prefix><key>': ...") for another type. */
static ecr_status get_num(const char *path, const char *place, const char *prefix,
                          const cJSON *obj, const char *key, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *v = NAN;
    if (!it || cJSON_IsNull(it)) return ECR_OK;
    if (!cJSON_IsNumber(it))
        return ecr_fail(ECR_E_INVALID, "%s%s: field '%s%s': expected a number or null", path,
                        place, prefix, key);
    *v = it->valuedouble;
    return ECR_OK;
}

/* obj[key] as an object (*out NULL when absent or null); ECR_E_INVALID for another type. */
static ecr_status get_obj(const char *path, const char *prefix, const cJSON *obj,
                          const char *key, const cJSON **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!it || cJSON_IsNull(it)) return ECR_OK;
    if (!cJSON_IsObject(it))
        return ecr_fail(ECR_E_INVALID, "%s: field '%s%s': expected an object or null", path,
                        prefix, key);
    *out = it;
    return ECR_OK;
}

/* obj[key] as a string copy (*out NULL when absent or null); ECR_E_INVALID otherwise. */
static ecr_status get_str(const char *path, const cJSON *obj, const char *key, char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!it || cJSON_IsNull(it)) return ECR_OK;
    if (!cJSON_IsString(it))
        return ecr_fail(ECR_E_INVALID, "%s: field '%s': expected a string or null", path, key);
    if (!(*out = xstrdup(it->valuestring))) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    return ECR_OK;
}

/* ---- run.json and config.json ------------------------------------------------------------- */

static ecr_status load_run_json(run *u, const char *path, const cJSON *j) {
    if (!cJSON_IsObject(j)) return ecr_fail(ECR_E_INVALID, "%s: expected a JSON object", path);
    double seed, steps;
    ecr_status st = get_str(path, j, "preset", &u->preset);
    if (!st) st = get_str(path, j, "method", &u->method);
    if (!st) st = get_str(path, j, "tag", &u->tag);
    if (!st) st = get_num(path, "", "", j, "seed", &seed);
    if (!st) st = get_num(path, "", "", j, "steps", &steps);
    if (st) return st;
    if (fabs(seed) < 9e18) u->seed = (long long)seed;     /* NaN (absent) fails the test */
    if (fabs(steps) < 9e18) u->steps = (long long)steps;
    return ECR_OK;
}

/* preset "LxD" from config.json (num_hidden_layers x hidden_size), when it is there. */
static ecr_status load_config(run *u, const char *path, const cJSON *j) {
    if (!cJSON_IsObject(j)) return ecr_fail(ECR_E_INVALID, "%s: expected a JSON object", path);
    double layers, width;
    ecr_status st = get_num(path, "", "", j, "num_hidden_layers", &layers);
    if (!st) st = get_num(path, "", "", j, "hidden_size", &width);
    if (st || !isfinite(layers) || !isfinite(width)) return st;
    char b[64];
    snprintf(b, sizeof b, "%.0fx%.0f", layers, width);
    if (!(u->preset = xstrdup(b))) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    return ECR_OK;
}

/* ---- log.jsonl --------------------------------------------------------------------------- */

/* One record of the log: step records feed the loss, gradient-norm and clipping curves and
 * the seconds per step; validation records the validation curves. Others are ignored. */
static ecr_status log_record(run *u, const ecr_log_record *r) {
    ecr_status st = ECR_OK;
    if (!isfinite(r->step)) return ECR_OK;
    if (r->is_step) {
        if (isfinite(r->elapsed_s)) u->el_step = r->step, u->el_s = r->elapsed_s;
        if (!isfinite(r->grad_norm)) u->gnorm_ok = 0;
        if (!st) st = dvec_push(&u->step, r->step);
        if (!st) st = dvec_push(&u->loss, r->loss);
        if (!st) st = dvec_push(&u->gnorm, r->grad_norm);
        if (!st) st = dvec_push(&u->clip, r->clipped == 1 ? 1 : 0);
    } else if (r->is_valid) {
        if (!st) st = dvec_push(&u->vstep, r->step);
        if (!st) st = dvec_push(&u->vloss, r->val_loss);
        if (!st) st = dvec_push(&u->vbpb, r->val_bpb);
        if (!st) st = dvec_push(&u->ver, r->val_eff_rank);
        if (!st) st = dvec_push(&u->veru, r->val_eff_rank_u);
    }
    return st;
}

/* Reads the run's log.jsonl (none is fine) by the rule of ecr.h's ecr_log_next. */
static ecr_status load_log(run *u, const char *path) {
    if (!ecr_file_exists(path)) return ECR_OK;
    ecr_log_reader *r = NULL;
    ecr_status st = ecr_log_open(path, &r);
    if (st) return st;
    u->has_log = 1;
    u->gnorm_ok = 1;
    ecr_log_record rec;
    int more = 1;
    while (!st && more && !(st = ecr_log_next(r, &rec, &more)) && more) st = log_record(u, &rec);
    if (!st && ecr_log_torn(r)) warn("%s:%ld: truncated last line skipped", path, ecr_log_torn(r));
    ecr_log_close(r);
    return st;
}

/* ---- eval.json ------------------------------------------------------------------------------ */

/* P@1 per language of one geometry space ("p1": {"per_lang": {...}}) into gs. */
static ecr_status load_p1_langs(geo_space *gs, const char *path, const char *prefix,
                                const cJSON *p1) {
    const cJSON *per;
    char pre[64];
    snprintf(pre, sizeof pre, "%sp1.", prefix);
    ecr_status st = get_obj(path, pre, p1, "per_lang", &per);
    if (st || !per) return st;
    int n = cJSON_GetArraySize(per);
    gs->p1_lang = calloc((size_t)n + 1, sizeof *gs->p1_lang);
    gs->p1 = calloc((size_t)n + 1, sizeof *gs->p1);
    if (!gs->p1_lang || !gs->p1) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    snprintf(pre, sizeof pre, "%sp1.per_lang.", prefix);
    for (const cJSON *c = per->child; c && !st; c = c->next) {
        st = get_num(path, "", pre, per, c->string, &gs->p1[gs->n_p1]);
        if (!st && !(gs->p1_lang[gs->n_p1++] = xstrdup(c->string)))
            st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    }
    return st;
}

/* geometry.<space> (GEOM in cli/cmd_eval.c) into u->geo[sp]; absent or null leaves it
 * empty (and, for u, marks the run as having no projection). */
static ecr_status load_space(run *u, const char *path, const cJSON *geo, int sp) {
    const cJSON *g = NULL, *p1 = NULL, *lt = NULL;
    geo_space *gs = &u->geo[sp];
    const char key[2] = {space_name[sp], 0};
    ecr_status st = get_obj(path, "geometry.", geo, key, &g);
    if (st || !g) return st;
    gs->has = 1;
    char pre[32];
    snprintf(pre, sizeof pre, "geometry.%c.", space_name[sp]);
    static const struct { int m; const char *key; } keys[] = {
        {G_ER, "effective_rank"}, {G_ANISO, "anisotropy"}, {G_SIL, "silhouette"},
        {G_CKA, "cka"}, {G_KNN, "knn_overlap10"}, {G_AGREE, "anchor_agreement"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !st; i++)
        st = get_num(path, "", pre, g, keys[i].key, &gs->m[keys[i].m]);
    if (!st) st = get_obj(path, pre, g, "p1", &p1);
    if (!st) st = get_obj(path, pre, g, "label_transfer", &lt);
    char sub[48];
    snprintf(sub, sizeof sub, "%sp1.", pre);
    if (!st && p1) st = get_num(path, "", sub, p1, "mean", &gs->m[G_P1]);
    snprintf(sub, sizeof sub, "%slabel_transfer.", pre);
    if (!st && lt) st = get_num(path, "", sub, lt, "mean", &gs->m[G_LT]);
    if (!st && p1) st = load_p1_langs(gs, path, pre, p1);
    return st;
}

/* A numeric array field of pca: exactly n entries when n >= 0 (else any length, *n set). */
static ecr_status pca_array(const char *path, const cJSON *pca, const char *key, int *n,
                            const cJSON **out) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(pca, key);
    *out = NULL;
    if (!a || cJSON_IsNull(a)) return ECR_OK;
    if (!cJSON_IsArray(a))
        return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s': expected an array", path, key);
    int len = cJSON_GetArraySize(a);
    if (*n >= 0 && len != *n)
        return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s': %d entries, expected %d", path, key,
                        len, *n);
    *n = len;
    *out = a;
    return ECR_OK;
}

static ecr_status pca_coords(const char *path, const cJSON *a, const char *key, int n,
                             double **out) {
    if (!(*out = malloc(((size_t)n + 1) * sizeof **out)))
        return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    int i = 0;
    for (const cJSON *c = a->child; c; c = c->next, i++) {
        if (!cJSON_IsNumber(c))
            return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s[%d]': expected a number", path,
                            key, i);
        (*out)[i] = c->valuedouble;
    }
    return ECR_OK;
}

/* Category k (0 lang, 1 label): names from pca[names_key], indices from pca[key]. */
static ecr_status pca_category(pca_data *p, const char *path, const cJSON *pca, int k) {
    static const char *keys[2] = {"lang", "label"}, *name_keys[2] = {"langs", "labels"};
    const cJSON *idx, *names;
    int n = p->n, m = -1;
    ecr_status st = pca_array(path, pca, keys[k], &n, &idx);
    if (!st) st = pca_array(path, pca, name_keys[k], &m, &names);
    if (st || !idx || !names) return st;
    p->names[k] = calloc((size_t)m + 1, sizeof *p->names[k]);
    p->cat[k] = malloc(((size_t)n + 1) * sizeof *p->cat[k]);
    if (!p->names[k] || !p->cat[k]) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    for (const cJSON *c = names->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s[%d]': expected a string", path,
                            name_keys[k], p->n_names[k]);
        if (!(p->names[k][p->n_names[k]++] = xstrdup(c->valuestring)))
            return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    }
    int i = 0;
    for (const cJSON *c = idx->child; c; c = c->next, i++) {
        if (!cJSON_IsNumber(c) || !(c->valuedouble >= 0 && c->valuedouble < m) ||
            c->valuedouble != floor(c->valuedouble))
            return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s[%d]': expected an index into "
                            "pca.%s (0..%d)", path, keys[k], i, name_keys[k], m - 1);
        p->cat[k][i] = (int)c->valuedouble;
    }
    return ECR_OK;
}

static ecr_status load_pca(run *u, const char *path, const cJSON *pca) {
    pca_data *p = &u->pca;
    const cJSON *x, *y, *ex, *sp = cJSON_GetObjectItemCaseSensitive(pca, "space");
    int n = -1, two = -1;
    p->space = cJSON_IsString(sp) && strlen(sp->valuestring) == 1 ? sp->valuestring[0] : '?';
    p->explained[0] = p->explained[1] = NAN;
    ecr_status st = pca_array(path, pca, "x", &n, &x);
    if (!st) st = pca_array(path, pca, "y", &n, &y);
    if (!st && (!x || !y))
        st = ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s': missing", path, x ? "y" : "x");
    if (st) return st;
    p->n = n;
    st = pca_coords(path, x, "x", n, &p->x);
    if (!st) st = pca_coords(path, y, "y", n, &p->y);
    if (!st) st = pca_array(path, pca, "explained", &two, &ex);
    for (int i = 0; !st && ex && i < 2 && i < two; i++) {
        const cJSON *e = cJSON_GetArrayItem(ex, i);
        if (cJSON_IsNumber(e)) p->explained[i] = e->valuedouble;
    }
    if (!st) st = pca_category(p, path, pca, 0);
    if (!st) st = pca_category(p, path, pca, 1);
    if (!st) u->has_pca = n > 0;
    return st;
}

static ecr_status load_eval(run *u, const char *path, const cJSON *j) {
    if (!cJSON_IsObject(j)) return ecr_fail(ECR_E_INVALID, "%s: expected a JSON object", path);
    const cJSON *lm, *overall = NULL, *geo, *stab, *pca;
    ecr_status st = get_obj(path, "", j, "lm", &lm);
    if (!st && lm) st = get_obj(path, "lm.", lm, "overall", &overall);
    if (!st && overall) st = get_num(path, "", "lm.overall.", overall, "bpb", &u->lm[L_BPB]);
    if (!st && overall) st = get_num(path, "", "lm.overall.", overall, "loss", &u->lm[L_LOSS]);
    if (!st) st = get_obj(path, "", j, "geometry", &geo);
    for (int sp = 0; sp < SP_N && !st && geo; sp++) st = load_space(u, path, geo, sp);
    if (!st) st = get_obj(path, "", j, "stability", &stab);
    if (!st && stab)
        st = get_num(path, "", "stability.", stab, "spikes_per_1k_steps", &u->lm[L_SPIKES]);
    if (!st && stab) st = get_num(path, "", "stability.", stab, "grad_norm_cv", &u->lm[L_GCV]);
    if (!st && stab) st = get_num(path, "", "stability.", stab, "clipped_share", &u->lm[L_CLIP]);
    if (!st) st = get_obj(path, "", j, "pca", &pca);
    if (!st && pca) st = load_pca(u, path, pca);
    return st;
}

/* ---- one run ---------------------------------------------------------------------------------- */

/* Fills what eval.json did not give from log.jsonl: seconds per training step (eval.json
 * has none), loss, bits/byte and the effective ranks of h and u of the last validation
 * record (val_eff_rank_u also marks the run as having u), stability of the step records.
 * h exists for every model. */
static void fill_from_log(run *u) {
    if (!isfinite(u->lm[L_BPB]) && isfinite(dvec_last(&u->vbpb)))
        u->lm[L_BPB] = dvec_last(&u->vbpb), u->bpb_from_log = 1;
    if (!isfinite(u->lm[L_LOSS]) && isfinite(dvec_last(&u->vloss)))
        u->lm[L_LOSS] = dvec_last(&u->vloss), u->loss_from_log = 1;
    if (u->el_step > 0 && u->el_s >= 0) u->lm[L_SPS] = u->el_s / u->el_step;
    u->geo[SP_H].has = 1;
    if (isfinite(dvec_last(&u->veru))) u->geo[SP_U].has = 1;
    const dvec *er[SP_N] = {&u->ver, &u->veru};
    for (int sp = 0; sp < SP_N; sp++) {
        geo_space *gs = &u->geo[sp];
        if (!isfinite(gs->m[G_ER]) && isfinite(dvec_last(er[sp])))
            gs->m[G_ER] = dvec_last(er[sp]), gs->er_from_log = 1;
    }
    if (!isfinite(u->lm[L_SPIKES]) && !isfinite(u->lm[L_GCV]) && !isfinite(u->lm[L_CLIP]) &&
        u->step.n > 0 && u->gnorm_ok) {
        uint8_t *c = malloc((size_t)u->step.n);
        ecr_stability s;
        for (int i = 0; c && i < u->step.n; i++) c[i] = u->clip.v[i] != 0;
        if (c && !ecr_stability_compute(u->loss.v, u->gnorm.v, c, u->step.n, &s)) {
            u->lm[L_SPIKES] = s.spikes_per_1k, u->lm[L_GCV] = s.grad_norm_cv;
            u->lm[L_CLIP] = s.clipped_share;
            u->stab_from_log = 1;
        }
        free(c);
    }
}

/* Reads and parses `name` in the run folder, hands it to fn. *found: the file exists. */
static ecr_status load_json_file(run *u, const char *name, int *found,
                                 ecr_status (*fn)(run *, const char *, const cJSON *)) {
    cJSON *j = NULL;
    char *path = ecr_path_join(u->dir, name);
    if (!path) return ecr_fail(ECR_E_NOMEM, "out of memory");
    ecr_status st = read_json(path, &j);
    *found = j != NULL;
    if (!st && j) st = fn(u, path, j);
    cJSON_Delete(j);
    free(path);
    return st;
}

static ecr_status load_run(run *u, const char *dir) {
    struct stat sb;
    memset(u, 0, sizeof *u);
    u->dir = dir;
    u->steps = -1;
    for (int i = 0; i < L_N; i++) u->lm[i] = NAN;
    for (int sp = 0; sp < SP_N; sp++)
        for (int i = 0; i < G_N; i++) u->geo[sp].m[i] = NAN;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ecr_fail(ECR_E_INVALID, "%s: not a directory", dir);
    ecr_status st = load_json_file(u, "run.json", &u->has_run_json, load_run_json);
    if (!st && !u->preset) st = load_json_file(u, "config.json", &u->has_config, load_config);
    if (!st) st = load_json_file(u, "eval.json", &u->has_eval, load_eval);
    if (!st) {
        char *path = ecr_path_join(dir, "log.jsonl");
        st = path ? load_log(u, path) : ecr_fail(ECR_E_NOMEM, "out of memory");
        free(path);
    }
    if (st) return st;
    if (!u->has_run_json && !u->has_eval)
        return ecr_fail(ECR_E_INVALID, "%s: neither run.json nor eval.json (not a finished "
                        "ecr train --out folder?)", dir);
    if (!u->preset && !(u->preset = xstrdup("?"))) return ecr_fail(ECR_E_NOMEM, "out of memory");
    if (!u->method && !(u->method = xstrdup("?"))) return ecr_fail(ECR_E_NOMEM, "out of memory");
    u->label = u->tag ? u->tag : u->method;
    fill_from_log(u);
    return ECR_OK;
}

/* One stderr line per run listing the plots it is left out of, and why. group_pca: some
 * run of its group has a PCA (only one run per group is drawn). */
static void warn_missing(const run *u, int group_pca) {
    char why[512] = "", out[512] = "";
    int has_er = isfinite(dvec_last(&u->ver)) || isfinite(dvec_last(&u->veru));
    int has_u = u->geo[SP_U].has, bpb = isfinite(u->lm[L_BPB]);
#define MISSING(cond, reason, plots)                                                        \
    if (cond) {                                                                              \
        snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s", *why ? ", " : "", reason); \
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", *out ? ", " : "", plots);  \
    }
    MISSING(!u->has_log, "no log.jsonl", "loss_train, loss_valid, eff_rank")
    MISSING(u->has_log && u->step.n == 0, "no step records", "loss_train")
    MISSING(u->has_log && u->vstep.n == 0, "no validation records", "loss_valid, eff_rank")
    MISSING(u->has_log && u->vstep.n > 0 && !has_er, "no val_eff_rank", "eff_rank")
    MISSING(!u->has_eval, "no eval.json",
            has_u ? "pca_lang, pca_label, p1_bars, p1_bars_u, tradeoff, tradeoff_u"
                  : "pca_lang, pca_label, p1_bars, tradeoff")
    MISSING(u->has_eval && !group_pca, "no \"pca\" in eval.json", "pca_lang, pca_label")
    MISSING(u->has_eval && u->geo[SP_H].n_p1 == 0, "no P@1 per language on h", "p1_bars")
    MISSING(u->has_eval && has_u && u->geo[SP_U].n_p1 == 0, "no P@1 per language on u",
            "p1_bars_u")
    MISSING(u->has_eval && !bpb, "no bits/byte", has_u ? "tradeoff, tradeoff_u" : "tradeoff")
    MISSING(u->has_eval && bpb && !isfinite(u->geo[SP_H].m[G_P1]), "no P@1 mean on h",
            "tradeoff")
    MISSING(u->has_eval && bpb && has_u && !isfinite(u->geo[SP_U].m[G_P1]),
            "no P@1 mean on u", "tradeoff_u")
#undef MISSING
    if (*why) warn("%s: %s: left out of %s", u->dir, why, out);
}

/* ---- groups ------------------------------------------------------------------------------- */

static int preset_rank(const char *p) {
    static const char *order[] = {"tiny", "small", "base"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(p, order[i])) return i;
    return 3;
}

static int label_rank(const char *l) {
    static const char *order[] = {"none", "kd", "feat", "rkd", "ecr", "ecr+kd"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(l, order[i])) return i;
    return 6;
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
static ecr_status make_groups(report *r) {
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

static const run *grun(const report *r, const group *g, int k) {
    return &r->runs[g->runs[k]];
}

/* warn_missing for every run, in report order. */
static void warn_runs(const report *r) {
    for (int i = 0; i < r->n_groups; i++) {
        const group *g = &r->groups[i];
        int pca = 0;
        for (int k = 0; k < g->n; k++) pca |= grun(r, g, k)->has_pca;
        for (int k = 0; k < g->n; k++) warn_missing(grun(r, g, k), pca);
    }
}

/* Mean and sample standard deviation (n - 1; NaN when n < 2) of the finite values. */
static int mean_std(const double *v, int n, double *mean, double *sd) {
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
static int group_metric(const report *r, const group *g, int sp, int m, double *mean,
                        double *sd) {
    double v[64];
    int n = 0;
    for (int k = 0; k < g->n && n < 64; k++) v[n++] = run_metric(grun(r, g, k), sp, m);
    return mean_std(v, n, mean, sd);
}

/* 1 if some run of the group has u (a projection). */
static int group_has_u(const report *r, const group *g) {
    for (int k = 0; k < g->n; k++)
        if (grun(r, g, k)->geo[SP_U].has) return 1;
    return 0;
}

/* P@1 on space sp of `lang` over a group's runs (NaN where a run lacks it). */
static int group_p1_lang(const report *r, const group *g, int sp, const char *lang,
                         double *mean, double *sd) {
    double v[64];
    int n = 0;
    for (int k = 0; k < g->n && n < 64; k++) {
        const geo_space *gs = &grun(r, g, k)->geo[sp];
        v[n] = NAN;
        for (int i = 0; i < gs->n_p1; i++)
            if (!strcmp(gs->p1_lang[i], lang)) v[n] = gs->p1[i];
        n++;
    }
    return mean_std(v, n, mean, sd);
}

/* "mean ± sd", "mean" (one value) or a dash; " (k of n)" when some runs lack the value.
 * Values that round to zero print without a sign. */
static void fmt_cell(char *buf, size_t cap, int k, int n, double mean, double sd, int prec) {
    if (k == 0) { snprintf(buf, cap, DASH); return; }
    if (fabs(mean) < 0.5 * pow(10, -prec)) mean = 0;
    int len = isfinite(sd) ? snprintf(buf, cap, "%.*f" PM "%.*f", prec, mean, prec, sd)
                           : snprintf(buf, cap, "%.*f", prec, mean);
    if (k < n && len > 0 && (size_t)len < cap) snprintf(buf + len, cap - (size_t)len, " (%d of %d)", k, n);
}

/* ---- output files -------------------------------------------------------------------------- */

static ecr_status out_open(const report *r, const char *name, ecr_atomic_file *af) {
    char *path = ecr_path_join(r->out_dir, name);
    ecr_status st = path ? ecr_atomic_open(af, path) : ecr_fail(ECR_E_NOMEM, "out of memory");
    free(path);
    return st;
}

/* Commits, prints the path on stdout, remembers the plot for report.md. */
static ecr_status out_commit(report *r, const char *name, ecr_atomic_file *af) {
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

static void skip_plot(report *r, const char *name, const char *why) {
    warn("%s not written: %s", name, why);
    if (r->n_skipped < 16)
        snprintf(r->skipped[r->n_skipped++], sizeof r->skipped[0], "`%s`: %s", name, why);
}

/* ---- curves over steps ------------------------------------------------------------------------ */

enum { S_TRAIN, S_VAL, S_ER, S_N };
static const struct {
    const char *file, *title, *subtitle, *ylabel;
    int markers;                /* markers with error bars (else lines)                   */
    double y_skip;              /* y range ignores this share of the first steps          */
} series_kinds[S_N] = {
    {"loss_train.svg", "Training loss",
     "LM loss per step, moving average over 2% of each run's steps, mean over seeds "
     "(y axis fitted after the first 10% of steps)",
     "training loss (nats/token)", 0, 0.10},
    {"loss_valid.svg", "Validation loss",
     "val_loss at each validation pass, mean \xc2\xb1 std over seeds", "validation loss (nats/token)", 1,
     0},
    {"eff_rank.svg", "Effective rank during training",
     "val_eff_rank_u (space u, the ECR projection) where logged, else val_eff_rank (h); "
     "mean \xc2\xb1 std over seeds",
     NULL, 1, 0},
};

/* Centred moving average of v[n] over a window of `w` points (shorter at the ends). */
static void moving_average(const double *v, int n, int w, double *out) {
    int h = w / 2;
    double s = 0;
    int lo = 0, hi = -1;          /* current window [lo, hi] */
    for (int i = 0; i < n; i++) {
        int a = i - h < 0 ? 0 : i - h, b = i + h >= n ? n - 1 : i + h;
        while (hi < b) s += v[++hi];
        while (lo < a) s -= v[lo++];
        out[i] = s / (hi - lo + 1);
    }
}

/* 1 if the run's validation records have val_eff_rank_u. */
static int run_er_u(const run *u) {
    return isfinite(dvec_last(&u->veru));
}

/* (step, value) points of a run for `kind`, appended to xs/ys. */
static ecr_status run_series(const run *u, int kind, dvec *xs, dvec *ys) {
    ecr_status st = ECR_OK;
    if (kind == S_TRAIN && u->step.n > 0) {
        double *sm = malloc((size_t)u->step.n * sizeof *sm);
        if (!sm) return ecr_fail(ECR_E_NOMEM, "out of memory");
        int w = (int)lround(0.02 * u->step.n);
        moving_average(u->loss.v, u->step.n, w < 1 ? 1 : w, sm);
        for (int i = 0; i < u->step.n && !st; i++) {
            st = dvec_push(xs, u->step.v[i]);
            if (!st) st = dvec_push(ys, sm[i]);
        }
        free(sm);
        return st;
    }
    const dvec *v = kind == S_VAL ? &u->vloss : run_er_u(u) ? &u->veru : &u->ver;
    for (int i = 0; kind != S_TRAIN && i < u->vstep.n && !st; i++) {
        if (!isfinite(v->v[i])) continue;
        st = dvec_push(xs, u->vstep.v[i]);
        if (!st) st = dvec_push(ys, v->v[i]);
    }
    return st;
}

typedef struct curve {
    dvec x, y, sd;              /* per step: mean over seeds, sample std (NaN if one seed) */
} curve;

static void curve_free(curve *c) {
    dvec_free(&c->x);
    dvec_free(&c->y);
    dvec_free(&c->sd);
}

typedef struct pt {
    double x, y;
} pt;

static int cmp_pt(const void *pa, const void *pb) {
    const pt *a = pa, *b = pb;
    return a->x < b->x ? -1 : a->x > b->x ? 1 : a->y < b->y ? -1 : a->y > b->y;
}

/* Sorted points -> one (mean, sd) per distinct step, thinned to MAX_LINE_POINTS. */
static ecr_status merge_steps(const pt *p, int n, curve *c) {
    int distinct = 0;
    for (int i = 0; i < n; i++) distinct += i == 0 || p[i].x != p[i - 1].x;
    int stride = (distinct + MAX_LINE_POINTS - 1) / MAX_LINE_POINTS, k = 0;
    ecr_status st = ECR_OK;
    for (int i = 0; i < n && !st;) {
        int j = i;
        double v[64], mean, sd;
        int m = 0;
        while (j < n && p[j].x == p[i].x) {
            if (m < 64) v[m++] = p[j].y;
            j++;
        }
        if (k % stride == 0 || j == n) {
            mean_std(v, m, &mean, &sd);
            st = dvec_push(&c->x, p[i].x);
            if (!st) st = dvec_push(&c->y, mean);
            if (!st) st = dvec_push(&c->sd, sd);
        }
        k++;
        i = j;
    }
    return st;
}

/* The group's curve of `kind`: its runs' points merged by step. */
static ecr_status group_curve(const report *r, const group *g, int kind, curve *c) {
    dvec xs = {0}, ys = {0};
    ecr_status st = ECR_OK;
    memset(c, 0, sizeof *c);
    for (int k = 0; k < g->n && !st; k++) st = run_series(grun(r, g, k), kind, &xs, &ys);
    pt *p = st ? NULL : malloc(((size_t)xs.n + 1) * sizeof *p);
    if (!st && !p) st = ecr_fail(ECR_E_NOMEM, "out of memory");
    if (!st) {
        for (int i = 0; i < xs.n; i++) p[i].x = xs.v[i], p[i].y = ys.v[i];
        qsort(p, (size_t)xs.n, sizeof *p, cmp_pt);
        st = merge_steps(p, xs.n, c);
    }
    free(p);
    dvec_free(&xs);
    dvec_free(&ys);
    return st;
}

/* ---- figure helpers ---------------------------------------------------------------------- */

/* Width of the legend column for these labels. */
static double legend_width(const char *const *labels, int n, const char *title) {
    double w = title ? svg_text_width(title, 13) : 0;
    for (int i = 0; i < n; i++) {
        double t = svg_text_width(labels[i], 12) + 40;
        if (t > w) w = t;
    }
    return w < 110 ? 110 : w > 260 ? 260 : w;
}

enum { KEY_LINE, KEY_LINE_POINT, KEY_POINT, KEY_BAR };

/* Legend items (of kind KEY_*) for the labels used in a figure (used[k] != 0), in label
 * order; label k has series style k. */
static int label_legend(const report *r, const int *used, int kind, svg_legend_item *items,
                        const char **names) {
    int n = 0;
    for (int k = 0; k < r->n_labels; k++) {
        if (!used[k]) continue;
        items[n] = (svg_legend_item){r->labels[k], svg_color(k),
                                     kind == KEY_LINE_POINT || kind == KEY_POINT ? svg_shape(k) : -1,
                                     kind == KEY_LINE || kind == KEY_LINE_POINT, svg_dash(k),
                                     kind == KEY_BAR ? k : -1};
        names[n++] = r->labels[k];
    }
    return n;
}

/* The groups' panels: distinct presets (groups are sorted by preset). first[i], count[i]:
 * the group range of panel i. */
static int preset_panels(const report *r, int *first, int *count) {
    int n = 0;
    for (int i = 0; i < r->n_groups; i++) {
        if (i == 0 || strcmp(r->groups[i].preset, r->groups[i - 1].preset)) {
            first[n] = i;
            count[n++] = 0;
        }
        count[n - 1]++;
    }
    return n;
}

/* Data range of a curve (with its sd when `bars`), only over x >= x_from. */
static void curve_range(const curve *c, int bars, double x_from, double *lo, double *hi) {
    for (int i = 0; i < c->x.n; i++) {
        if (c->x.v[i] < x_from) continue;
        double s = bars && isfinite(c->sd.v[i]) ? c->sd.v[i] : 0;
        if (c->y.v[i] - s < *lo) *lo = c->y.v[i] - s;
        if (c->y.v[i] + s > *hi) *hi = c->y.v[i] + s;
    }
}

/* A group's curve in series style `style`; markers with error bars when `markers`. */
static void draw_curve(FILE *fp, const svg_panel *p, const curve *c, int style, int markers) {
    const char *color = svg_color(style);
    svg_polyline(fp, p, c->x.v, c->y.v, c->x.n, color, markers ? 1.5 : 2, svg_dash(style));
    for (int i = 0; markers && i < c->x.n; i++) {
        double px = svg_px(p, c->x.v[i]), py = svg_py(p, c->y.v[i]);
        if (isfinite(c->sd.v[i]))
            svg_errbar(fp, px, svg_py(p, c->y.v[i] - c->sd.v[i]), px,
                       svg_py(p, c->y.v[i] + c->sd.v[i]), 3, color);
        svg_marker(fp, svg_shape(style), px, py, 3.5, color, "#ffffff", 1);
    }
}

/* The y-axis label of eff_rank.svg: which space the drawn runs use. */
static const char *er_ylabel(const report *r, const curve *cv) {
    int u = 0, h = 0;
    for (int i = 0; i < r->n_groups; i++)
        for (int k = 0; cv[i].x.n && k < r->groups[i].n; k++) {
            const run *x = grun(r, &r->groups[i], k);
            if (x->vstep.n == 0) continue;
            if (run_er_u(x)) u++;
            else if (isfinite(dvec_last(&x->ver))) h++;
        }
    return u && h ? "effective rank (u; h without ECR)" : u ? "effective rank of u"
                                                           : "effective rank of h";
}

/* One panel of a step plot: the curves of groups [g0, g0 + ng). */
static void step_panel(FILE *fp, const report *r, int kind, const curve *cv, int g0, int ng,
                       svg_panel *p, const char *ylabel) {
    double xmax = 1, lo = INFINITY, hi = -INFINITY;
    for (int i = g0; i < g0 + ng; i++)
        if (cv[i].x.n && cv[i].x.v[cv[i].x.n - 1] > xmax) xmax = cv[i].x.v[cv[i].x.n - 1];
    for (int i = g0; i < g0 + ng; i++)
        curve_range(&cv[i], series_kinds[kind].markers, series_kinds[kind].y_skip * xmax, &lo, &hi);
    if (!(lo <= hi))
        for (int i = g0; i < g0 + ng; i++) curve_range(&cv[i], 1, -INFINITY, &lo, &hi);
    double pad = (hi - lo) * 0.04;
    svg_nice_ticks(0, xmax, 6, &p->xt);
    svg_nice_ticks(lo - pad, hi + pad, 6, &p->yt);
    p->title = r->groups[g0].preset;
    p->xlabel = "step";
    p->ylabel = ylabel;
    svg_axes(fp, p);
    svg_clip_begin(fp, p);
    for (int i = g0; i < g0 + ng; i++)
        if (cv[i].x.n) draw_curve(fp, p, &cv[i], r->groups[i].color, series_kinds[kind].markers);
    svg_clip_end(fp);
}

/* Writes the figure of `kind`: one panel per preset that has data. */
static ecr_status write_step_plot(report *r, int kind, curve *cv) {
    int first[64], count[64], np = preset_panels(r, first, count), panels = 0;
    int used[64] = {0};
    for (int i = 0; i < np; i++) {
        int any = 0;
        for (int k = first[i]; k < first[i] + count[i]; k++)
            if (cv[k].x.n) any = 1, used[r->groups[k].color] = 1;
        if (any) first[panels] = first[i], count[panels++] = count[i];
    }
    const char *file = series_kinds[kind].file;
    if (panels == 0) {
        skip_plot(r, file, kind == S_TRAIN ? "no run has training steps in log.jsonl"
                           : kind == S_VAL ? "no run has validation records in log.jsonl"
                                           : "no run logs val_eff_rank or val_eff_rank_u");
        return ECR_OK;
    }
    svg_legend_item items[64];
    const char *names[64];
    int n_items = label_legend(r, used, series_kinds[kind].markers ? KEY_LINE_POINT : KEY_LINE,
                               items, names);
    svg_grid grid = {panels, 2, 440, 290, legend_width(names, n_items, "method / tag"), n_items};
    ecr_atomic_file af;
    ecr_status st = out_open(r, file, &af);
    if (st) return st;
    svg_begin(af.fp, &grid, series_kinds[kind].title, series_kinds[kind].subtitle);
    const char *ylabel = series_kinds[kind].ylabel ? series_kinds[kind].ylabel : er_ylabel(r, cv);
    for (int i = 0; i < panels; i++) {
        svg_panel p;
        svg_grid_panel(&grid, i, &p);
        step_panel(af.fp, r, kind, cv, first[i], count[i], &p, ylabel);
    }
    svg_legend(af.fp, &grid, "method / tag", items, n_items);
    svg_end(af.fp);
    return out_commit(r, file, &af);
}

static ecr_status plot_steps(report *r, int kind) {
    curve *cv = calloc((size_t)r->n_groups, sizeof *cv);
    if (!cv) return ecr_fail(ECR_E_NOMEM, "out of memory");
    ecr_status st = ECR_OK;
    for (int i = 0; i < r->n_groups && !st; i++) st = group_curve(r, &r->groups[i], kind, &cv[i]);
    if (!st) st = write_step_plot(r, kind, cv);
    for (int i = 0; i < r->n_groups; i++) curve_free(&cv[i]);
    free(cv);
    return st;
}

/* ---- PCA scatter ------------------------------------------------------------------------------- */

/* The run drawn for a group: its first seed with a PCA that has category k. */
static const run *pca_run(const report *r, const group *g, int k) {
    for (int i = 0; i < g->n; i++)
        if (grun(r, g, i)->has_pca && grun(r, g, i)->pca.cat[k]) return grun(r, g, i);
    return NULL;
}

/* Category names across the drawn runs, in order of first appearance; map[p][c] = index. */
typedef struct cat_union {
    const char *names[256];
    int n;
    int total;                  /* n once every drawn run's names are in (sets the palette) */
} cat_union;

static int cat_index(cat_union *cu, const char *name) {
    for (int i = 0; i < cu->n; i++)
        if (!strcmp(cu->names[i], name)) return i;
    if (cu->n == 256) return 255;
    cu->names[cu->n] = name;
    return cu->n++;
}

/* Whether point i of n is drawn: all when n <= MAX_PCA_POINTS, else a fixed pseudo-random
 * share of MAX_PCA_POINTS / n (a multiplicative hash of i: no aliasing with texts stored in
 * a periodic order, such as one per language in turn). */
static int pca_keep(int i, int n) {
    if (n <= MAX_PCA_POINTS) return 1;
    uint32_t h = (uint32_t)i * 2654435761u;
    return (double)h < (double)MAX_PCA_POINTS / n * 4294967296.0;
}

static void pca_axis_label(char *buf, size_t cap, int pc, double share) {
    if (isfinite(share)) snprintf(buf, cap, "PC%d (%.1f%% var)", pc, 100 * share);
    else snprintf(buf, cap, "PC%d", pc);
}

static void pca_panel(FILE *fp, const report *r, const group *g, const run *u, int k,
                      cat_union *cu, svg_panel *p) {
    const pca_data *d = &u->pca;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < d->n; i++) {
        if (!isfinite(d->x[i]) || !isfinite(d->y[i])) continue;
        x0 = fmin(x0, d->x[i]), x1 = fmax(x1, d->x[i]);
        y0 = fmin(y0, d->y[i]), y1 = fmax(y1, d->y[i]);
    }
    double px = (x1 - x0) * 0.03, py = (y1 - y0) * 0.03;
    svg_nice_ticks(x0 - px, x1 + px, 4, &p->xt);
    svg_nice_ticks(y0 - py, y1 + py, 4, &p->yt);
    char title[200], tbuf[200], xl[48], yl[48];
    int n = snprintf(title, sizeof title, "%s \xc2\xb7 %s", g->preset, g->label);
    if (n > 0 && (size_t)n < sizeof title)   /* space and seed when they fit */
        snprintf(title + n, sizeof title - (size_t)n, " (%c, seed %lld)", d->space, u->seed);
    if (svg_text_width(title, 14) > p->w + 40 && n > 0 && (size_t)n < sizeof title) title[n] = 0;
    p->title = svg_fit_text(title, 14, p->w + 40, tbuf, sizeof tbuf);
    pca_axis_label(xl, sizeof xl, 1, d->explained[0]);
    pca_axis_label(yl, sizeof yl, 2, d->explained[1]);
    p->xlabel = xl, p->ylabel = yl;
    svg_axes(fp, p);
    svg_clip_begin(fp, p);
    for (int i = 0; i < d->n; i++) {
        if (!pca_keep(i, d->n) || !isfinite(d->x[i]) || !isfinite(d->y[i])) continue;
        int c = cat_index(cu, d->names[k][d->cat[k][i]]);
        svg_marker(fp, svg_cat_shape(c, cu->total), svg_px(p, d->x[i]), svg_py(p, d->y[i]), 2.3,
                   svg_cat_color(c, cu->total), NULL, 0.65);
    }
    svg_clip_end(fp);
    (void)r;
}

/* pca_lang.svg (k = 0) or pca_label.svg (k = 1). */
static ecr_status plot_pca(report *r, int k) {
    const char *file = k == 0 ? "pca_lang.svg" : "pca_label.svg";
    const group *gs[MAX_PCA_PANELS];
    const run *us[MAX_PCA_PANELS];
    int n = 0, more = 0;
    cat_union cu = {.n = 0};
    for (int i = 0; i < r->n_groups; i++) {
        const run *u = pca_run(r, &r->groups[i], k);
        if (!u) continue;
        if (n == MAX_PCA_PANELS) { more++; continue; }
        gs[n] = &r->groups[i], us[n++] = u;
        for (int c = 0; c < u->pca.n_names[k]; c++) cat_index(&cu, u->pca.names[k][c]);
    }
    if (n == 0) {
        skip_plot(r, file, k == 0 ? "no eval.json has a \"pca\" with \"lang\" and \"langs\""
                                  : "no eval.json has a \"pca\" with \"label\" and \"labels\"");
        return ECR_OK;
    }
    if (more) warn("%s: %d more groups with a PCA not drawn (at most %d panels)", file, more,
                   MAX_PCA_PANELS);
    svg_legend_item items[256];
    for (int c = 0; c < cu.n; c++)
        items[c] = (svg_legend_item){cu.names[c], svg_cat_color(c, cu.n), svg_cat_shape(c, cu.n),
                                     0, NULL, -1};
    cu.total = cu.n;
    svg_grid grid = {n, 4, 250, 220, legend_width(cu.names, cu.n, k ? "label" : "language"), cu.n};
    ecr_atomic_file af;
    ecr_status st = out_open(r, file, &af);
    if (st) return st;
    svg_begin(af.fp, &grid, k == 0 ? "Text embeddings, 2-D PCA, by language"
                                   : "Text embeddings, 2-D PCA, by label",
              "first seed of each group; space u (ECR projection) or h (pooled hidden state) "
              "as in eval.json");
    for (int i = 0; i < n; i++) {
        svg_panel p;
        svg_grid_panel(&grid, i, &p);
        pca_panel(af.fp, r, gs[i], us[i], k, &cu, &p);
    }
    svg_legend(af.fp, &grid, k ? "label" : "language", items, cu.n);
    svg_end(af.fp);
    return out_commit(r, file, &af);
}

/* ---- P@1 bars ------------------------------------------------------------------------------------ */

/* Languages with a (non-null) P@1 on space sp in any run of groups [g0, g0 + ng), in order
 * of first appearance. */
static int p1_langs(const report *r, int g0, int ng, int sp, const char **langs, int cap) {
    int n = 0;
    for (int i = g0; i < g0 + ng; i++)
        for (int k = 0; k < r->groups[i].n; k++) {
            const geo_space *gs = &grun(r, &r->groups[i], k)->geo[sp];
            for (int j = 0; j < gs->n_p1; j++) {
                if (!isfinite(gs->p1[j])) continue;
                int f = 0;
                while (f < n && strcmp(langs[f], gs->p1_lang[j])) f++;
                if (f == n && n < cap) langs[n++] = gs->p1_lang[j];
            }
        }
    return n;
}

static int group_has_p1_langs(const report *r, const group *g, int sp) {
    for (int k = 0; k < g->n; k++)
        if (grun(r, g, k)->geo[sp].n_p1) return 1;
    return 0;
}

/* One bar with its error bar; lang NULL = the P@1 mean. */
static void p1_bar(FILE *fp, const report *r, const group *g, int sp, const char *lang,
                   const svg_panel *p, double x, double bw) {
    double mean, sd;
    int k = lang ? group_p1_lang(r, g, sp, lang, &mean, &sd)
                 : group_metric(r, g, sp, G_P1, &mean, &sd);
    if (!k) return;
    double y = svg_py(p, fmax(0, fmin(1, mean)));
    svg_bar(fp, x, y, bw, svg_py(p, 0) - y, g->color);
    if (isfinite(sd))
        svg_errbar(fp, x + bw / 2, svg_py(p, fmax(0, mean - sd)), x + bw / 2,
                   svg_py(p, fmin(1, mean + sd)), bw * 0.3, "#222222");
}

/* Panel of P@1 bars on space sp: clusters per language (+ "mean"), a bar per group with
 * data. */
static void p1_panel(FILE *fp, const report *r, int sp, const int *gi, int ng,
                     const char **langs, int nl, double cluster_w, double bw, svg_panel *p) {
    svg_nice_ticks(0, 1, 5, &p->yt);
    p->xt.n = 0;
    p->title = r->groups[gi[0]].preset;
    p->xlabel = "language (P@1 with English, both directions)";
    p->ylabel = sp == SP_U ? "P@1 on u" : "P@1 on h";
    svg_axes(fp, p);
    for (int l = 0; l <= nl; l++) {
        double cx = p->x + (l + 0.5) * cluster_w, x = cx - ng * bw / 2;
        for (int j = 0; j < ng; j++)
            p1_bar(fp, r, &r->groups[gi[j]], sp, l < nl ? langs[l] : NULL, p, x + j * bw, bw);
        svg_text(fp, cx, p->y + p->h + 18, 12, SVG_MIDDLE, l == nl, NULL, 0,
                 l < nl ? langs[l] : "mean");
    }
}

/* 1 if some run has u. */
static int any_u(const report *r) {
    for (int i = 0; i < r->n_runs; i++)
        if (r->runs[i].geo[SP_U].has) return 1;
    return 0;
}

/* p1_bars.svg (sp = SP_H, every group with P@1 on h) or p1_bars_u.svg (SP_U). */
static ecr_status plot_p1_bars(report *r, int sp) {
    const char *file = sp == SP_U ? "p1_bars_u.svg" : "p1_bars.svg";
    int first[64], count[64], np = preset_panels(r, first, count), panels = 0;
    int gi[64][64], ng[64], used[64] = {0}, max_ng = 1, max_nl = 1;
    const char *langs[64][64];
    int nl[64];
    for (int i = 0; i < np && i < 64; i++) {
        int n = 0;
        for (int k = first[i]; k < first[i] + count[i] && n < 64; k++)
            if (group_has_p1_langs(r, &r->groups[k], sp))
                gi[panels][n++] = k, used[r->groups[k].color] = 1;
        if (!n) continue;
        ng[panels] = n;
        nl[panels] = p1_langs(r, first[i], count[i], sp, langs[panels], 64);
        if (n > max_ng) max_ng = n;
        if (nl[panels] > max_nl) max_nl = nl[panels];
        panels++;
    }
    if (panels == 0) {
        skip_plot(r, file, sp == SP_H      ? "no eval.json has P@1 per language on h"
                           : !any_u(r)     ? "no run has u (no model with a projection)"
                                           : "no eval.json has P@1 per language on u");
        return ECR_OK;
    }
    double bw = fmin(16, fmax(5, 90.0 / max_ng)), cluster_w = fmax(52, max_ng * bw + 14);
    svg_legend_item items[64];
    const char *names[64];
    int n_items = label_legend(r, used, KEY_BAR, items, names);
    svg_grid grid = {panels, 1, fmax(420, (max_nl + 1) * cluster_w), 260,
                     legend_width(names, n_items, "method / tag"), n_items};
    ecr_atomic_file af;
    ecr_status st = out_open(r, file, &af);
    if (st) return st;
    svg_begin(af.fp, &grid,
              sp == SP_U ? "Cross-lingual retrieval P@1 per language on u"
                         : "Cross-lingual retrieval P@1 per language on h",
              sp == SP_U ? "mean over seeds, error bars \xc2\xb1 std; u = P h / \xe2\x80\x96P h"
                           "\xe2\x80\x96, groups whose models have a projection"
                         : "mean over seeds, error bars \xc2\xb1 std; h = the pooled hidden "
                           "state, every group");
    for (int i = 0; i < panels; i++) {
        svg_panel p;
        svg_grid_panel(&grid, i, &p);
        p1_panel(af.fp, r, sp, gi[i], ng[i], langs[i], nl[i], p.w / (nl[i] + 1), bw, &p);
    }
    svg_legend(af.fp, &grid, "method / tag", items, n_items);
    svg_end(af.fp);
    return out_commit(r, file, &af);
}

/* ---- trade-off scatter ---------------------------------------------------------------------------- */

typedef struct box {
    double x0, y0, x1, y1;
} box;

static int box_hit(const box *a, const box *b) {
    return a->x0 < b->x1 && b->x0 < a->x1 && a->y0 < b->y1 && b->y0 < a->y1;
}

/* Places a point label near the marker at (px, py) where it overlaps no obstacle (markers,
 * error bars, labels placed before) and stays in the panel. Candidates come in rings of
 * growing distance; within a ring: above right, below right, above left, below left, right,
 * left, then (past the first ring) above and below. A label beyond the first ring gets a
 * thin leader line to its marker, so crowded points keep their own label. With no free
 * place, the label goes above right. The label becomes an obstacle. */
static void place_label(FILE *fp, const svg_panel *p, double px, double py, const char *s,
                        box *placed, int *n_placed) {
    enum { RINGS = 4, SIDES = 8 };
    double w = svg_text_width(s, 12), bx = px + 7, by = py - 7;    /* baseline start */
    int found = 0, ring = 0;
    for (int r = 0; r < RINGS && !found; r++) {
        double e = 16.0 * r;
        const double dx[SIDES] = {7 + e, 7 + e, -7 - e - w, -7 - e - w, 9 + e, -9 - e - w,
                                  -w / 2, -w / 2};
        const double dy[SIDES] = {-7 - e, 17 + e, -7 - e, 17 + e, 4, 4, -9 - e, 19 + e};
        for (int c = 0; c < (r ? SIDES : SIDES - 2) && !found; c++) {
            box b = {px + dx[c], py + dy[c] - 11, px + dx[c] + w, py + dy[c] + 3};
            int ok = b.x0 >= p->x && b.x1 <= p->x + p->w && b.y0 >= p->y && b.y1 <= p->y + p->h;
            for (int i = 0; ok && i < *n_placed; i++) ok = !box_hit(&b, &placed[i]);
            if (ok) found = 1, ring = r, bx = px + dx[c], by = py + dy[c];
        }
    }
    box b = {bx, by - 11, bx + w, by + 3};
    placed[(*n_placed)++] = b;
    if (ring > 0) {    /* leader: from the marker's edge to the nearest point of the label */
        double qx = fmin(fmax(px, b.x0), b.x1), qy = fmin(fmax(py, b.y0), b.y1);
        double d = hypot(qx - px, qy - py);
        if (d > 8)
            svg_line(fp, px + (qx - px) * 6 / d, py + (qy - py) * 6 / d, qx, qy, "#9a9a9a", 0.8);
    }
    svg_text(fp, bx, by, 12, SVG_START, 0, NULL, 0, s);
}

typedef struct tpoint {
    double x, y, sx, sy;
    const group *g;
} tpoint;

/* Groups of [g0, g0 + ng) with val bits/byte and a P@1 mean on space sp. */
static int trade_points(const report *r, int g0, int ng, int sp, tpoint *tp) {
    int n = 0;
    for (int i = g0; i < g0 + ng; i++) {
        tpoint t = {.g = &r->groups[i]};
        if (group_metric(r, t.g, SP_LM, L_BPB, &t.x, &t.sx) &&
            group_metric(r, t.g, sp, G_P1, &t.y, &t.sy))
            tp[n++] = t;
    }
    return n;
}

static void trade_panel(FILE *fp, const report *r, int sp, const tpoint *tp, int n,
                        svg_panel *p) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        double sx = isfinite(tp[i].sx) ? tp[i].sx : 0, sy = isfinite(tp[i].sy) ? tp[i].sy : 0;
        x0 = fmin(x0, tp[i].x - sx), x1 = fmax(x1, tp[i].x + sx);
        y0 = fmin(y0, tp[i].y - sy), y1 = fmax(y1, tp[i].y + sy);
    }
    double px = fmax((x1 - x0) * 0.12, 0.02 * fmax(1, fabs(x1))), py = fmax((y1 - y0) * 0.12, 0.02);
    svg_nice_ticks(x0 - px, x1 + px, 5, &p->xt);
    /* P@1 lies in [0, 1]: no padding past those */
    svg_nice_ticks(y0 >= 0 ? fmax(0, y0 - py) : y0 - py, y1 <= 1 ? fmin(1, y1 + py) : y1 + py, 5,
                   &p->yt);
    p->title = tp[0].g->preset;
    p->xlabel = "validation bits/byte (lower is better)";
    p->ylabel = sp == SP_U ? "P@1 mean on u (higher is better)"
                           : "P@1 mean on h (higher is better)";
    svg_axes(fp, p);
    box placed[4 * 32 + 32];    /* markers, error bars, labels */
    int n_placed = 0;
    for (int i = 0; i < n; i++) {
        const char *c = svg_color(tp[i].g->color);
        double cx = svg_px(p, tp[i].x), cy = svg_py(p, tp[i].y);
        if (isfinite(tp[i].sx)) {
            double a = svg_px(p, tp[i].x - tp[i].sx), b = svg_px(p, tp[i].x + tp[i].sx);
            svg_errbar(fp, a, cy, b, cy, 3, c);
            placed[n_placed++] = (box){a - 1, cy - 3, b + 1, cy + 3};
        }
        if (isfinite(tp[i].sy)) {
            double a = svg_py(p, tp[i].y + tp[i].sy), b = svg_py(p, tp[i].y - tp[i].sy);
            svg_errbar(fp, cx, b, cx, a, 3, c);
            placed[n_placed++] = (box){cx - 3, a - 1, cx + 3, b + 1};
        }
        svg_marker(fp, svg_shape(tp[i].g->color), cx, cy, 5, c, "#ffffff", 1);
        placed[n_placed++] = (box){cx - 6, cy - 6, cx + 6, cy + 6};
    }
    for (int i = 0; i < n; i++)
        place_label(fp, p, svg_px(p, tp[i].x), svg_py(p, tp[i].y), tp[i].g->label, placed,
                    &n_placed);
    (void)r;
}

/* tradeoff.svg (P@1 on h, sp = SP_H) or tradeoff_u.svg (P@1 on u). */
static ecr_status plot_tradeoff(report *r, int sp) {
    const char *file = sp == SP_U ? "tradeoff_u.svg" : "tradeoff.svg";
    int first[64], count[64], np = preset_panels(r, first, count), panels = 0, used[64] = {0};
    tpoint tp[64][32];
    int nt[64];
    for (int i = 0; i < np && i < 64; i++) {
        nt[panels] = trade_points(r, first[i], count[i] < 32 ? count[i] : 32, sp, tp[panels]);
        for (int k = 0; k < nt[panels]; k++) used[tp[panels][k].g->color] = 1;
        if (nt[panels]) panels++;
    }
    if (panels == 0) {
        skip_plot(r, file, sp == SP_H  ? "no group has both val bits/byte and a P@1 mean on h"
                           : !any_u(r) ? "no run has u (no model with a projection)"
                                       : "no group has both val bits/byte and a P@1 mean on u");
        return ECR_OK;
    }
    svg_legend_item items[64];
    const char *names[64];
    int n_items = label_legend(r, used, KEY_POINT, items, names);
    svg_grid grid = {panels, 2, 420, 300, legend_width(names, n_items, "method / tag"), n_items};
    ecr_atomic_file af;
    ecr_status st = out_open(r, file, &af);
    if (st) return st;
    svg_begin(af.fp, &grid,
              sp == SP_U ? "Language modelling vs embedding structure on u"
                         : "Language modelling vs embedding structure on h",
              sp == SP_U ? "mean \xc2\xb1 std over seeds; P@1 on u = P h / \xe2\x80\x96P h"
                           "\xe2\x80\x96, groups whose models have a projection"
                         : "mean \xc2\xb1 std over seeds; P@1 on h (the pooled hidden state), "
                           "every group");
    for (int i = 0; i < panels; i++) {
        svg_panel p;
        svg_grid_panel(&grid, i, &p);
        trade_panel(af.fp, r, sp, tp[i], nt[i], &p);
    }
    svg_legend(af.fp, &grid, "method / tag", items, n_items);
    svg_end(af.fp);
    return out_commit(r, file, &af);
}

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
            const run *u = grun(r, &r->groups[i], k);
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
            const run *u = grun(r, &r->groups[i], j);
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
        int k = group_metric(r, g, sp, m, &mean, &sd);
        fmt_cell(cell, sizeof cell, k, g->n, mean, sd, cols[m].prec);
        fprintf(fp, " %s |", cell);
    }
    fputc('\n', fp);
}

/* The line under a u table naming the groups left out (none of their runs has u). */
static void md_without_u(FILE *fp, const report *r) {
    int n = 0;
    for (int i = 0; i < r->n_groups; i++) {
        const group *g = &r->groups[i];
        if (group_has_u(r, g)) continue;
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
    if (!any_u(r)) {
        fputs("No run has u: none of the models has a projection.\n\n", fp);
        return;
    }
    md_table_head(fp, geo_cols, G_N, marks);
    for (int i = 0; i < r->n_groups; i++)
        if (group_has_u(r, &r->groups[i]))
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
    int nl = p1_langs(r, 0, r->n_groups, sp, langs, 64);
    fprintf(fp, "## Cross-lingual P@1 per language on %c\n\n", space_name[sp]);
    if (sp == SP_U && !any_u(r)) {
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
        if (sp == SP_U && !group_has_u(r, g)) continue;
        md_group_head(fp, r, g);
        for (int l = 0; l <= nl; l++) {
            double mean, sd;
            char cell[96];
            int k = l < nl ? group_p1_lang(r, g, sp, langs[l], &mean, &sd)
                           : group_metric(r, g, sp, G_P1, &mean, &sd);
            fmt_cell(cell, sizeof cell, k, g->n, mean, sd, 3);
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

static ecr_status write_markdown(report *r) {
    ecr_atomic_file af;
    ecr_status st = out_open(r, "report.md", &af);
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
    return out_commit(r, "report.md", &af);
}

/* ---- command ---------------------------------------------------------------------------------- */

static ecr_status load_runs(report *r, const char *const *dirs, int n) {
    r->runs = calloc((size_t)n, sizeof *r->runs);
    if (!r->runs) return ecr_fail(ECR_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        r->n_runs = i + 1;
        ecr_status st = load_run(&r->runs[i], dirs[i]);
        if (st) return st;
    }
    return ECR_OK;
}

static ecr_status write_report(report *r) {
    ecr_status st = ecr_make_dirs(r->out_dir);
    for (int k = 0; k < S_N && !st; k++) st = plot_steps(r, k);
    for (int sp = 0; sp < SP_N && !st; sp++) st = plot_p1_bars(r, sp);
    for (int sp = 0; sp < SP_N && !st; sp++) st = plot_tradeoff(r, sp);
    for (int k = 0; k < 2 && !st; k++) st = plot_pca(r, k);
    if (!st) st = write_markdown(r);
    return st;
}

static void report_free(report *r) {
    for (int i = 0; i < r->n_runs; i++) run_free(&r->runs[i]);
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
    if (!st) st = make_groups(&r);
    if (!st) warn_runs(&r);
    if (!st && !r.quiet)
        fprintf(stderr, "ecr report: %d run%s in %d group%s -> %s\n", r.n_runs,
                r.n_runs == 1 ? "" : "s", r.n_groups, r.n_groups == 1 ? "" : "s", r.out_dir);
    if (!st) st = write_report(&r);
    report_free(&r);
    cli_args_free(&a);
    return st ? cli_fail(st) : 0;
}
