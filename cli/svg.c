/* svg.c — the SVG 1.1 writer behind `ecr report` (contracts in svg.h). */
#include "svg.h"

#include <math.h>
#include <string.h>

/* Figure layout (px): figure title band, then per panel cell: title above the plot area,
 * y tick labels and y axis label on the left, x tick labels and x axis label below. */
#define FIG_TOP 72.0
#define CELL_ML 74.0
#define CELL_MR 22.0
#define CELL_MT 30.0
#define CELL_MB 54.0
#define LEGEND_ROW 20.0
#define INK "#333333"
#define GRID "#e3e3e3"
#define FRAME "#9a9a9a"

const char *svg_color(int i) {
    static const char *okabe_ito[SVG_N_COLORS] = {
        "#0072B2", /* blue           */
        "#D55E00", /* vermillion     */
        "#009E73", /* bluish green   */
        "#CC79A7", /* reddish purple */
        "#E69F00", /* orange         */
        "#56B4E9", /* sky blue       */
        "#000000", /* black          */
    };
    return okabe_ito[(i < 0 ? 0 : i) % SVG_N_COLORS];
}

const char *svg_dash(int i) {
    static const char *dash[3] = {NULL, "7 4", "2 3"};
    return dash[((i < 0 ? 0 : i) / SVG_N_COLORS) % 3];
}

int svg_shape(int i) {
    return ((i < 0 ? 0 : i) / SVG_N_COLORS) % SVG_N_SHAPES;
}

#define N_MUTED 10
const char *svg_cat_color(int i, int n) {
    static const char *muted[N_MUTED] = {
        "#332288", "#88CCEE", "#44AA99", "#117733", "#999933",
        "#DDCC77", "#CC6677", "#882255", "#AA4499", "#555555",
    };
    if (n <= SVG_N_COLORS) return svg_color(i);
    return muted[(i < 0 ? 0 : i) % N_MUTED];
}

int svg_cat_shape(int i, int n) {
    return ((i < 0 ? 0 : i) / (n <= SVG_N_COLORS ? SVG_N_COLORS : N_MUTED)) % SVG_N_SHAPES;
}

/* ---- ticks ------------------------------------------------------------------------------ */

void svg_nice_ticks(double lo, double hi, int target, svg_ticks *t) {
    if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
    if (hi < lo) { double s = lo; lo = hi; hi = s; }
    if (hi - lo <= 1e-12 * fmax(1.0, fabs(hi))) {
        double d = lo == 0 ? 1 : fabs(lo) * 0.1;
        lo -= d, hi += d;
    }
    if (target < 1) target = 1;
    double raw = (hi - lo) / target, mag = pow(10, floor(log10(raw))), norm = raw / mag;
    double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    t->step = step;
    t->lo = floor(lo / step + 1e-9) * step;
    t->hi = ceil(hi / step - 1e-9) * step;
    t->n = (int)llround((t->hi - t->lo) / step) + 1;
    t->decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    t->thousands = step >= 1000 && fmax(fabs(t->lo), fabs(t->hi)) >= 10000;
}

void svg_tick_label(const svg_ticks *t, double v, char *buf, int cap) {
    if (fabs(v) < t->step * 1e-6) v = 0;
    if (t->thousands) {
        int d = t->decimals;
        double s = t->step / 1000;
        while (d < 3 && fabs(s * pow(10, d) - llround(s * pow(10, d))) > 1e-6) d++;
        snprintf(buf, (size_t)cap, "%.*fk", d, v / 1000);
    } else {
        snprintf(buf, (size_t)cap, "%.*f", t->decimals, v);
    }
}

double svg_px(const svg_panel *p, double x) {
    return p->x + (x - p->xt.lo) / (p->xt.hi - p->xt.lo) * p->w;
}

double svg_py(const svg_panel *p, double y) {
    return p->y + p->h - (y - p->yt.lo) / (p->yt.hi - p->yt.lo) * p->h;
}

/* ---- layout ----------------------------------------------------------------------------- */

static int grid_cols(const svg_grid *g) {
    int c = g->cols < 1 ? 1 : g->cols;
    return g->n > 0 && g->n < c ? g->n : c;
}

