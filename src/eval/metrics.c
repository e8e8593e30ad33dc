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
#include "metrics_internal.h"
#include "matmul.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef ECR_HAVE_OMP
#include <omp.h>
#endif

/* ---- argument checks and row normalisation ----------------------------------------------- */

ecr_status mt_check_matrix(const float *x, int64_t n, int d, const char *what) {
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
float *mt_normalised_copy(const float *x, int64_t n, int d) {
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
    ecr_status st = mt_check_matrix(x, n, d, "effective rank");
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
    ecr_status st = mt_check_matrix(x, n, d, "pca");
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
    ecr_status st = mt_check_matrix(x, n, d, "anisotropy");
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
    ecr_status st = mt_check_matrix(x, n, dx, "CKA (first matrix)");
    if (!st) st = mt_check_matrix(y, n, dy, "CKA (second matrix)");
    if (st) return st;
    double fx = 0, fy = 0, *mx = NULL, *my = NULL;
    st = gram_norm(x, n, dx, &fx, &mx);
    if (!st) st = gram_norm(y, n, dy, &fy, &my);
    if (!st) st = cka_with(x, dx, mx, fx, y, dy, my, fy, n, out);
    free(mx);
    free(my);
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
    ecr_status st = mt_check_matrix(y, n, dim, "teacher");
    if (st) return st;
    double t0 = ecr_now();
    r->y = y;
    r->n = n;
    r->dim = dim;
    st = gram_norm(y, n, dim, &r->gram_fro, &r->mean);
    if (!st && n > ECR_KNN_K) {
        float *yn = mt_normalised_copy(y, n, dim);
        r->knn = malloc((size_t)n * ECR_KNN_K * sizeof *r->knn);
        if (!yn || !r->knn) st = ecr_fail(ECR_E_NOMEM, "metrics: teacher: out of memory");
        if (!st) st = mt_self_pass(yn, n, dim, ECR_KNN_K, r->knn, NULL, 0, NULL);
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
    ecr_status st = mt_check_matrix(in->x, in->n, in->d, nm);
    if (!st && in->lang) st = mt_check_labels(in->lang, in->n, in->n_langs, "lang");
    if (!st && in->label) st = mt_check_labels(in->label, in->n, in->n_labels, "label");
    if (!st && in->group) st = mt_check_labels(in->group, in->n, INT32_MAX, "group");
    if (!st && in->teacher && in->teacher->n != in->n)
        st = ecr_fail(ECR_E_INVALID, "metrics: %s: %lld rows but the teacher has %lld", nm,
                      (long long)in->n, (long long)in->teacher->n);
    if (!st && in->anchors) st = mt_check_anchors(in->anchors, in->k, in->d, in->codes, in->n);
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
    float *xn = mt_normalised_copy(in->x, n, d);
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
        st = mt_self_pass(xn, n, d, kk, nbr, in->label, in->n_labels, &out->silhouette);
        if (!st && kk) out->knn_overlap = ecr_metric_knn_overlap(nbr, in->teacher->knn, n, kk);
        t_nn = ecr_now() - t;
    }
    double t = ecr_now();
    if (!st && in->lang && in->group)
        st = mt_p1_of(xn, n, d, in->lang, in->group, L, in->en, out->p1_lang, &out->p1);
    if (!st && in->lang && in->label)
        st = mt_transfer_of(xn, n, d, in->lang, in->label, L, in->n_labels, in->en, ECR_KNN_K,
                         out->transfer_lang, &out->transfer);
    t_lang = ecr_now() - t;
    if (!st && in->anchors) st = mt_agreement_of(xn, n, d, in->anchors, in->k, in->codes, &out->anchor_agreement);
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
