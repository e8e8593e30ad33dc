/* report_plot.c — `ecr report`: the SVG plots (curves over steps, PCA maps, P@1 bars,
 * trade-off scatters; primitives in svg.c). */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- curves over steps ------------------------------------------------------------------------ */

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
    {"p1_steps.svg", "P@1 on h during training",
     "val_p1: cross-lingual retrieval P@1 against English on the validation texts' h at each "
     "validation pass, mean \xc2\xb1 std over seeds",
     "P@1 on h", 1, 0},
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
    return isfinite(rp_dvec_last(&u->veru));
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
            st = rp_dvec_push(xs, u->step.v[i]);
            if (!st) st = rp_dvec_push(ys, sm[i]);
        }
        free(sm);
        return st;
    }
    const dvec *v = kind == S_VAL ? &u->vloss : kind == S_P1 ? &u->vp1 : run_er_u(u) ? &u->veru : &u->ver;
    for (int i = 0; kind != S_TRAIN && i < u->vstep.n && !st; i++) {
        if (!isfinite(v->v[i])) continue;
        st = rp_dvec_push(xs, u->vstep.v[i]);
        if (!st) st = rp_dvec_push(ys, v->v[i]);
    }
    return st;
}

typedef struct curve {
    dvec x, y, sd;              /* per step: mean over seeds, sample std (NaN if one seed) */
} curve;

static void curve_free(curve *c) {
    rp_dvec_free(&c->x);
    rp_dvec_free(&c->y);
    rp_dvec_free(&c->sd);
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
            rp_mean_std(v, m, &mean, &sd);
            st = rp_dvec_push(&c->x, p[i].x);
            if (!st) st = rp_dvec_push(&c->y, mean);
            if (!st) st = rp_dvec_push(&c->sd, sd);
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
    for (int k = 0; k < g->n && !st; k++) st = run_series(rp_grun(r, g, k), kind, &xs, &ys);
    pt *p = st ? NULL : malloc(((size_t)xs.n + 1) * sizeof *p);
    if (!st && !p) st = ecr_fail(ECR_E_NOMEM, "out of memory");
    if (!st) {
        for (int i = 0; i < xs.n; i++) p[i].x = xs.v[i], p[i].y = ys.v[i];
        qsort(p, (size_t)xs.n, sizeof *p, cmp_pt);
        st = merge_steps(p, xs.n, c);
    }
    free(p);
    rp_dvec_free(&xs);
    rp_dvec_free(&ys);
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
            const run *x = rp_grun(r, &r->groups[i], k);
            if (x->vstep.n == 0) continue;
            if (run_er_u(x)) u++;
            else if (isfinite(rp_dvec_last(&x->ver))) h++;
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
    if (panels == 0 && kind == S_P1) return ECR_OK; /* runs from before val_p1: no plot, no note */
    if (panels == 0) {
        rp_skip_plot(r, file, kind == S_TRAIN ? "no run has training steps in log.jsonl"
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
    ecr_status st = rp_out_open(r, file, &af);
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
    return rp_out_commit(r, file, &af);
}

ecr_status rp_plot_steps(report *r, int kind) {
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
        if (rp_grun(r, g, i)->has_pca && rp_grun(r, g, i)->pca.cat[k]) return rp_grun(r, g, i);
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
ecr_status rp_plot_pca(report *r, int k) {
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
        rp_skip_plot(r, file, k == 0 ? "no eval.json has a \"pca\" with \"lang\" and \"langs\""
                                  : "no eval.json has a \"pca\" with \"label\" and \"labels\"");
        return ECR_OK;
    }
    if (more) rp_warn("%s: %d more groups with a PCA not drawn (at most %d panels)", file, more,
                   MAX_PCA_PANELS);
    svg_legend_item items[256];
    for (int c = 0; c < cu.n; c++)
        items[c] = (svg_legend_item){cu.names[c], svg_cat_color(c, cu.n), svg_cat_shape(c, cu.n),
                                     0, NULL, -1};
    cu.total = cu.n;
    svg_grid grid = {n, 4, 250, 220, legend_width(cu.names, cu.n, k ? "label" : "language"), cu.n};
    ecr_atomic_file af;
    ecr_status st = rp_out_open(r, file, &af);
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
    return rp_out_commit(r, file, &af);
}

/* ---- P@1 bars ------------------------------------------------------------------------------------ */

/* Languages with a (non-null) P@1 on space sp in any run of groups [g0, g0 + ng), in order
 * of first appearance. */
int rp_p1_langs(const report *r, int g0, int ng, int sp, const char **langs, int cap) {
    int n = 0;
    for (int i = g0; i < g0 + ng; i++)
        for (int k = 0; k < r->groups[i].n; k++) {
            const geo_space *gs = &rp_grun(r, &r->groups[i], k)->geo[sp];
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
        if (rp_grun(r, g, k)->geo[sp].n_p1) return 1;
    return 0;
}

/* One bar with its error bar; lang NULL = the P@1 mean. */
static void p1_bar(FILE *fp, const report *r, const group *g, int sp, const char *lang,
                   const svg_panel *p, double x, double bw) {
    double mean, sd;
    int k = lang ? rp_group_p1_lang(r, g, sp, lang, &mean, &sd)
                 : rp_group_metric(r, g, sp, G_P1, &mean, &sd);
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
int rp_any_u(const report *r) {
    for (int i = 0; i < r->n_runs; i++)
        if (r->runs[i].geo[SP_U].has) return 1;
    return 0;
}

/* p1_bars.svg (sp = SP_H, every group with P@1 on h) or p1_bars_u.svg (SP_U). */
ecr_status rp_plot_p1_bars(report *r, int sp) {
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
        nl[panels] = rp_p1_langs(r, first[i], count[i], sp, langs[panels], 64);
        if (n > max_ng) max_ng = n;
        if (nl[panels] > max_nl) max_nl = nl[panels];
        panels++;
    }
    if (panels == 0) {
        rp_skip_plot(r, file, sp == SP_H      ? "no eval.json has P@1 per language on h"
                           : !rp_any_u(r)     ? "no run has u (no model with a projection)"
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
    ecr_status st = rp_out_open(r, file, &af);
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
    return rp_out_commit(r, file, &af);
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
        if (rp_group_metric(r, t.g, SP_LM, L_BPB, &t.x, &t.sx) &&
            rp_group_metric(r, t.g, sp, G_P1, &t.y, &t.sy))
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
ecr_status rp_plot_tradeoff(report *r, int sp) {
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
        rp_skip_plot(r, file, sp == SP_H  ? "no group has both val bits/byte and a P@1 mean on h"
                           : !rp_any_u(r) ? "no run has u (no model with a projection)"
                                       : "no group has both val bits/byte and a P@1 mean on u");
        return ECR_OK;
    }
    svg_legend_item items[64];
    const char *names[64];
    int n_items = label_legend(r, used, KEY_POINT, items, names);
    svg_grid grid = {panels, 2, 420, 300, legend_width(names, n_items, "method / tag"), n_items};
    ecr_atomic_file af;
    ecr_status st = rp_out_open(r, file, &af);
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
    return rp_out_commit(r, file, &af);
}
