/* metrics.c — embedding geometry, cross-lingual and task metrics (contract: ecr.h,
 * "Metrics"; definitions: DESIGN.md "Metrics"). Training stability is in stability.c, the
 * eigenvalue solver in base/linalg.c.
 *
 * Two kinds of work:
 *   covariance   Xc^T Yc [p, q] in double, Xc = X - 1 mean^T: 4 x 8 output tiles dealt
 *                to the threads of one parallel region (no barriers); each thread centres
 *                blocks of GR rows into its own double buffer and sums its tiles over the
 *                rows in order, so C is the same for any thread count. Effective rank = eigenvalues of
 *                Xc^T Xc (Householder + QL); CKA = Frobenius norms of three such products.
 *   neighbours   S = Q C^T of L2-normalised rows with sgemm, for blocks of at most 64 query
 *                rows [br, nc] (one block per thread, single-threaded sgemm inside the
 *                parallel region); a row callback reduces each row of S (top-k, argmax,
 *                per-label sums) into per-row results, which are then summed serially.
 *
 * Shapes are in the comments: [rows, cols], row-major. */
#include "ecr.h"
#include "util.h"
#include "matmul.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef ECR_HAVE_OMP
#include <omp.h>
#endif

enum {
    GR = 256,                 /* rows per block of the covariance products                   */
    TI = 4, TJ = 8,           /* covariance output tile                                      */
    SIM_BR = 64,              /* query rows per similarity block (at most)                   */
    SIM_FLOATS = 1 << 21,     /* similarity floats per thread (at most; 8 MB)                */
};

/* ---- argument checks and row normalisation ----------------------------------------------- */

static ecr_status check_matrix(const float *x, int64_t n, int d, const char *what) {
    if (n < 0 || d < 1 || (n > 0 && !x))
        return ecr_fail(ECR_E_INVALID, "metrics: %s: bad matrix (%lld rows, %d columns)", what,
                        (long long)n, d);
    if (n > INT32_MAX)
        return ecr_fail(ECR_E_INVALID, "metrics: %s: %lld rows (at most %d)", what, (long long)n,
                        INT32_MAX);
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + (size_t)i * d;
        for (int j = 0; j < d; j++)
            if (!isfinite(r[j]))
                return ecr_fail(ECR_E_INVALID, "metrics: %s: row %lld, column %d: value is not finite",
                                what, (long long)i, j);
    }
    return ECR_OK;
}

/* x [n, d] with each row of unit length (a zero row stays zero), or NULL when out of memory. */
static float *normalised_copy(const float *x, int64_t n, int d) {
    float *y = malloc(((size_t)n * d + 1) * sizeof *y);
    if (y) ecr_unit_rows(x, n, d, 0.0, y);
    return y;
}

/* ---- centred cross products in double ----------------------------------------------------- */

/* Column means mu[d] in double, summed in row order. */
static void column_mean(const float *x, int64_t n, int d, double *mu) {
    memset(mu, 0, (size_t)d * sizeof *mu);
    for (int64_t i = 0; i < n; i++) {
        const float *r = x + (size_t)i * d;
        for (int j = 0; j < d; j++) mu[j] += r[j];
    }
    for (int j = 0; j < d; j++) mu[j] = n > 0 ? mu[j] / (double)n : 0.0;
}

/* C[i0:i0+4, j0:j0+8] += A[:, i0..]^T B[:, j0..] over `rows` rows of the centred double
 * blocks A [rows, p], B [rows, q]. Full tiles keep their 4 x 8 sums in registers; edge
 * tiles are clipped. */
static void cov_tile(const double *A, int p, const double *B, int q, int rows, int i0, int j0,
                     double *C) {
    int ti = p - i0 < TI ? p - i0 : TI, tj = q - j0 < TJ ? q - j0 : TJ;
    double c[TI][TJ] = {{0}};
    if (ti == TI && tj == TJ) {
        for (int r = 0; r < rows; r++) {
            const double *a = A + (size_t)r * p + i0, *b = B + (size_t)r * q + j0;
            for (int ii = 0; ii < TI; ii++)
                for (int jj = 0; jj < TJ; jj++) c[ii][jj] += a[ii] * b[jj];
        }
    } else {
        for (int r = 0; r < rows; r++) {
            const double *a = A + (size_t)r * p + i0, *b = B + (size_t)r * q + j0;
            for (int ii = 0; ii < ti; ii++)
                for (int jj = 0; jj < tj; jj++) c[ii][jj] += a[ii] * b[jj];
        }
    }
    for (int ii = 0; ii < ti; ii++)
        for (int jj = 0; jj < tj; jj++) C[(size_t)(i0 + ii) * q + j0 + jj] += c[ii][jj];
}

