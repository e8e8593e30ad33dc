/* metrics_nn.c — the neighbour metrics (contract: ecr.h, "Metrics"): blocks of cosine
 * similarities S = Q C^T of unit rows, one sgemm per block of at most SIM_BR query rows,
 * reduced row by row (top-k, argmax, per-label sums) into k-NN lists and overlap,
 * silhouette, cross-lingual P@1, label transfer and anchor codes and agreement. */
#include "ecr.h"
#include "util.h"
#include "metrics_internal.h"
#include "matmul.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef ECR_HAVE_OMP
#include <omp.h>
#endif

/* ---- blocked similarity passes -------------------------------------------------------------- */

/* For every query row i: s = <q_i, c_j> for all candidates j (a row of S = Q C^T [nq, nc]),
 * handed to row(ctx, i, s, tid). Q [nq, d], C [nc, d]. */
typedef void (*sim_row_fn)(void *ctx, int64_t i, const float *s, int tid);

static ecr_status sim_pass(const float *q, int64_t nq, const float *c, int64_t nc, int d,
                           sim_row_fn row, void *ctx) {
    if (nq == 0 || nc == 0) return ECR_OK;
    int64_t br = SIM_FLOATS / nc;
    if (br > SIM_BR) br = SIM_BR;
    if (br < 1) br = 1;
    int nt = ecr_get_threads();
    float *buf = malloc((size_t)nt * br * nc * sizeof *buf);
    if (!buf) return ecr_fail(ECR_E_NOMEM, "metrics: similarities: out of memory");
    int64_t nblk = (nq + br - 1) / br;
ECR_OMP(parallel for schedule(dynamic, 1))
    for (int64_t b = 0; b < nblk; b++) {
        int tid = ecr_thread_id();
        int64_t r0 = b * br;
        int m = (int)(nq - r0 < br ? nq - r0 : br);
        float *s = buf + (size_t)tid * br * nc;
        ecr_sgemm(0, 1, m, (int)nc, d, 1.0f, q + (size_t)r0 * d, d, c, d, 0.0f, s, (int)nc);
        for (int r = 0; r < m; r++) row(ctx, r0 + r, s + (size_t)r * nc, tid);
    }
    free(buf);
    return ECR_OK;
}

/* Top-k of one row (value desc, index asc): vals/idx sorted, *m filled. */
static inline void topk_push(float *vals, int32_t *idx, int *m, int k, float v, int32_t j) {
    int pos;
    if (*m < k) pos = (*m)++;
    else if (v > vals[k - 1]) pos = k - 1;
    else return;
    while (pos > 0 && vals[pos - 1] < v) {
        vals[pos] = vals[pos - 1];
        idx[pos] = idx[pos - 1];
        pos--;
    }
    vals[pos] = v;
    idx[pos] = j;
}

/* Neighbour lists and silhouette terms over the self-similarity of one matrix. */
typedef struct nn_ctx {
    int k;                    /* 0: no neighbour lists                                        */
    int32_t *nbr;             /* [n, k]                                                       */
    float *tv;                /* [threads, k] scratch                                         */
    const int32_t *label;     /* NULL: no silhouette                                          */
    int n_labels;
    const int64_t *count;     /* [n_labels] texts per label                                   */
    double *acc;              /* [threads, n_labels]                                          */
    double *sil;              /* [n] s_i (NaN for texts without a label)                      */
} nn_ctx;

static void silhouette_row(nn_ctx *c, int64_t i, const float *s, int64_t nc, double *acc) {
    int li = c->label[i];
    if (li < 0) {
        c->sil[i] = NAN;
        return;
    }
    memset(acc, 0, (size_t)c->n_labels * sizeof *acc);
    for (int64_t j = 0; j < nc; j++) {
        int l = c->label[j];
        if (l < 0 || j == i) continue;
        float dist = 1.0f - s[j];
        dist = dist < 0.0f ? 0.0f : dist > 2.0f ? 2.0f : dist;
        acc[l] += dist;
    }
    if (c->count[li] <= 1) {
        c->sil[i] = 0.0;
        return;
    }
    double a = acc[li] / (double)(c->count[li] - 1), b = INFINITY;
    for (int l = 0; l < c->n_labels; l++)
        if (l != li && c->count[l] > 0 && acc[l] / (double)c->count[l] < b) b = acc[l] / (double)c->count[l];
    double mx = a > b ? a : b;
    c->sil[i] = mx > 0.0 ? (b - a) / mx : 0.0;
}