void svg_grid_size(const svg_grid *g, double *width, double *height) {
    int cols = grid_cols(g), rows = g->n > 0 ? (g->n + cols - 1) / cols : 1;
    *width = cols * (CELL_ML + g->plot_w + CELL_MR) + (g->legend_w > 0 ? g->legend_w + 10 : 0);
    *height = FIG_TOP + rows * (CELL_MT + g->plot_h + CELL_MB) + 6;
    double legend_h = FIG_TOP + CELL_MT + 30 + g->legend_n * LEGEND_ROW + 10;
    if (g->legend_w > 0 && legend_h > *height) *height = legend_h;
}

void svg_grid_panel(const svg_grid *g, int i, svg_panel *p) {
    int cols = grid_cols(g);
    memset(p, 0, sizeof *p);
    p->x = (i % cols) * (CELL_ML + g->plot_w + CELL_MR) + CELL_ML;
    p->y = FIG_TOP + (i / cols) * (CELL_MT + g->plot_h + CELL_MB) + CELL_MT;
    p->w = g->plot_w;
    p->h = g->plot_h;
    p->id = i + 1;
}

/* Bytes of the UTF-8 sequence starting with lead byte c (1 for stray bytes). */
static int utf8_len(unsigned char c) {
    return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

double svg_text_width(const char *s, double size) {
    double w = 0;
    for (const unsigned char *u = (const unsigned char *)s; *u;) {
        int k = utf8_len(*u);
        w += (k >= 3 && *u >= 0xE3) ? 1.0 : 0.62;   /* CJK (U+3000 and up): ~1 em */
        for (int j = 0; j < k && *u; j++) u++;
    }
    return w * size;
}

/* ---- primitives ------------------------------------------------------------------------- */

void svg_escape(FILE *fp, const char *s) {
    for (const unsigned char *u = (const unsigned char *)(s ? s : ""); *u; u++) {
        switch (*u) {
        case '&': fputs("&amp;", fp); break;
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '"': fputs("&quot;", fp); break;
        case '\'': fputs("&apos;", fp); break;
        default:
            if (*u >= 0x20 || *u == '\t') fputc(*u, fp);
            else if (*u == '\n') fputc(' ', fp);
        }
    }
}

/* The subtitle in one line, or two when it is wider than max_w (split at a space). */
static void subtitle_lines(FILE *fp, const char *s, double max_w) {
    const char *cut = NULL;
    char first[512];
    if (svg_text_width(s, 13) > max_w && strlen(s) < sizeof first)
        for (const char *sp = strchr(s, ' '); sp; sp = strchr(sp + 1, ' ')) {
            memcpy(first, s, (size_t)(sp - s));
            first[sp - s] = 0;
            if (cut && svg_text_width(first, 13) > max_w) break;
            cut = sp;
        }
    if (!cut) {
        svg_text(fp, 16, 47, 13, SVG_START, 0, "#555555", 0, s);
        return;
    }
    memcpy(first, s, (size_t)(cut - s));
    first[cut - s] = 0;
    svg_text(fp, 16, 46, 13, SVG_START, 0, "#555555", 0, first);
    svg_text(fp, 16, 63, 13, SVG_START, 0, "#555555", 0, cut + 1);
}

void svg_begin(FILE *fp, const svg_grid *g, const char *title, const char *subtitle) {
    double w, h;
    svg_grid_size(g, &w, &h);
    fprintf(fp, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
                "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
                "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n<title>",
            w, h, w, h);
    svg_escape(fp, title);
    fputs("</title>\n", fp);
    fprintf(fp, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", w, h);
    svg_text(fp, 16, 26, 16, SVG_START, 1, "#111111", 0, title);
    if (subtitle) subtitle_lines(fp, subtitle, w - 32);
}

void svg_end(FILE *fp) {
    fputs("</svg>\n", fp);
}

void svg_text(FILE *fp, double x, double y, double size, svg_anchor anchor, int bold,
              const char *fill, double rotate, const char *s) {
    static const char *anchors[] = {"start", "middle", "end"};
    fprintf(fp, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.0f\" fill=\"%s\"", x, y, size,
            fill ? fill : INK);
    if (anchor != SVG_START) fprintf(fp, " text-anchor=\"%s\"", anchors[anchor]);
    if (bold) fputs(" font-weight=\"bold\"", fp);
    if (rotate != 0) fprintf(fp, " transform=\"rotate(%.0f %.2f %.2f)\"", rotate, x, y);
    fputc('>', fp);
    svg_escape(fp, s);
    fputs("</text>\n", fp);
}

void svg_line(FILE *fp, double x1, double y1, double x2, double y2, const char *stroke,
              double width) {
    fprintf(fp, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                "stroke-width=\"%.2f\"/>\n", x1, y1, x2, y2, stroke, width);
}

/* Opens a <polyline>; the caller appends points. */
static void polyline_open(FILE *fp, const char *stroke, double width, const char *dash) {
    fprintf(fp, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\" "
                "stroke-linejoin=\"round\" stroke-linecap=\"round\"", stroke, width);
    if (dash) fprintf(fp, " stroke-dasharray=\"%s\"", dash);
    fputs(" points=\"", fp);
}

void svg_polyline(FILE *fp, const svg_panel *p, const double *x, const double *y, int n,
                  const char *stroke, double width, const char *dash) {
    int open = 0, k = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            if (open) fputs("\"/>\n", fp);
            open = 0;
            continue;
        }
        if (!open) polyline_open(fp, stroke, width, dash), open = 1, k = 0;
        fprintf(fp, "%s%.2f,%.2f", k == 0 ? "" : k % 10 == 0 ? "\n" : " ", svg_px(p, x[i]),
                svg_py(p, y[i]));
        k++;
    }
    if (open) fputs("\"/>\n", fp);
}

