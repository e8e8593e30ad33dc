/* svg.h — internal to the ecr CLI: a small SVG 1.1 writer for `ecr report`'s plots.
 *
 * Everything writes to a caller-owned FILE* (an ecr_atomic_file's fp); nothing is
 * allocated and nothing fails (write errors surface at ecr_atomic_commit). Coordinates
 * are SVG user units (px) printed with two decimals, so the same calls give byte-identical
 * files. Fonts: sans-serif, tick labels 12 px, axis labels 13 px, titles 14-16 px.
 *
 * A figure is a grid of panels (svg_grid) with an optional legend column on the right:
 *   svg_grid g = {.n = 3, .cols = 2, .plot_w = 420, .plot_h = 280, .legend_w = 160,
 *                 .legend_n = 5};
 *   svg_begin(fp, &g, "Title", "subtitle or NULL");
 *   svg_panel p; svg_grid_panel(&g, i, &p);           // plot area of panel i
 *   svg_nice_ticks(lo, hi, 6, &p.xt); ...              // ranges (may widen lo/hi)
 *   p.title = ...; p.xlabel = ...; p.ylabel = ...;
 *   svg_axes(fp, &p);                                  // grid, ticks, labels, frame
 *   svg_clip_begin(fp, &p); ...data... svg_clip_end(fp);
 *   svg_legend(fp, &g, "legend title", items, n);
 *   svg_end(fp);
 */
#ifndef ECR_CLI_SVG_H
#define ECR_CLI_SVG_H
#include <stddef.h>
#include <stdio.h>

/* Series styles (one per group label in `ecr report`): style i has colour svg_color(i) from
 * the colour-blind-safe Okabe-Ito palette (its yellow left out: too pale on white) and
 * variant i / SVG_N_COLORS, so styles stay distinct past 7: lines solid, dashed, dotted
 * (svg_dash); markers circle, square, triangle, diamond (svg_shape); bars solid, pale with
 * an outline, white with an outline (svg_bar). */
#define SVG_N_COLORS 7
#define SVG_N_SHAPES 4
const char *svg_color(int i);
const char *svg_dash(int i);      /* stroke-dasharray, NULL = solid                          */
int svg_shape(int i);

/* Colours for n categories of a scatter plot: Okabe-Ito when n <= 7, else Paul Tol's
 * "muted" nine plus dark grey (10 colours); svg_cat_shape changes the marker after that. */
const char *svg_cat_color(int i, int n);
int svg_cat_shape(int i, int n);

/* Ticks over [lo, hi]: step is 1, 2 or 5 times a power of ten, chosen for about `target`
 * intervals; lo and hi are widened to multiples of step. n = tick count. decimals: digits
 * after the point that the step needs. thousands: label ticks as "15k" (large step axes). */
typedef struct svg_ticks {
    double lo, hi, step;
    int n, decimals, thousands;
} svg_ticks;
/* Fills t for data in [lo, hi] (lo == hi or non-finite bounds give a unit range). */
void svg_nice_ticks(double lo, double hi, int target, svg_ticks *t);
/* The label of tick value v ("0.25", "15k", "-3"); never "-0". buf of >= 32 bytes. */
void svg_tick_label(const svg_ticks *t, double v, char *buf, int cap);

/* One panel: its plot area (px) and axes. xt.n == 0: no x ticks (categorical axes drawn
 * by the caller). id must be unique within the file (it names the clip path). */
typedef struct svg_panel {
    double x, y, w, h;
    svg_ticks xt, yt;
    const char *title, *xlabel, *ylabel;   /* NULL = none                               */
    int id;
} svg_panel;
double svg_px(const svg_panel *p, double x);   /* data x -> px */
double svg_py(const svg_panel *p, double y);   /* data y -> px */

/* A grid of n panels in `cols` columns, each plot area plot_w x plot_h plus margins for
 * its title, tick labels and axis labels; a legend column of legend_w px on the right
 * holding legend_n items; the figure title and subtitle on top. */
typedef struct svg_grid {
    int n, cols;
    double plot_w, plot_h;
    double legend_w;
    int legend_n;
} svg_grid;
void svg_grid_size(const svg_grid *g, double *width, double *height);
/* Plot area of panel i (row-major); sets id = i + 1, clears ticks and labels. */
void svg_grid_panel(const svg_grid *g, int i, svg_panel *p);

/* Approximate rendered width (px) of UTF-8 text at font size `size`. */
double svg_text_width(const char *s, double size);

/* s itself when it fits max_w px at font `size`, else a prefix of it ending in "…" written
 * to buf (cap bytes, >= 8). */
const char *svg_fit_text(const char *s, double size, double max_w, char *buf, size_t cap);

/* XML declaration, <svg> with viewBox, white background, title and subtitle (wrapped to
 * two lines when wider than the figure). */
void svg_begin(FILE *fp, const svg_grid *g, const char *title, const char *subtitle);
void svg_end(FILE *fp);
/* Writes s with & < > " ' escaped (and control bytes dropped). */
void svg_escape(FILE *fp, const char *s);

typedef enum { SVG_START, SVG_MIDDLE, SVG_END } svg_anchor;
/* Text at (x, y) (baseline). bold: 0/1. fill NULL = dark grey. rotate: degrees about (x, y). */
void svg_text(FILE *fp, double x, double y, double size, svg_anchor anchor, int bold,
              const char *fill, double rotate, const char *s);
void svg_line(FILE *fp, double x1, double y1, double x2, double y2, const char *stroke,
              double width);
/* dash NULL = solid. Points with a non-finite coordinate break the line. Data coords. */
void svg_polyline(FILE *fp, const svg_panel *p, const double *x, const double *y, int n,
                  const char *stroke, double width, const char *dash);
void svg_rect(FILE *fp, double x, double y, double w, double h, const char *fill,
              const char *stroke);
/* A bar (top-left x, y; w x h px) in series style `style`. */
void svg_bar(FILE *fp, double x, double y, double w, double h, int style);
/* A marker of `shape` (0 circle, 1 square, 2 triangle, 3 diamond; wraps) with radius r at (cx, cy) px; opacity 1 = opaque; stroke NULL = none. */
void svg_marker(FILE *fp, int shape, double cx, double cy, double r, const char *fill,
                const char *stroke, double opacity);
/* Error bar from (x1, y1) to (x2, y2) px with caps of half-width cap across it. */
void svg_errbar(FILE *fp, double x1, double y1, double x2, double y2, double cap,
                const char *stroke);

/* Light grey grid at the ticks, tick labels, frame, panel title and axis labels. */
void svg_axes(FILE *fp, const svg_panel *p);
/* Data drawn between these is clipped to the plot area (widened by 6 px left and right so
 * markers on the first and last x tick stay whole). */
void svg_clip_begin(FILE *fp, const svg_panel *p);
void svg_clip_end(FILE *fp);

/* One legend entry: a line sample in `color` (line = 1, dash NULL = solid), a marker of
 * `shape` (-1 = none), or a bar swatch of series style bar_style (-1 = none). */
typedef struct svg_legend_item {
    const char *label;
    const char *color;
    int shape;
    int line;
    const char *dash;
    int bar_style;
} svg_legend_item;
/* The legend in the grid's legend column (labels longer than the column are cut with "…"). */
void svg_legend(FILE *fp, const svg_grid *g, const char *title, const svg_legend_item *items,
                int n);
#endif