typedef struct self_ctx {
    nn_ctx nn;
    int64_t n;
} self_ctx;

static void self_row(void *vctx, int64_t i, const float *s, int tid) {
    self_ctx *c = vctx;
    if (c->nn.k > 0) {
        int k = c->nn.k, m = 0;
        float *tv = c->nn.tv + (size_t)tid * k;
        int32_t *ti = c->nn.nbr + (size_t)i * k;
        for (int64_t j = 0; j < c->n; j++)
            if (j != i) topk_push(tv, ti, &m, k, s[j], (int32_t)j);
    }
    if (c->nn.label) silhouette_row(&c->nn, i, s, c->n, c->nn.acc + (size_t)tid * c->nn.n_labels);
}

/* One pass over xn [n, d] (normalised): neighbour lists nbr [n, k] (k = 0: none) and the
 * silhouette by label (label NULL: none; *sil = NaN if undefined). */
ecr_status mt_self_pass(const float *xn, int64_t n, int d, int k, int32_t *nbr,
                            const int32_t *label, int n_labels, double *sil) {
    self_ctx c;
    memset(&c, 0, sizeof c);
    c.n = n;
    c.nn.k = k;
    c.nn.nbr = nbr;
    int nt = ecr_get_threads();
    int64_t *count = NULL;
    int present = 0;
    int64_t labelled = 0;
    if (label) {
        count = calloc((size_t)n_labels + 1, sizeof *count);
        if (!count) return ecr_fail(ECR_E_NOMEM, "metrics: silhouette: out of memory");
        for (int64_t i = 0; i < n; i++)
            if (label[i] >= 0) count[label[i]]++, labelled++;
        for (int l = 0; l < n_labels; l++) present += count[l] > 0;
        if (present >= 2 && present <= labelled - 1) {
            c.nn.label = label;
            c.nn.n_labels = n_labels;
            c.nn.count = count;
        }
        *sil = NAN;
    }
    if (!c.nn.k && !c.nn.label) {
        free(count);
        return ECR_OK;
    }
    c.nn.tv = malloc(((size_t)nt * (k > 0 ? k : 1)) * sizeof *c.nn.tv);
    c.nn.acc = malloc(((size_t)nt * (n_labels > 0 ? n_labels : 1)) * sizeof *c.nn.acc);
    c.nn.sil = c.nn.label ? malloc((size_t)n * sizeof *c.nn.sil) : NULL;
    ecr_status st = (c.nn.tv && c.nn.acc && (c.nn.sil || !c.nn.label))
                        ? ECR_OK : ecr_fail(ECR_E_NOMEM, "metrics: neighbours: out of memory");
    if (!st) st = sim_pass(xn, n, xn, n, d, self_row, &c);
    if (!st && c.nn.label) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++)
            if (label[i] >= 0) sum += c.nn.sil[i];
        *sil = sum / (double)labelled;
    }
    free(c.nn.tv);
    free(c.nn.acc);
    free(c.nn.sil);
    free(count);
    return st;
}

ecr_status mt_check_labels(const int32_t *v, int64_t n, int n_values, const char *what) {
    if (!v) return ecr_fail(ECR_E_INVALID, "metrics: %s: no index column", what);
    for (int64_t i = 0; i < n; i++)
        if (v[i] < -1 || v[i] >= n_values)
            return ecr_fail(ECR_E_INVALID, "metrics: %s: row %lld: index %d outside [-1, %d)", what,
                            (long long)i, v[i], n_values);
    return ECR_OK;
}