/* o[rows, d] = x[rows, d] - mu in double. */
static void centre_block(const float *x, int rows, int d, const double *mu, double *o) {
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < d; j++) o[(size_t)r * d + j] = (double)x[(size_t)r * d + j] - mu[j];
}

static int team_size(void) {
#ifdef ECR_HAVE_OMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* C[p, q] = (X - 1 mx^T)^T (Y - 1 my^T) in double; X [n, p], Y [n, q]. sym: Y is X (p == q):
 * only tiles touching the upper triangle are computed, then mirrored. One parallel region
 * without barriers: the tiles are dealt round-robin to the threads; every thread walks the
 * rows in blocks of GR, centres each block into its own double buffer (a little duplicated
 * O(n (p + q)) work against the O(n p q) products) and sums its tiles in row order, so C
 * does not depend on the thread count. */
static ecr_status centred_cross(const float *x, int p, const double *mx, const float *y, int q,
                                const double *my, int64_t n, int sym, double *C) {
    int nti = (p + TI - 1) / TI, ntj = (q + TJ - 1) / TJ, nth_max = ecr_get_threads();
    int32_t *tiles = malloc(((size_t)nti * ntj + 1) * 2 * sizeof *tiles);
    size_t per = (size_t)GR * (p + (sym ? 0 : q));
    double *buf = malloc((size_t)nth_max * per * sizeof *buf);
    if (!tiles || !buf) {
        free(tiles);
        free(buf);
        return ecr_fail(ECR_E_NOMEM, "metrics: covariance: out of memory");
    }
    int64_t nt = 0;
    for (int a = 0; a < nti; a++)
        for (int b = 0; b < ntj; b++) {
            if (sym && b * TJ + TJ <= a * TI) continue; /* entirely below the diagonal */
            tiles[2 * nt] = a * TI;
            tiles[2 * nt + 1] = b * TJ;
            nt++;
        }
    memset(C, 0, (size_t)p * q * sizeof *C);
ECR_OMP(parallel)
    {
        int tid = ecr_thread_id(), nth = team_size();
        double *xa = buf + (size_t)tid * per, *ya = sym ? xa : xa + (size_t)GR * p;
        for (int64_t r0 = 0; r0 < n && tid < nt; r0 += GR) {
            int rows = (int)(n - r0 < GR ? n - r0 : GR);
            centre_block(x + (size_t)r0 * p, rows, p, mx, xa);
            if (!sym) centre_block(y + (size_t)r0 * q, rows, q, my, ya);
            for (int64_t t = tid; t < nt; t += nth)
                cov_tile(xa, p, ya, q, rows, tiles[2 * t], tiles[2 * t + 1], C);
        }
    }
    free(tiles);
    free(buf);
    if (sym)
        for (int i = 0; i < p; i++)
            for (int j = 0; j < i; j++) C[(size_t)i * p + j] = C[(size_t)j * p + i];
    return ECR_OK;
}

static double frobenius(const double *C, size_t len) {
    double s = 0.0;
    for (size_t i = 0; i < len; i++) s += C[i] * C[i];
    return sqrt(s);
}

/* Effective rank from the covariance C [d, d] (destroyed). */
static ecr_status erank_of_cov(double *C, int d, double *out) {
    double *w = malloc((size_t)d * sizeof *w);
    if (!w) return ecr_fail(ECR_E_NOMEM, "metrics: effective rank: out of memory");
    ecr_status st = ecr_sym_eigenvalues(C, d, w);
    if (!st) {
        double sum = 0.0;
        for (int k = 0; k < d; k++) {
            w[k] = w[k] > 0.0 ? sqrt(w[k]) : 0.0;
            sum += w[k];
        }
        double h = 0.0;
        for (int k = 0; k < d && sum > 0.0; k++) {
            double pk = w[k] / sum;
            if (pk > 0.0) h -= pk * log(pk);
        }
        *out = sum > 0.0 ? exp(h) : 0.0;
    }
    free(w);
    return st;
}

/* Centred covariance of X [n, d] (C [d, d], caller frees) and its column mean. */
static ecr_status covariance(const float *x, int64_t n, int d, double **C_out, double **mu_out) {
    double *mu = malloc((size_t)d * sizeof *mu), *C = malloc((size_t)d * d * sizeof *C);
    ecr_status st = (mu && C) ? ECR_OK : ecr_fail(ECR_E_NOMEM, "metrics: covariance: out of memory");
    if (!st) {
        column_mean(x, n, d, mu);
        st = centred_cross(x, d, mu, x, d, mu, n, 1, C);
    }
    if (st) {
        free(mu);
        free(C);
        return st;
    }
    *C_out = C;
    *mu_out = mu;
    return ECR_OK;
}

ecr_status ecr_metric_effective_rank(const float *x, int64_t n, int d, double *out) {
    ecr_status st = check_matrix(x, n, d, "effective rank");
    if (st) return st;
    double *C = NULL, *mu = NULL;
    if ((st = covariance(x, n, d, &C, &mu))) return st;
    st = erank_of_cov(C, d, out);
    free(C);
    free(mu);
    return st;
}

/* Anisotropy from normalised rows xn [n, d] (zero rows skipped). */
/* ---- 2-D PCA (for plots) ----------------------------------------------------------------- */

/* Orthonormalises the columns v[:,0], v[:,1] of v [d, 2] (Gram-Schmidt, in place). */
static void orthonormal2(double *v, int d) {
    for (int c = 0; c < 2; c++) {
        if (c == 1) {
            double dot = 0.0;
            for (int i = 0; i < d; i++) dot += v[2 * i] * v[2 * i + 1];
            for (int i = 0; i < d; i++) v[2 * i + 1] -= dot * v[2 * i];
        }
        double nn = 0.0;
        for (int i = 0; i < d; i++) nn += v[2 * i + c] * v[2 * i + c];
        nn = sqrt(nn);
        for (int i = 0; i < d; i++) v[2 * i + c] = nn > 0.0 ? v[2 * i + c] / nn : (i == c);
    }
}

/* w [d, 2] = C [d, d] v [d, 2]. */
static void sym_times2(const double *C, int d, const double *v, double *w) {
    for (int i = 0; i < d; i++) {
        double a = 0.0, b = 0.0;
        for (int j = 0; j < d; j++) {
            a += C[(size_t)i * d + j] * v[2 * j];
            b += C[(size_t)i * d + j] * v[2 * j + 1];
        }
        w[2 * i] = a;
        w[2 * i + 1] = b;
    }
}

/* The top two eigenvectors of the symmetric C [d, d] (d >= 2) into v [d, 2], by orthogonal
 * iteration then a 2 x 2 Rayleigh-Ritz step; their eigenvalues into lam[2], descending.
 * Each vector's largest-magnitude entry is made positive, so the result is deterministic. */
static void top2_eigen(const double *C, int d, double *v, double *w, double lam[2]) {
    for (int i = 0; i < d; i++) { /* fixed, non-degenerate start */
        v[2 * i] = 1.0 + 0.01 * (i % 7);
        v[2 * i + 1] = (i % 2 ? -1.0 : 1.0) * (1.0 + 0.01 * (i % 5));
    }
    orthonormal2(v, d);
    for (int it = 0; it < 500; it++) {
        sym_times2(C, d, v, w);
        memcpy(v, w, (size_t)d * 2 * sizeof *v);
        orthonormal2(v, d);
    }
    sym_times2(C, d, v, w); /* Rayleigh-Ritz: H = V^T C V, 2 x 2 */
    double h00 = 0, h01 = 0, h11 = 0;
    for (int i = 0; i < d; i++) {
        h00 += v[2 * i] * w[2 * i];
        h01 += v[2 * i] * w[2 * i + 1];
        h11 += v[2 * i + 1] * w[2 * i + 1];
    }
    double theta = 0.5 * atan2(2.0 * h01, h00 - h11), c = cos(theta), s = sin(theta);
    lam[0] = c * c * h00 + 2 * c * s * h01 + s * s * h11;
    lam[1] = s * s * h00 - 2 * c * s * h01 + c * c * h11;
    for (int i = 0; i < d; i++) {
        double a = v[2 * i], b = v[2 * i + 1];
        v[2 * i] = c * a + s * b;
        v[2 * i + 1] = -s * a + c * b;
    }
    if (lam[1] > lam[0]) {
        double t = lam[0];
        lam[0] = lam[1];
        lam[1] = t;
        for (int i = 0; i < d; i++) {
            t = v[2 * i];
            v[2 * i] = v[2 * i + 1];
            v[2 * i + 1] = t;
        }
    }
    for (int c2 = 0; c2 < 2; c2++) {
        int big = 0;
        for (int i = 1; i < d; i++)
            if (fabs(v[2 * i + c2]) > fabs(v[2 * big + c2])) big = i;
        if (v[2 * big + c2] < 0)
            for (int i = 0; i < d; i++) v[2 * i + c2] = -v[2 * i + c2];
    }
}

ecr_status ecr_metric_pca2(const float *x, int64_t n, int d, float *xy, double explained[2]) {
    ecr_status st = check_matrix(x, n, d, "pca");
    if (st) return st;
    if (d < 2 || n < 2)
        return ecr_fail(ECR_E_INVALID, "metrics: pca: needs at least 2 rows and 2 columns, got %lld x %d",
                        (long long)n, d);
    double *C = NULL, *mu = NULL;
    if ((st = covariance(x, n, d, &C, &mu))) return st;
    double *v = malloc((size_t)d * 2 * sizeof *v), *w = malloc((size_t)d * 2 * sizeof *w);
    if (!v || !w) st = ecr_fail(ECR_E_NOMEM, "metrics: pca: out of memory");
    if (!st) {
        double lam[2], trace = 0.0;
        for (int i = 0; i < d; i++) trace += C[(size_t)i * d + i];
        top2_eigen(C, d, v, w, lam);
        for (int c = 0; c < 2; c++) explained[c] = trace > 0.0 ? fmax(lam[c], 0.0) / trace : 0.0;
        for (int64_t r = 0; r < n; r++) {
            const float *xr = x + (size_t)r * d;
            double a = 0.0, b = 0.0;
            for (int j = 0; j < d; j++) {
                double xc = (double)xr[j] - mu[j];
                a += xc * v[2 * j];
                b += xc * v[2 * j + 1];
            }
            xy[2 * r] = (float)a;
            xy[2 * r + 1] = (float)b;
        }
    }
    free(v);
    free(w);
    free(C);
    free(mu);
    return st;
}

static double anisotropy_of(const float *xn, int64_t n, int d) {
    double *s = calloc((size_t)d, sizeof *s);
    if (!s) return NAN;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *r = xn + (size_t)i * d;
        double nn = 0.0;
        for (int j = 0; j < d; j++) nn += (double)r[j] * r[j];
        if (!(nn > 0.0)) continue;
        double inv = 1.0 / sqrt(nn); /* exact unit length in double */
        for (int j = 0; j < d; j++) s[j] += r[j] * inv;
        m++;
    }
    double ss = 0.0;
    for (int j = 0; j < d; j++) ss += s[j] * s[j];
    free(s);
    return m < 2 ? NAN : (ss - (double)m) / ((double)m * (double)(m - 1));
}