void svg_rect(FILE *fp, double x, double y, double w, double h, const char *fill,
              const char *stroke) {
    fprintf(fp, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"", x, y,
            w, h, fill ? fill : "none");
    if (stroke) fprintf(fp, " stroke=\"%s\" stroke-width=\"1\"", stroke);
    fputs("/>\n", fp);
}

void svg_bar(FILE *fp, double x, double y, double w, double h, int style) {
    int variant = ((style < 0 ? 0 : style) / SVG_N_COLORS) % 3;
    const char *c = svg_color(style);
    if (h < 0) h = 0;
    if (variant == 0) {
        svg_rect(fp, x, y, w, h, c, NULL);
        return;
    }
    fprintf(fp, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\" "
                "fill-opacity=\"%s\" stroke=\"%s\" stroke-width=\"1.5\"/>\n",
            x + 0.75, y + 0.75, w > 1.5 ? w - 1.5 : w, h > 1.5 ? h - 1.5 : h,
            variant == 1 ? c : "#ffffff", variant == 1 ? "0.35" : "1", c);
}

void svg_marker(FILE *fp, int shape, double cx, double cy, double r, const char *fill,
                const char *stroke, double opacity) {
    switch ((shape < 0 ? 0 : shape) % SVG_N_SHAPES) {
    case 0: fprintf(fp, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\"", cx, cy, r); break;
    case 1:
        fprintf(fp, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"", cx - 0.88 * r,
                cy - 0.88 * r, 1.76 * r, 1.76 * r);
        break;
    case 2:
        fprintf(fp, "<path d=\"M%.2f,%.2fL%.2f,%.2fL%.2f,%.2fZ\"", cx, cy - 1.15 * r,
                cx + 1.05 * r, cy + 0.75 * r, cx - 1.05 * r, cy + 0.75 * r);
        break;
    default:
        fprintf(fp, "<path d=\"M%.2f,%.2fL%.2f,%.2fL%.2f,%.2fL%.2f,%.2fZ\"", cx, cy - 1.2 * r,
                cx + 1.2 * r, cy, cx, cy + 1.2 * r, cx - 1.2 * r, cy);
    }
    fprintf(fp, " fill=\"%s\"", fill);
    if (opacity < 1) fprintf(fp, " fill-opacity=\"%.2f\"", opacity);
    if (stroke) fprintf(fp, " stroke=\"%s\" stroke-width=\"1\"", stroke);
    fputs("/>\n", fp);
}

void svg_errbar(FILE *fp, double x1, double y1, double x2, double y2, double cap,
                const char *stroke) {
    svg_line(fp, x1, y1, x2, y2, stroke, 1.2);
    int vertical = fabs(x2 - x1) < fabs(y2 - y1);
    double dx = vertical ? cap : 0, dy = vertical ? 0 : cap;
    svg_line(fp, x1 - dx, y1 - dy, x1 + dx, y1 + dy, stroke, 1.2);
    svg_line(fp, x2 - dx, y2 - dy, x2 + dx, y2 + dy, stroke, 1.2);
}

/* ---- axes, clipping, legend --------------------------------------------------------------- */