ecr_status ecr_metric_knn(const float *x, int64_t n, int d, int k, int32_t *nbr) {
    ecr_status st = mt_check_matrix(x, n, d, "k-NN");
    if (st) return st;
    if (k < 1 || k >= n || !nbr)
        return ecr_fail(ECR_E_INVALID, "metrics: k-NN: k = %d needs 1 <= k < rows (%lld)", k, (long long)n);
    float *xn = mt_normalised_copy(x, n, d);
    if (!xn) return ecr_fail(ECR_E_NOMEM, "metrics: k-NN: out of memory");
    st = mt_self_pass(xn, n, d, k, nbr, NULL, 0, NULL);
    free(xn);
    return st;
}

double ecr_metric_knn_overlap(const int32_t *a, const int32_t *b, int64_t n, int k) {
    if (n <= 0 || k <= 0) return NAN;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t *ra = a + (size_t)i * k, *rb = b + (size_t)i * k;
        int hit = 0;
        for (int p = 0; p < k; p++)
            for (int q = 0; q < k; q++)
                if (ra[p] == rb[q]) {
                    hit++;
                    break;
                }
        sum += (double)hit / k;
    }
    return sum / (double)n;
}

ecr_status ecr_metric_silhouette(const float *x, int64_t n, int d, const int32_t *label, int n_labels,
                                 double *out) {
    ecr_status st = mt_check_matrix(x, n, d, "silhouette");
    if (!st) st = mt_check_labels(label, n, n_labels, "silhouette: label");
    if (st) return st;
    float *xn = mt_normalised_copy(x, n, d);
    if (!xn) return ecr_fail(ECR_E_NOMEM, "metrics: silhouette: out of memory");
    st = mt_self_pass(xn, n, d, 0, NULL, label, n_labels, out);
    free(xn);
    return st;
}

/* ---- cross-lingual passes (English against each other language) -------------------------- */

/* Rows of xn [n, d] with lang == l and key >= 0, gathered: rows [cnt, d], idx [cnt]. */
static int64_t gather(const float *xn, int64_t n, int d, const int32_t *lang, int l, const int32_t *key,
                      float *rows, int64_t *idx) {
    int64_t c = 0;
    for (int64_t i = 0; i < n; i++)
        if (lang[i] == l && key[i] >= 0) {
            idx[c] = i;
            memcpy(rows + (size_t)c * d, xn + (size_t)i * d, (size_t)d * sizeof(float));
            c++;
        }
    return c;
}

typedef struct p1_ctx {
    const int64_t *qi, *ci;   /* query / candidate rows of the full matrix                    */
    int64_t nc;
    const int32_t *group;
    const uint8_t *has;       /* [n_groups] the group has a candidate                         */
    int8_t *hit;              /* [nq] -1 not counted, 0 miss, 1 hit                           */
} p1_ctx;

static void p1_row(void *vctx, int64_t i, const float *s, int tid) {
    (void)tid;
    p1_ctx *c = vctx;
    int32_t g = c->group[c->qi[i]];
    if (!c->has[g]) {
        c->hit[i] = -1;
        return;
    }
    int64_t best = 0;
    for (int64_t j = 1; j < c->nc; j++)
        if (s[j] > s[best]) best = j;
    c->hit[i] = c->group[c->ci[best]] == g;
}

/* Hit rate of queries (qrows, qi) against candidates (crows, ci); NaN if none counts. */
static ecr_status p1_direction(const float *qrows, const int64_t *qi, int64_t nq, const float *crows,
                               const int64_t *ci, int64_t nc, int d, const int32_t *group,
                               uint8_t *has, int64_t n_groups, int8_t *hit, double *rate) {
    memset(has, 0, (size_t)n_groups);
    for (int64_t j = 0; j < nc; j++) has[group[ci[j]]] = 1;
    p1_ctx c = {qi, ci, nc, group, has, hit};
    *rate = NAN;
    if (nq == 0 || nc == 0) return ECR_OK;
    ecr_status st = sim_pass(qrows, nq, crows, nc, d, p1_row, &c);
    if (st) return st;
    int64_t cnt = 0, hits = 0;
    for (int64_t i = 0; i < nq; i++)
        if (hit[i] >= 0) cnt++, hits += hit[i];
    if (cnt > 0) *rate = (double)hits / (double)cnt;
    return ECR_OK;
}