ecr_status ecr_metric_anisotropy(const float *x, int64_t n, int d, double *out) {
    ecr_status st = check_matrix(x, n, d, "anisotropy");
    if (st) return st;
    *out = anisotropy_of(x, n, d);
    return ECR_OK;
}

/* CKA given X's covariance norm ||Cxx||_F and mean; Y's likewise. */
static ecr_status cka_with(const float *x, int dx, const double *mx, double fx, const float *y,
                           int dy, const double *my, double fy, int64_t n, double *out) {
    double *C = malloc((size_t)dx * dy * sizeof *C);
    if (!C) return ecr_fail(ECR_E_NOMEM, "metrics: CKA: out of memory");
    ecr_status st = centred_cross(x, dx, mx, y, dy, my, n, 0, C);
    if (!st) {
        double num = frobenius(C, (size_t)dx * dy);
        *out = (fx > 0.0 && fy > 0.0) ? num * num / (fx * fy) : NAN;
    }
    free(C);
    return st;
}

/* ||Xc^T Xc||_F and the mean of X. */
static ecr_status gram_norm(const float *x, int64_t n, int d, double *fro, double **mu_out) {
    double *C = NULL, *mu = NULL;
    ecr_status st = covariance(x, n, d, &C, &mu);
    if (st) return st;
    *fro = frobenius(C, (size_t)d * d);
    free(C);
    *mu_out = mu;
    return ECR_OK;
}