static void axes_grid(FILE *fp, const svg_panel *p) {
    char lab[32];
    for (int i = 0; i < p->yt.n; i++) {
        double v = p->yt.lo + i * p->yt.step, py = svg_py(p, v);
        svg_line(fp, p->x, py, p->x + p->w, py, GRID, 1);
        svg_line(fp, p->x - 4, py, p->x, py, FRAME, 1);
        svg_tick_label(&p->yt, v, lab, sizeof lab);
        svg_text(fp, p->x - 7, py + 4, 12, SVG_END, 0, NULL, 0, lab);
    }
    for (int i = 0; i < p->xt.n; i++) {
        double v = p->xt.lo + i * p->xt.step, px = svg_px(p, v);
        svg_line(fp, px, p->y, px, p->y + p->h, GRID, 1);
        svg_line(fp, px, p->y + p->h, px, p->y + p->h + 4, FRAME, 1);
        svg_tick_label(&p->xt, v, lab, sizeof lab);
        svg_text(fp, px, p->y + p->h + 18, 12, SVG_MIDDLE, 0, NULL, 0, lab);
    }
}

void svg_axes(FILE *fp, const svg_panel *p) {
    fprintf(fp, "<g id=\"panel%d\">\n", p->id);
    axes_grid(fp, p);
    svg_rect(fp, p->x, p->y, p->w, p->h, NULL, FRAME);
    if (p->title) svg_text(fp, p->x + p->w / 2, p->y - 11, 14, SVG_MIDDLE, 1, "#111111", 0,
                           p->title);
    if (p->xlabel) svg_text(fp, p->x + p->w / 2, p->y + p->h + 41, 13, SVG_MIDDLE, 0, NULL, 0,
                            p->xlabel);
    if (p->ylabel) svg_text(fp, p->x - 56, p->y + p->h / 2, 13, SVG_MIDDLE, 0, NULL, -90,
                            p->ylabel);
    fputs("</g>\n", fp);
}

void svg_clip_begin(FILE *fp, const svg_panel *p) {
    fprintf(fp, "<defs><clipPath id=\"clip%d\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                "height=\"%.2f\"/></clipPath></defs>\n<g clip-path=\"url(#clip%d)\">\n",
            p->id, p->x - 6, p->y, p->w + 12, p->h, p->id);
}

void svg_clip_end(FILE *fp) {
    fputs("</g>\n", fp);
}

const char *svg_fit_text(const char *s, double size, double max_w, char *buf, size_t cap) {
    if (svg_text_width(s, size) <= max_w) return s;
    size_t n = 0;
    buf[0] = 0;
    for (const char *u = s; *u;) {
        size_t k = (size_t)utf8_len((unsigned char)*u);
        if (n + k + 4 > cap) break;
        memcpy(buf + n, u, k);
        buf[n + k] = 0;
        if (svg_text_width(buf, size) + size * 0.62 > max_w) break;
        n += k;
        u += k;
    }
    memcpy(buf + n, "\xe2\x80\xa6", 4);   /* U+2026 */
    return buf;
}

void svg_legend(FILE *fp, const svg_grid *g, const char *title, const svg_legend_item *items,
                int n) {
    double w, h, x, y = FIG_TOP + CELL_MT;
    svg_grid_size(g, &w, &h);
    x = w - g->legend_w;
    fputs("<g id=\"legend\">\n", fp);
    if (title) svg_text(fp, x, y + 4, 13, SVG_START, 1, "#111111", 0, title);
    for (int i = 0; i < n; i++) {
        double cy = y + 28 + i * LEGEND_ROW;
        char buf[256];
        if (items[i].line) {
            fprintf(fp, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                        "stroke-width=\"2.5\"", x, cy - 4, x + 24, cy - 4, items[i].color);
            if (items[i].dash) fprintf(fp, " stroke-dasharray=\"%s\"", items[i].dash);
            fputs("/>\n", fp);
        }
        if (items[i].bar_style >= 0) svg_bar(fp, x + 5, cy - 11, 14, 14, items[i].bar_style);
        if (items[i].shape >= 0) svg_marker(fp, items[i].shape, x + 12, cy - 4, 4.5,
                                            items[i].color, NULL, 1);
        svg_text(fp, x + 32, cy, 12, SVG_START, 0, NULL, 0,
                 svg_fit_text(items[i].label, 12, g->legend_w - 36, buf, sizeof buf));
    }
    fputs("</g>\n", fp);
}