static void mean_over(const double *v, int n, double *mean) {
    double s = 0.0;
    int c = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(v[i])) s += v[i], c++;
    *mean = c ? s / c : NAN;
}

/* P@1 on normalised rows. */
ecr_status mt_p1_of(const float *xn, int64_t n, int d, const int32_t *lang, const int32_t *group,
                        int n_langs, int en, double *per_lang, double *mean) {
    for (int l = 0; l < n_langs; l++) per_lang[l] = NAN;
    *mean = NAN;
    if (en < 0 || en >= n_langs) return ECR_OK;
    int64_t n_groups = 0;
    for (int64_t i = 0; i < n; i++)
        if (group[i] + (int64_t)1 > n_groups) n_groups = group[i] + (int64_t)1;
    float *er = malloc(((size_t)n * d + 1) * sizeof *er), *xr = malloc(((size_t)n * d + 1) * sizeof *xr);
    int64_t *ei = malloc(((size_t)n + 1) * sizeof *ei), *xi = malloc(((size_t)n + 1) * sizeof *xi);
    uint8_t *has = malloc((size_t)n_groups + 1);
    int8_t *hit = malloc((size_t)n + 1);
    ecr_status st = (er && xr && ei && xi && has && hit) ? ECR_OK
                        : ecr_fail(ECR_E_NOMEM, "metrics: retrieval: out of memory");
    int64_t ne = st ? 0 : gather(xn, n, d, lang, en, group, er, ei);
    for (int l = 0; !st && l < n_langs; l++) {
        if (l == en) continue;
        int64_t nx = gather(xn, n, d, lang, l, group, xr, xi);
        if (nx == 0 || ne == 0) continue;
        double a = NAN, b = NAN;
        st = p1_direction(er, ei, ne, xr, xi, nx, d, group, has, n_groups, hit, &a);
        if (!st) st = p1_direction(xr, xi, nx, er, ei, ne, d, group, has, n_groups, hit, &b);
        if (!st) per_lang[l] = isnan(a) ? b : isnan(b) ? a : (a + b) / 2.0;
    }
    if (!st) mean_over(per_lang, n_langs, mean);
    free(er); free(xr); free(ei); free(xi); free(has); free(hit);
    return st;
}

ecr_status ecr_metric_retrieval_p1(const float *x, int64_t n, int d, const int32_t *lang,
                                   const int32_t *group, int n_langs, int en, double *per_lang,
                                   double *mean) {
    ecr_status st = mt_check_matrix(x, n, d, "retrieval");
    if (!st) st = mt_check_labels(lang, n, n_langs, "retrieval: lang");
    if (!st) st = mt_check_labels(group, n, INT32_MAX, "retrieval: group");
    if (!st && !mean) st = ecr_fail(ECR_E_INVALID, "metrics: retrieval: no output for the mean");
    if (st) return st;
    double *pl = malloc(((size_t)n_langs + 1) * sizeof *pl);
    float *xn = mt_normalised_copy(x, n, d);
    if (!pl || !xn) st = ecr_fail(ECR_E_NOMEM, "metrics: retrieval: out of memory");
    if (!st) st = mt_p1_of(xn, n, d, lang, group, n_langs, en, pl, mean);
    if (!st && per_lang) memcpy(per_lang, pl, (size_t)n_langs * sizeof *pl);
    free(pl);
    free(xn);
    return st;
}

typedef struct lt_ctx {
    const int64_t *qi, *ci;   /* query (tested) / candidate (English) rows of the full matrix */
    int64_t nc;
    int k, n_labels;
    const int32_t *label;
    float *tv;                /* [threads, k]                                                 */
    int32_t *ti;              /* [threads, k]                                                 */
    int *votes;               /* [threads, n_labels]                                          */
    uint8_t *ok;              /* [nq] prediction correct                                      */
} lt_ctx;