ecr_status ecr_metric_cka(const float *x, int dx, const float *y, int dy, int64_t n, double *out) {
    ecr_status st = check_matrix(x, n, dx, "CKA (first matrix)");
    if (!st) st = check_matrix(y, n, dy, "CKA (second matrix)");
    if (st) return st;
    double fx = 0, fy = 0, *mx = NULL, *my = NULL;
    st = gram_norm(x, n, dx, &fx, &mx);
    if (!st) st = gram_norm(y, n, dy, &fy, &my);
    if (!st) st = cka_with(x, dx, mx, fx, y, dy, my, fy, n, out);
    free(mx);
    free(my);
    return st;
}

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
static ecr_status self_pass(const float *xn, int64_t n, int d, int k, int32_t *nbr,
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

static ecr_status check_labels(const int32_t *v, int64_t n, int n_values, const char *what) {
    if (!v) return ecr_fail(ECR_E_INVALID, "metrics: %s: no index column", what);
    for (int64_t i = 0; i < n; i++)
        if (v[i] < -1 || v[i] >= n_values)
            return ecr_fail(ECR_E_INVALID, "metrics: %s: row %lld: index %d outside [-1, %d)", what,
                            (long long)i, v[i], n_values);
    return ECR_OK;
}

ecr_status ecr_metric_knn(const float *x, int64_t n, int d, int k, int32_t *nbr) {
    ecr_status st = check_matrix(x, n, d, "k-NN");
    if (st) return st;
    if (k < 1 || k >= n || !nbr)
        return ecr_fail(ECR_E_INVALID, "metrics: k-NN: k = %d needs 1 <= k < rows (%lld)", k, (long long)n);
    float *xn = normalised_copy(x, n, d);
    if (!xn) return ecr_fail(ECR_E_NOMEM, "metrics: k-NN: out of memory");
    st = self_pass(xn, n, d, k, nbr, NULL, 0, NULL);
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
    ecr_status st = check_matrix(x, n, d, "silhouette");
    if (!st) st = check_labels(label, n, n_labels, "silhouette: label");
    if (st) return st;
    float *xn = normalised_copy(x, n, d);
    if (!xn) return ecr_fail(ECR_E_NOMEM, "metrics: silhouette: out of memory");
    st = self_pass(xn, n, d, 0, NULL, label, n_labels, out);
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
static ecr_status p1_of(const float *xn, int64_t n, int d, const int32_t *lang, const int32_t *group,
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
    ecr_status st = check_matrix(x, n, d, "retrieval");
    if (!st) st = check_labels(lang, n, n_langs, "retrieval: lang");
    if (!st) st = check_labels(group, n, INT32_MAX, "retrieval: group");
    if (!st && !mean) st = ecr_fail(ECR_E_INVALID, "metrics: retrieval: no output for the mean");
    if (st) return st;
    double *pl = malloc(((size_t)n_langs + 1) * sizeof *pl);
    float *xn = normalised_copy(x, n, d);
    if (!pl || !xn) st = ecr_fail(ECR_E_NOMEM, "metrics: retrieval: out of memory");
    if (!st) st = p1_of(xn, n, d, lang, group, n_langs, en, pl, mean);
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
static ecr_status transfer_of(const float *xn, int64_t n, int d, const int32_t *lang,
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
    ecr_status st = check_matrix(x, n, d, "label transfer");
    if (!st) st = check_labels(lang, n, n_langs, "label transfer: lang");
    if (!st) st = check_labels(label, n, n_labels, "label transfer: label");
    if (!st && (k < 1 || !mean)) st = ecr_fail(ECR_E_INVALID, "metrics: label transfer: k = %d (>= 1 needed)", k);
    if (st) return st;
    double *pl = malloc(((size_t)n_langs + 1) * sizeof *pl);
    float *xn = normalised_copy(x, n, d);
    if (!pl || !xn) st = ecr_fail(ECR_E_NOMEM, "metrics: label transfer: out of memory");
    if (!st) st = transfer_of(xn, n, d, lang, label, n_langs, n_labels, en, k, pl, mean);
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
    ecr_status st = check_matrix(emb, n, a->dim, "anchor codes");
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

static ecr_status agreement_of(const float *un, int64_t n, int dim, const float *anchors, int k,
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

static ecr_status check_anchors(const float *anchors, int k, int dim, const uint16_t *codes, int64_t n) {
    if (k < 1 || k > ECR_ANCHORS_MAX_K || (n > 0 && !codes))
        return ecr_fail(ECR_E_INVALID, "metrics: anchor agreement: k = %d (1..%d) or no codes", k,
                        ECR_ANCHORS_MAX_K);
    ecr_status st = check_matrix(anchors, k, dim, "anchors");
    for (int64_t i = 0; !st && i < n; i++)
        if (codes[i] >= k)
            st = ecr_fail(ECR_E_INVALID, "metrics: anchor agreement: code %u of row %lld is not below k = %d",
                          codes[i], (long long)i, k);
    return st;
}

ecr_status ecr_metric_anchor_agreement(const float *u, int64_t n, int dim, const float *anchors,
                                       int k, const uint16_t *codes, double *out) {
    ecr_status st = check_matrix(u, n, dim, "anchor agreement");
    if (!st) st = check_anchors(anchors, k, dim, codes, n);
    if (st) return st;
    float *un = normalised_copy(u, n, dim);
    if (!un) return ecr_fail(ECR_E_NOMEM, "metrics: anchor agreement: out of memory");
    st = agreement_of(un, n, dim, anchors, k, codes, out);
    free(un);
    return st;
}

/* ---- teacher reference and the whole geometry of one matrix ---------------------------------- */

void ecr_teacher_ref_release(ecr_teacher_ref *r) {
    if (!r) return;
    free(r->knn);
    free(r->mean);
    memset(r, 0, sizeof *r);
}

ecr_status ecr_teacher_ref_init(ecr_teacher_ref *r, const float *y, int64_t n, int dim, int quiet) {
    memset(r, 0, sizeof *r);
    ecr_status st = check_matrix(y, n, dim, "teacher");
    if (st) return st;
    double t0 = ecr_now();
    r->y = y;
    r->n = n;
    r->dim = dim;
    st = gram_norm(y, n, dim, &r->gram_fro, &r->mean);
    if (!st && n > ECR_KNN_K) {
        float *yn = normalised_copy(y, n, dim);
        r->knn = malloc((size_t)n * ECR_KNN_K * sizeof *r->knn);
        if (!yn || !r->knn) st = ecr_fail(ECR_E_NOMEM, "metrics: teacher: out of memory");
        if (!st) st = self_pass(yn, n, dim, ECR_KNN_K, r->knn, NULL, 0, NULL);
        free(yn);
    }
    if (st) ecr_teacher_ref_release(r);
    else if (!quiet)
        fprintf(stderr, "eval: teacher (%lld x %d): covariance and neighbour lists in %.1f s\n",
                (long long)n, dim, ecr_now() - t0);
    return st;
}

void ecr_geometry_release(ecr_geometry *g) {
    if (!g) return;
    free(g->p1_lang);
    free(g->transfer_lang);
    g->p1_lang = g->transfer_lang = NULL;
}

static ecr_status geometry_check(const ecr_geometry_in *in) {
    const char *nm = in->name ? in->name : "x";
    ecr_status st = check_matrix(in->x, in->n, in->d, nm);
    if (!st && in->lang) st = check_labels(in->lang, in->n, in->n_langs, "lang");
    if (!st && in->label) st = check_labels(in->label, in->n, in->n_labels, "label");
    if (!st && in->group) st = check_labels(in->group, in->n, INT32_MAX, "group");
    if (!st && in->teacher && in->teacher->n != in->n)
        st = ecr_fail(ECR_E_INVALID, "metrics: %s: %lld rows but the teacher has %lld", nm,
                      (long long)in->n, (long long)in->teacher->n);
    if (!st && in->anchors) st = check_anchors(in->anchors, in->k, in->d, in->codes, in->n);
    return st;
}

ecr_status ecr_geometry_compute(const ecr_geometry_in *in, ecr_geometry *out) {
    memset(out, 0, sizeof *out);
    out->effective_rank = out->anisotropy = out->silhouette = NAN;
    out->cka = out->knn_overlap = out->anchor_agreement = out->p1 = out->transfer = NAN;
    ecr_status st = geometry_check(in);
    if (st) return st;
    int64_t n = in->n;
    int d = in->d, L = in->n_langs > 0 ? in->n_langs : 0;
    double t0 = ecr_now(), t_cov = 0, t_nn = 0, t_lang = 0;
    out->n_langs = L;
    out->p1_lang = malloc(((size_t)L + 1) * sizeof *out->p1_lang);
    out->transfer_lang = malloc(((size_t)L + 1) * sizeof *out->transfer_lang);
    float *xn = normalised_copy(in->x, n, d);
    int kk = in->teacher && in->teacher->knn ? ECR_KNN_K : 0;
    int32_t *nbr = kk ? malloc((size_t)n * kk * sizeof *nbr) : NULL;
    double *C = NULL, *mu = NULL;
    if (!out->p1_lang || !out->transfer_lang || !xn || (kk && !nbr))
        st = ecr_fail(ECR_E_NOMEM, "metrics: geometry: out of memory");
    for (int l = 0; !st && l < L; l++) out->p1_lang[l] = out->transfer_lang[l] = NAN;
    if (!st) {
        out->anisotropy = anisotropy_of(xn, n, d);
        st = covariance(in->x, n, d, &C, &mu);
    }
    if (!st) {
        double fro = frobenius(C, (size_t)d * d);
        st = erank_of_cov(C, d, &out->effective_rank);
        if (!st && in->teacher)
            st = cka_with(in->x, d, mu, fro, in->teacher->y, in->teacher->dim, in->teacher->mean,
                          in->teacher->gram_fro, n, &out->cka);
        t_cov = ecr_now() - t0;
    }
    if (!st && (kk || in->label)) {
        double t = ecr_now();
        st = self_pass(xn, n, d, kk, nbr, in->label, in->n_labels, &out->silhouette);
        if (!st && kk) out->knn_overlap = ecr_metric_knn_overlap(nbr, in->teacher->knn, n, kk);
        t_nn = ecr_now() - t;
    }
    double t = ecr_now();
    if (!st && in->lang && in->group)
        st = p1_of(xn, n, d, in->lang, in->group, L, in->en, out->p1_lang, &out->p1);
    if (!st && in->lang && in->label)
        st = transfer_of(xn, n, d, in->lang, in->label, L, in->n_labels, in->en, ECR_KNN_K,
                         out->transfer_lang, &out->transfer);
    t_lang = ecr_now() - t;
    if (!st && in->anchors) st = agreement_of(xn, n, d, in->anchors, in->k, in->codes, &out->anchor_agreement);
    out->seconds = ecr_now() - t0;
    if (!st && !in->quiet)
        fprintf(stderr, "eval: geometry of %s (%lld x %d) in %.2f s (covariance %.2f s, neighbours "
                "%.2f s, languages %.2f s)\n", in->name ? in->name : "x", (long long)n, d,
                out->seconds, t_cov, t_nn, t_lang);
    free(xn);
    free(nbr);
    free(C);
    free(mu);
    if (st) ecr_geometry_release(out);
    return st;
}