static void lt_row(void *vctx, int64_t i, const float *s, int tid) {
    lt_ctx *c = vctx;
    float *tv = c->tv + (size_t)tid * c->k;
    int32_t *ti = c->ti + (size_t)tid * c->k;
    int *votes = c->votes + (size_t)tid * c->n_labels;
    int m = 0;
    for (int64_t j = 0; j < c->nc; j++) topk_push(tv, ti, &m, c->k, s[j], (int32_t)j);
    memset(votes, 0, (size_t)c->n_labels * sizeof *votes);
    for (int p = 0; p < m; p++) votes[c->label[c->ci[ti[p]]]]++;
    int best = 0;
    for (int l = 1; l < c->n_labels; l++)
        if (votes[l] > votes[best]) best = l;
    c->ok[i] = best == c->label[c->qi[i]];
}

/* Label transfer on normalised rows. */
ecr_status mt_transfer_of(const float *xn, int64_t n, int d, const int32_t *lang,
                              const int32_t *label, int n_langs, int n_labels, int en, int k,
                              double *per_lang, double *mean) {
    for (int l = 0; l < n_langs; l++) per_lang[l] = NAN;
    *mean = NAN;
    if (en < 0 || en >= n_langs || n_labels < 1) return ECR_OK;
    int nt = ecr_get_threads();
    float *er = malloc(((size_t)n * d + 1) * sizeof *er), *xr = malloc(((size_t)n * d + 1) * sizeof *xr);
    int64_t *ei = malloc(((size_t)n + 1) * sizeof *ei), *xi = malloc(((size_t)n + 1) * sizeof *xi);
    uint8_t *ok = malloc((size_t)n + 1);
    lt_ctx c;
    memset(&c, 0, sizeof c);
    c.tv = malloc((size_t)nt * k * sizeof *c.tv);
    c.ti = malloc((size_t)nt * k * sizeof *c.ti);
    c.votes = malloc((size_t)nt * n_labels * sizeof *c.votes);
    ecr_status st = (er && xr && ei && xi && ok && c.tv && c.ti && c.votes)
                        ? ECR_OK : ecr_fail(ECR_E_NOMEM, "metrics: label transfer: out of memory");
    int64_t ne = st ? 0 : gather(xn, n, d, lang, en, label, er, ei);
    c.qi = xi;
    c.ci = ei;
    c.nc = ne;
    c.k = (int)(ne < k ? ne : k);
    c.label = label;
    c.n_labels = n_labels;
    c.ok = ok;
    for (int l = 0; !st && ne > 0 && l < n_langs; l++) {
        if (l == en) continue;
        int64_t nx = gather(xn, n, d, lang, l, label, xr, xi);
        if (nx == 0) continue;
        st = sim_pass(xr, nx, er, ne, d, lt_row, &c);
        int64_t right = 0;
        for (int64_t i = 0; i < nx; i++) right += ok[i];
        per_lang[l] = (double)right / (double)nx;
    }
    if (!st) mean_over(per_lang, n_langs, mean);
    free(er); free(xr); free(ei); free(xi); free(ok);
    free(c.tv); free(c.ti); free(c.votes);
    return st;
}

ecr_status ecr_metric_label_transfer(const float *x, int64_t n, int d, const int32_t *lang,
                                     const int32_t *label, int n_langs, int n_labels, int en,
                                     int k, double *per_lang, double *mean) {
    ecr_status st = mt_check_matrix(x, n, d, "label transfer");
    if (!st) st = mt_check_labels(lang, n, n_langs, "label transfer: lang");
    if (!st) st = mt_check_labels(label, n, n_labels, "label transfer: label");
    if (!st && (k < 1 || !mean)) st = ecr_fail(ECR_E_INVALID, "metrics: label transfer: k = %d (>= 1 needed)", k);
    if (st) return st;
    double *pl = malloc(((size_t)n_langs + 1) * sizeof *pl);
    float *xn = mt_normalised_copy(x, n, d);
    if (!pl || !xn) st = ecr_fail(ECR_E_NOMEM, "metrics: label transfer: out of memory");
    if (!st) st = mt_transfer_of(xn, n, d, lang, label, n_langs, n_labels, en, k, pl, mean);
    if (!st && per_lang) memcpy(per_lang, pl, (size_t)n_langs * sizeof *pl);
    free(pl);
    free(xn);
    return st;
}

/* ---- anchors -------------------------------------------------------------------------------- */

typedef struct argmax_ctx {
    int64_t nc;
    uint16_t *best;           /* [nq] index of the most similar candidate                     */
} argmax_ctx;

static void argmax_row(void *vctx, int64_t i, const float *s, int tid) {
    (void)tid;
    argmax_ctx *c = vctx;
    int64_t best = 0;
    for (int64_t j = 1; j < c->nc; j++)
        if (s[j] > s[best]) best = j;
    c->best[i] = (uint16_t)best;
}

ecr_status ecr_metric_anchor_codes(const ecr_anchors *a, const float *emb, int64_t n, uint16_t *codes) {
    if (!a || a->k < 1 || a->k > ECR_ANCHORS_MAX_K || !codes)
        return ecr_fail(ECR_E_INVALID, "metrics: anchor codes: bad arguments");
    ecr_status st = mt_check_matrix(emb, n, a->dim, "anchor codes");
    if (st) return st;
    int D = a->dim;
    float *t = malloc(((size_t)n * D + 1) * sizeof *t);
    if (!t) return ecr_fail(ECR_E_NOMEM, "metrics: anchor codes: out of memory");
    /* as the fit prepares its rows: float difference, norm in double */
ECR_OMP(parallel for schedule(static))
    for (int64_t i = 0; i < n; i++) {
        const float *e = emb + (size_t)i * D;
        float *y = t + (size_t)i * D;
        double nn = 0.0;
        for (int j = 0; j < D; j++) {
            y[j] = e[j] - a->mean[j];
            nn += (double)y[j] * y[j];
        }
        double inv = nn > 0.0 ? 1.0 / sqrt(nn) : 0.0;
        for (int j = 0; j < D; j++) y[j] = (float)(y[j] * inv);
    }
    argmax_ctx c = {a->k, codes};
    st = sim_pass(t, n, a->anchors, a->k, D, argmax_row, &c);
    free(t);
    return st;
}

ecr_status mt_agreement_of(const float *un, int64_t n, int dim, const float *anchors, int k,
                               const uint16_t *codes, double *out) {
    uint16_t *best = malloc(((size_t)n + 1) * sizeof *best);
    if (!best) return ecr_fail(ECR_E_NOMEM, "metrics: anchor agreement: out of memory");
    argmax_ctx c = {k, best};
    ecr_status st = sim_pass(un, n, anchors, k, dim, argmax_row, &c);
    if (!st) {
        int64_t same = 0;
        for (int64_t i = 0; i < n; i++) same += best[i] == codes[i];
        *out = n > 0 ? (double)same / (double)n : NAN;
    }
    free(best);
    return st;
}

ecr_status mt_check_anchors(const float *anchors, int k, int dim, const uint16_t *codes, int64_t n) {
    if (k < 1 || k > ECR_ANCHORS_MAX_K || (n > 0 && !codes))
        return ecr_fail(ECR_E_INVALID, "metrics: anchor agreement: k = %d (1..%d) or no codes", k,
                        ECR_ANCHORS_MAX_K);
    ecr_status st = mt_check_matrix(anchors, k, dim, "anchors");
    for (int64_t i = 0; !st && i < n; i++)
        if (codes[i] >= k)
            st = ecr_fail(ECR_E_INVALID, "metrics: anchor agreement: code %u of row %lld is not below k = %d",
                          codes[i], (long long)i, k);
    return st;
}

ecr_status ecr_metric_anchor_agreement(const float *u, int64_t n, int dim, const float *anchors,
                                       int k, const uint16_t *codes, double *out) {
    ecr_status st = mt_check_matrix(u, n, dim, "anchor agreement");
    if (!st) st = mt_check_anchors(anchors, k, dim, codes, n);
    if (st) return st;
    float *un = mt_normalised_copy(u, n, dim);
    if (!un) return ecr_fail(ECR_E_NOMEM, "metrics: anchor agreement: out of memory");
    st = mt_agreement_of(un, n, dim, anchors, k, codes, out);
    free(un);
    return st;
}
