/* test_metrics.c — geometry, cross-lingual, task and stability metrics (src/eval/metrics.c).
 *
 *  - known values: eigenvalues against a Jacobi solver written here (random, diagonal,
 *    repeated eigenvalues; 1e-10 relative to the largest); effective rank = d for [I; -I]
 *    (equal singular values, centred), = r for a planted rank r, 0 for equal rows, > 15.5
 *    of 16 for Gaussian noise; anisotropy 0 for orthonormal rows, 1 for identical rows,
 *    NaN for one row, zero rows ignored; CKA(X, X) = 1 (1e-12), invariance to a random
 *    rotation (1e-6: X Q is rounded to float) and to isotropic scale (1e-9); P@1 = 1 when
 *    translations share one vector, near chance (< 0.03, chance 0.005) for random vectors;
 *    label transfer = 1 for separable labels; anchor agreement = 1 for u = the anchors of
 *    the codes; k-NN lists against a brute-force double computation over several row blocks;
 *    planted loss spikes counted exactly (incl. one right after another, none in the first
 *    50 steps), grad-norm CV 0.5 and clipped share 0.25 by construction; the log reader on a
 *    written log (validation records skipped) and its refusals (line numbers).
 *  - 2-D PCA of planted orthogonal directions: exact variance shares, coordinates and sign
 *    convention; identical on a second call; refusals (1 column, 1 row, NaN).
 *  - NumPy / scikit-learn reference (tests/fixtures/metrics_ref.safetensors, written by
 *    tools/metrics_ref.py; 300 texts, 24 / 16 dims): effective rank and singular values
 *    (1e-9 relative; both in double from the same float32 data), anisotropy (1e-6: the C
 *    side normalises rows in float first), CKA (1e-9), k-NN lists (at most 0.5% of
 *    entries differ: float vs double near-ties) and overlap (2e-3), silhouette vs
 *    sklearn.metrics.silhouette_score(metric="cosine") (1e-4: sklearn computes in float32),
 *    P@1 and label transfer (vs sklearn KNeighborsClassifier) per language within one
 *    flipped query, teacher codes (at most one differs) and anchor agreement (one row),
 *    eigenvalues (1e-10), stability (exact count; CV 1e-9).
 *  - ecr_geometry_compute gives the numbers of the single functions, and identical bytes
 *    with 1 and 2 threads.
 *  - ecr_eval_lm_embed gives ecr_eval_lm's statistics and ecr_embed's raw h bit for bit
 *    (a tiny model on a 60-text corpus with a truncated text). */
#include "test.h"
#include "testlib.h"
#include "rng.h"

#include <string.h>
#include <unistd.h>

#define FIXTURE "tests/fixtures/metrics_ref.safetensors"

/* Random orthogonal d x d (Gram-Schmidt in double). */
static void random_orthogonal(double *q, int d, uint64_t seed) {
    ecr_rng r;
    ecr_rng_seed(&r, seed);
    for (int i = 0; i < d * d; i++) q[i] = ecr_rng_normal(&r);
    for (int i = 0; i < d; i++) {
        double *v = q + (size_t)i * d;
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < i; j++) {
                const double *u = q + (size_t)j * d;
                double dot = 0;
                for (int k = 0; k < d; k++) dot += v[k] * u[k];
                for (int k = 0; k < d; k++) v[k] -= dot * u[k];
            }
        double s = 0;
        for (int k = 0; k < d; k++) s += v[k] * v[k];
        for (int k = 0; k < d; k++) v[k] /= sqrt(s);
    }
}

/* ---- eigenvalues -------------------------------------------------------------------------- */

/* Cyclic Jacobi on a copy: eigenvalues ascending. The independent reference. */
static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void jacobi_eigenvalues(const double *a0, int n, double *w) {
    double *a = malloc((size_t)n * n * sizeof *a);
    memcpy(a, a0, (size_t)n * n * sizeof *a);
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
        if (off < 1e-30) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
    }
    for (int i = 0; i < n; i++) w[i] = a[i * n + i];
    qsort(w, (size_t)n, sizeof *w, cmp_d);
    free(a);
}

static void check_eigen(const double *a, int n, const char *what) {
    double *c = malloc((size_t)n * n * sizeof *c), *w = malloc((size_t)n * sizeof *w),
           *ref = malloc((size_t)n * sizeof *ref);
    memcpy(c, a, (size_t)n * n * sizeof *c);
    CHECK_OK(ecr_sym_eigenvalues(c, n, w));
    jacobi_eigenvalues(a, n, ref);
    double scale = 0, err = 0;
    for (int i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    for (int i = 0; i < n; i++) err = fmax(err, fabs(w[i] - ref[i]));
    CHECK_MSG(err <= 1e-10 * fmax(scale, 1e-300), "%s (n=%d): max |diff| %.3g, scale %.3g", what, n, err, scale);
    free(c); free(w); free(ref);
}

static void test_eigenvalues(void) {
    int sizes[] = {1, 2, 3, 7, 64};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        double *a = malloc((size_t)n * n * sizeof *a);
        ecr_rng r;
        ecr_rng_seed(&r, 100 + n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = ecr_rng_normal(&r);
        check_eigen(a, n, "random symmetric");
        free(a);
    }
    /* Q diag(3, 3, 3, 1, 1, 0, -2, -2) Q^T: repeated and zero eigenvalues */
    int n = 8;
    double lam[8] = {3, 3, 3, 1, 1, 0, -2, -2}, q[64], a[64], w[8];
    random_orthogonal(q, n, 7);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < n; k++) s += q[k * n + i] * lam[k] * q[k * n + j];
            a[i * n + j] = s;
        }
    CHECK_OK(ecr_sym_eigenvalues(a, n, w));
    double want[8] = {-2, -2, 0, 1, 1, 3, 3, 3};
    for (int i = 0; i < n; i++) CHECK_CLOSE(w[i], want[i], 1e-12);
    /* already diagonal, and all zero */
    double dg[9] = {5, 0, 0, 0, -1, 0, 0, 0, 2}, wd[3];
    CHECK_OK(ecr_sym_eigenvalues(dg, 3, wd));
    CHECK(wd[0] == -1 && wd[1] == 2 && wd[2] == 5);
    double z[4] = {0, 0, 0, 0}, wz[2];
    CHECK_OK(ecr_sym_eigenvalues(z, 2, wz));
    CHECK(wz[0] == 0 && wz[1] == 0);
}

/* ---- effective rank, anisotropy, CKA ----------------------------------------------------------- */

static void test_effective_rank(void) {
    int d = 32;
    /* [I; -I]: centred already, all singular values sqrt(2) */
    float *x = calloc((size_t)2 * d * d, sizeof *x);
    for (int i = 0; i < d; i++) x[i * d + i] = 1, x[(d + i) * d + i] = -1;
    double er = 0;
    CHECK_OK(ecr_metric_effective_rank(x, 2 * d, d, &er));
    CHECK_CLOSE(er, d, 1e-9);
    /* rank 5 planted in 32 dims with equal singular values: rows +-e_k (k < 5) plus a
     * constant offset (removed by centring) */
    memset(x, 0, (size_t)2 * d * d * sizeof *x);
    for (int i = 0; i < 2 * d; i++) {
        for (int j = 0; j < d; j++) x[i * d + j] = 0.25f;
        x[i * d + (i % 5)] += (i / 5) % 2 ? 1.0f : -1.0f;
    }
    /* rows i and i+5 pair up as +-1 on column i % 5 only when the counts balance: use 60 rows */
    CHECK_OK(ecr_metric_effective_rank(x, 60, d, &er));
    CHECK_CLOSE(er, 5, 1e-9);
    /* equal rows: zero after centring */
    for (int i = 0; i < 10 * d; i++) x[i] = 3.0f;
    CHECK_OK(ecr_metric_effective_rank(x, 10, d, &er));
    CHECK(er == 0);
    CHECK_OK(ecr_metric_effective_rank(x, 1, d, &er));
    CHECK(er == 0);
    free(x);
    /* Gaussian noise 4000 x 16: close to full rank */
    float *g = malloc((size_t)4000 * 16 * sizeof *g);
    tl_fill_normal(g, 4000 * 16, 1.0, 3);
    CHECK_OK(ecr_metric_effective_rank(g, 4000, 16, &er));
    CHECK_MSG(er > 15.5 && er <= 16.0, "Gaussian effective rank %.4f", er);
    g[17] = NAN;
    CHECK_STATUS(ecr_metric_effective_rank(g, 4000, 16, &er), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "row 1, column 1") != NULL);
    free(g);
}

/* 2-D PCA: 64 rows 3 a_i q1 + 2 b_i q2 + 0.5 c_i q3 + offset, with q orthonormal in 24 dims and
 * a, b, c = +-1 from the bits of i (centred, mutually orthogonal columns), so the axes are
 * exactly q1, q2, the shares 9 / 13.25 and 4 / 13.25, and the coordinates 3 a_i and 2 b_i
 * up to the sign that makes each axis's largest loading positive. */
static void test_pca(void) {
    enum { N = 64, D = 24 };
    float q[3][D], x[N * D], xy[2 * N];
    tl_fill_normal(&q[0][0], 3 * D, 1.0, 11);
    for (int k = 0; k < 3; k++) { /* Gram-Schmidt in double */
        for (int j = 0; j < k; j++) {
            double dot = 0;
            for (int i = 0; i < D; i++) dot += (double)q[k][i] * q[j][i];
            for (int i = 0; i < D; i++) q[k][i] -= (float)(dot * q[j][i]);
        }
        double nn = 0;
        for (int i = 0; i < D; i++) nn += (double)q[k][i] * q[k][i];
        for (int i = 0; i < D; i++) q[k][i] = (float)(q[k][i] / sqrt(nn));
    }
    for (int r = 0; r < N; r++) {
        double a = r & 1 ? 1 : -1, b = r & 2 ? 1 : -1, c = r & 4 ? 1 : -1;
        for (int i = 0; i < D; i++) x[r * D + i] = (float)(3 * a * q[0][i] + 2 * b * q[1][i] + 0.5 * c * q[2][i] + 0.7);
    }
    double ex[2];
    CHECK_OK(ecr_metric_pca2(x, N, D, xy, ex));
    CHECK_CLOSE(ex[0], 9.0 / 13.25, 1e-6);
    CHECK_CLOSE(ex[1], 4.0 / 13.25, 1e-6);
    for (int k = 0; k < 2; k++) {
        int big = 0; /* the expected sign: q_k's largest-magnitude entry positive */
        for (int i = 1; i < D; i++)
            if (fabsf(q[k][i]) > fabsf(q[k][big])) big = i;
        double sign = q[k][big] > 0 ? 1 : -1, worst = 0;
        for (int r = 0; r < N; r++) {
            double want = sign * (k == 0 ? 3.0 * (r & 1 ? 1 : -1) : 2.0 * (r & 2 ? 1 : -1));
            worst = fmax(worst, fabs(xy[2 * r + k] - want));
        }
        CHECK_MSG(worst < 1e-4, "PC%d coordinates off by %.2e", k + 1, worst);
    }
    float xy2[2 * N];
    CHECK_OK(ecr_metric_pca2(x, N, D, xy2, ex));
    CHECK(memcmp(xy, xy2, sizeof xy) == 0);
    CHECK_STATUS(ecr_metric_pca2(x, N, 1, xy, ex), ECR_E_INVALID);
    CHECK_STATUS(ecr_metric_pca2(x, 1, D, xy, ex), ECR_E_INVALID);
    x[5] = NAN;
    CHECK_STATUS(ecr_metric_pca2(x, N, D, xy, ex), ECR_E_INVALID);
}

static void test_anisotropy(void) {
    int d = 16;
    float x[16 * 16], y[5 * 16];
    memset(x, 0, sizeof x);
    for (int i = 0; i < d; i++) x[i * d + i] = (float)(i + 1); /* orthogonal, any lengths */
    double a = -1;
    CHECK_OK(ecr_metric_anisotropy(x, d, d, &a));
    CHECK(fabs(a) < 1e-12);
    tl_fill_normal(y, 16, 1.0, 5);
    for (int i = 1; i < 5; i++)
        for (int j = 0; j < d; j++) y[i * d + j] = y[j] * (float)(i + 1); /* same direction */
    CHECK_OK(ecr_metric_anisotropy(y, 5, d, &a));
    CHECK_CLOSE(a, 1.0, 1e-6);
    /* a zero row does not count; two opposite rows give -1 */
    float z[3 * 2] = {0, 0, 1, 2, -2, -4};
    CHECK_OK(ecr_metric_anisotropy(z, 3, 2, &a));
    CHECK_CLOSE(a, -1.0, 1e-6);
    CHECK_OK(ecr_metric_anisotropy(z, 2, 2, &a));
    CHECK(isnan(a));
}

static void test_cka(void) {
    int n = 500, d = 12, D = 20;
    float *x = malloc((size_t)n * d * sizeof *x), *xs = malloc((size_t)n * d * sizeof *xs);
    float *xq = malloc((size_t)n * d * sizeof *xq), *y = malloc((size_t)n * D * sizeof *y);
    tl_fill_normal(x, (size_t)n * d, 1.0, 11);
    for (int i = 0; i < n; i++) x[i * d] += 3.0f * x[i * d + 1] + 2.0f; /* not isotropic, off-centre */
    double q[12 * 12];
    random_orthogonal(q, d, 12);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < d; k++) s += x[i * d + k] * q[k * d + j];
            xq[i * d + j] = (float)s;
            xs[i * d + j] = x[i * d + j] * 0.125f; /* exact in float */
        }
    double c = 0;
    CHECK_OK(ecr_metric_cka(x, d, x, d, n, &c));
    CHECK_CLOSE(c, 1.0, 1e-12);
    CHECK_OK(ecr_metric_cka(x, d, xq, d, n, &c));
    CHECK_CLOSE(c, 1.0, 1e-6);
    CHECK_OK(ecr_metric_cka(xs, d, x, d, n, &c));
    CHECK_CLOSE(c, 1.0, 1e-9);
    /* independent noise: small; and symmetric */
    tl_fill_normal(y, (size_t)n * D, 1.0, 13);
    double c1 = 0, c2 = 0;
    CHECK_OK(ecr_metric_cka(x, d, y, D, n, &c1));
    CHECK_OK(ecr_metric_cka(y, D, x, d, n, &c2));
    CHECK(c1 < 0.1);
    CHECK_CLOSE(c1, c2, 1e-12);
    free(x); free(xs); free(xq); free(y);
}

/* ---- neighbours ---------------------------------------------------------------------------------- */

static void test_knn_blocks(void) {
    /* 700 rows (11 row blocks) against a brute-force double computation */
    int n = 700, d = 8, k = ECR_KNN_K;
    float *x = malloc((size_t)n * d * sizeof *x);
    tl_fill_normal(x, (size_t)n * d, 1.0, 21);
    int32_t *nbr = malloc((size_t)n * k * sizeof *nbr);
    CHECK_OK(ecr_metric_knn(x, n, d, k, nbr));
    double *s = malloc((size_t)n * sizeof *s), *nr = malloc((size_t)n * sizeof *nr);
    for (int i = 0; i < n; i++) {
        double t = 0;
        for (int j = 0; j < d; j++) t += (double)x[i * d + j] * x[i * d + j];
        nr[i] = sqrt(t);
    }
    int wrong = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            double t = 0;
            for (int c = 0; c < d; c++) t += (double)x[i * d + c] * x[j * d + c];
            s[j] = j == i ? -INFINITY : t / (nr[i] * nr[j]);
        }
        for (int p = 0; p < k; p++) { /* p-th best by selection */
            int b = -1;
            for (int j = 0; j < n; j++)
                if (s[j] > -INFINITY && (b < 0 || s[j] > s[b])) b = j;
            wrong += nbr[i * k + p] != b;
            s[b] = -INFINITY;
        }
    }
    CHECK_MSG(wrong <= n * k / 200, "%d of %d neighbour entries differ", wrong, n * k);
    CHECK_CLOSE(ecr_metric_knn_overlap(nbr, nbr, n, k), 1.0, 0);
    CHECK_STATUS(ecr_metric_knn(x, 5, d, 5, nbr), ECR_E_INVALID);
    free(x); free(nbr); free(s); free(nr);
}

/* G groups x L languages, row = group vector (+ noise), group-major. */
static void make_parallel(float *x, int32_t *lang, int32_t *group, int G, int L, int d, double noise,
                          uint64_t seed) {
    float *gv = malloc((size_t)G * d * sizeof *gv), *nz = malloc((size_t)G * L * d * sizeof *nz);
    tl_fill_normal(gv, (size_t)G * d, 1.0, seed);
    tl_fill_normal(nz, (size_t)G * L * d, noise, seed + 1);
    for (int g = 0; g < G; g++)
        for (int l = 0; l < L; l++) {
            int i = g * L + l;
            lang[i] = l;
            group[i] = g;
            for (int j = 0; j < d; j++) x[i * d + j] = gv[g * d + j] + nz[i * d + j];
        }
    free(gv); free(nz);
}

static void test_retrieval(void) {
    int G = 200, L = 4, d = 16, n = G * L;
    float *x = malloc((size_t)n * d * sizeof *x);
    int32_t *lang = malloc(n * sizeof *lang), *group = malloc(n * sizeof *group);
    double per[4], mean = 0;
    make_parallel(x, lang, group, G, L, d, 0.0, 31); /* identical within a group */
    CHECK_OK(ecr_metric_retrieval_p1(x, n, d, lang, group, L, 0, per, &mean));
    CHECK(isnan(per[0]));
    for (int l = 1; l < L; l++) CHECK_CLOSE(per[l], 1.0, 0);
    CHECK_CLOSE(mean, 1.0, 0);
    /* English is language 2 instead: still 1; no English: NaN */
    CHECK_OK(ecr_metric_retrieval_p1(x, n, d, lang, group, L, 2, per, &mean));
    CHECK(isnan(per[2]) && per[0] == 1.0 && mean == 1.0);
    CHECK_OK(ecr_metric_retrieval_p1(x, n, d, lang, group, L, -1, per, &mean));
    CHECK(isnan(mean));
    /* random vectors: chance is 1/200 */
    tl_fill_normal(x, (size_t)n * d, 1.0, 33);
    CHECK_OK(ecr_metric_retrieval_p1(x, n, d, lang, group, L, 0, per, &mean));
    CHECK_MSG(mean < 0.03, "random P@1 %.4f", mean);
    /* a text without a group takes no part; a language whose texts lack translations: NaN */
    make_parallel(x, lang, group, G, L, d, 0.0, 31);
    for (int g = 0; g < G; g++) group[g * L + 3] = -1;
    CHECK_OK(ecr_metric_retrieval_p1(x, n, d, lang, group, L, 0, per, &mean));
    CHECK(isnan(per[3]) && per[1] == 1.0 && mean == 1.0);
    group[5] = 999999; /* group index out of the table is fine (groups are not bounded) */
    lang[7] = 9;
    CHECK_STATUS(ecr_metric_retrieval_p1(x, n, d, lang, group, L, 0, per, &mean), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "row 7") != NULL);
    free(x); free(lang); free(group);
}

static void test_label_transfer(void) {
    /* separable: one orthogonal direction per label plus small noise, languages shifted */
    int G = 120, L = 3, d = 12, n = G * L, NL = 4;
    float *x = malloc((size_t)n * d * sizeof *x), *nz = malloc((size_t)n * d * sizeof *nz);
    int32_t *lang = malloc(n * sizeof *lang), *group = malloc(n * sizeof *group), *label = malloc(n * sizeof *label);
    make_parallel(x, lang, group, G, L, d, 0.0, 41);
    tl_fill_normal(nz, (size_t)n * d, 0.05, 42);
    for (int i = 0; i < n; i++) {
        label[i] = group[i] % NL;
        for (int j = 0; j < d; j++) x[i * d + j] = nz[i * d + j] + (j == label[i] ? 1.0f : 0.0f) + (j == 8 + lang[i] ? 0.3f : 0.0f);
    }
    double per[3], mean = 0;
    CHECK_OK(ecr_metric_label_transfer(x, n, d, lang, label, L, NL, 0, ECR_KNN_K, per, &mean));
    CHECK(isnan(per[0]) && per[1] == 1.0 && per[2] == 1.0 && mean == 1.0);
    /* silhouette of the same: clearly positive, near 1 */
    double sil = 0;
    CHECK_OK(ecr_metric_silhouette(x, n, d, label, NL, &sil));
    CHECK_MSG(sil > 0.8, "silhouette of separable labels %.4f", sil);
    /* one label only: silhouette undefined */
    for (int i = 0; i < n; i++) label[i] = i < n / 2 ? 0 : -1;
    CHECK_OK(ecr_metric_silhouette(x, n, d, label, NL, &sil));
    CHECK(isnan(sil));
    /* a vote tie goes to the lowest label: k = 2, the two English neighbours disagree */
    float t[4 * 2] = {1, 0.1f, 1, -0.1f, 1, 0, 1, 0.05f};
    int32_t tl[4] = {0, 0, 1, 1}, tlab[4] = {1, 0, 0, 1};
    double tp[2];
    CHECK_OK(ecr_metric_label_transfer(t, 4, 2, tl, tlab, 2, 2, 0, 2, tp, &mean));
    CHECK(tp[1] == 0.5); /* text 2 -> tie of labels 1 and 0 -> 0 (right); text 3 -> same -> 0 (wrong) */
    free(x); free(nz); free(lang); free(group); free(label);
}

static void test_anchor_agreement(void) {
    int K = 8, D = 6, n = 50;
    float *A = malloc((size_t)K * D * sizeof *A), *u = malloc((size_t)n * D * sizeof *u);
    tl_fill_normal(A, (size_t)K * D, 1.0, 51);
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += (double)A[k * D + j] * A[k * D + j];
        for (int j = 0; j < D; j++) A[k * D + j] = (float)(A[k * D + j] / sqrt(s));
    }
    uint16_t codes[50];
    for (int i = 0; i < n; i++) {
        codes[i] = (uint16_t)((i * 7) % K);
        for (int j = 0; j < D; j++) u[i * D + j] = 2.0f * A[codes[i] * D + j];
    }
    double ag = 0;
    CHECK_OK(ecr_metric_anchor_agreement(u, n, D, A, K, codes, &ag));
    CHECK(ag == 1.0);
    codes[3] = (uint16_t)((codes[3] + 1) % K);
    CHECK_OK(ecr_metric_anchor_agreement(u, n, D, A, K, codes, &ag));
    CHECK_CLOSE(ag, 49.0 / 50.0, 1e-15);
    codes[4] = 8;
    CHECK_STATUS(ecr_metric_anchor_agreement(u, n, D, A, K, codes, &ag), ECR_E_INVALID);
    free(A); free(u);
}

/* ---- stability ----------------------------------------------------------------------------------- */

static void planted_log(double *loss, double *gn, uint8_t *clip, int n) {
    for (int t = 0; t < n; t++) {
        loss[t] = 2.0 + 0.01 * sin(0.7 * t) + 0.005 * cos(1.3 * t);
        gn[t] = t % 2 ? 3.0 : 1.0;
        clip[t] = t % 4 == 0;
    }
    loss[20] += 1.0;   /* inside the first 50 steps: cannot count */
    loss[100] += 1.0;
    loss[400] += 1.0;
    loss[401] += 1.0;  /* right after a spike: the window's std grew, still a spike */
    loss[700] += 0.5;
    loss[900] -= 1.0;  /* a dip is not a spike */
}

static void test_stability(void) {
    enum { N = 1000 };
    double loss[N], gn[N];
    uint8_t clip[N];
    planted_log(loss, gn, clip, N);
    ecr_stability s;
    CHECK_OK(ecr_stability_compute(loss, gn, clip, N, &s));
    CHECK(s.steps == N && s.spikes == 4);
    CHECK_CLOSE(s.spikes_per_1k, 4.0, 1e-12);
    CHECK_CLOSE(s.grad_norm_cv, 0.5, 1e-12);
    CHECK(s.clipped == 250);
    CHECK_CLOSE(s.clipped_share, 0.25, 0);
    /* the threshold is strict and exactly mean + 3 std of the previous 50: alternating 1, 3
     * has mean 2 and std 1, so 5 is not a spike and the next double above 5 is */
    double b[51], g1[51];
    for (int t = 0; t < 50; t++) b[t] = t % 2 ? 3.0 : 1.0, g1[t] = 1.0;
    b[50] = 5.0;
    g1[50] = 1.0;
    CHECK_OK(ecr_stability_compute(b, g1, NULL, 51, &s));
    CHECK(s.spikes == 0 && s.clipped == 0 && s.grad_norm_cv == 0);
    b[50] = nextafter(5.0, 6.0);
    CHECK_OK(ecr_stability_compute(b, g1, NULL, 51, &s));
    CHECK(s.spikes == 1);
    CHECK_CLOSE(s.spikes_per_1k, 1000.0 / 51.0, 1e-12);
    /* the same through a written log, with validation records and a blank line */
    char path[] = "build/tests/ecr_test_metrics_XXXXXX" /* tests run from the repo root */;
    int fd = mkstemp(path);
    CHECK_MSG(fd >= 0, "cannot create %s (run from the repository root)", path);
    FILE *fp = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!fp) return;
    for (int t = 0; t < N; t++) {
        fprintf(fp, "{\"step\":%d,\"loss\":%.17g,\"lr\":0.001,\"grad_norm\":%.17g,\"clipped\":%s,\"tokens\":1}\n",
                t + 1, loss[t], gn[t], clip[t] ? "true" : "false");
        if (t % 250 == 249) fprintf(fp, "{\"step\":%d,\"val_loss\":%.17g,\"val_bpb\":1.5,\"val_tokens\":9}\n\n", t + 1, 1.0 + t);
    }
    fclose(fp);
    ecr_stability r;
    CHECK_OK(ecr_stability_read_log(path, &r));
    CHECK(r.steps == N && r.spikes == 4 && r.clipped == 250 && r.first_step == 1 && r.last_step == N);
    CHECK_CLOSE(r.grad_norm_cv, 0.5, 1e-12);
    CHECK_CLOSE(r.final_val_loss, 1000.0, 0);
    CHECK_CLOSE(r.final_loss, loss[N - 1], 0);
    /* refusals name the line */
    fp = fopen(path, "w");
    fprintf(fp, "{\"step\":1,\"loss\":2,\"grad_norm\":1,\"clipped\":false}\n{\"step\":1,\"loss\":2,\"grad_norm\":1,\"clipped\":false}\n");
    fclose(fp);
    CHECK_STATUS(ecr_stability_read_log(path, &r), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), ":2: step 1 does not follow step 1") != NULL);
    fp = fopen(path, "w");
    fprintf(fp, "{\"step\":1,\"loss\":2,\"grad_norm\":1,\"clipped\":false}\n{\"step\":2,\"loss\":2,\"clipped\":false}\n");
    fclose(fp);
    CHECK_STATUS(ecr_stability_read_log(path, &r), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), ":2: field 'grad_norm'") != NULL);
    fp = fopen(path, "w");
    fprintf(fp, "{\"step\":1,\"loss\":2,\"grad_norm\":1,\"clipped\":false}\nnot json\n");
    fclose(fp);
    CHECK_STATUS(ecr_stability_read_log(path, &r), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), ":2: not a JSON object") != NULL);
    fp = fopen(path, "w");
    fprintf(fp, "{\"step\":5,\"val_loss\":2}\n");
    fclose(fp);
    CHECK_STATUS(ecr_stability_read_log(path, &r), ECR_E_INVALID);
    unlink(path);
    CHECK_STATUS(ecr_stability_read_log(path, &r), ECR_E_IO);
}

/* ---- NumPy / scikit-learn reference ------------------------------------------------------------ */

static const ecr_tensor_view *fx(const ecr_st_file *f, const char *name, ecr_dtype dt) {
    const ecr_tensor_view *v = ecr_st_find(f, name);
    CHECK_MSG(v && v->dtype == dt, "fixture tensor '%s' missing or not %s", name, ecr_dtype_name(dt));
    return v && v->dtype == dt ? v : NULL;
}

/* Space-separated decimals of metadata `key` into out (up to cap); returns the count. */
static int meta_list(const ecr_st_file *f, const char *key, double *out, int cap) {
    const char *v = ecr_st_meta(f, key);
    CHECK_MSG(v != NULL, "fixture metadata '%s' missing", key);
    int c = 0;
    while (v && *v && c < cap) {
        char *end;
        double x = strtod(v, &end);
        if (end == v) break;
        out[c++] = x;
        v = end;
    }
    return c;
}

static double meta_num(const ecr_st_file *f, const char *key) {
    double x = NAN;
    meta_list(f, key, &x, 1);
    return x;
}

typedef struct ref_data {
    ecr_st_file *f;
    int n, d, D, K, L;
    const float *x, *y, *u, *anchors, *mean;
    const int32_t *lang, *label, *group, *knn_x, *knn_y, *codes;
} ref_data;

static int ref_open(ref_data *r) {
    memset(r, 0, sizeof *r);
    CHECK_OK(ecr_st_open(FIXTURE, &r->f));
    if (!r->f) return 0;
    r->n = (int)meta_num(r->f, "n");
    r->d = (int)meta_num(r->f, "d");
    r->D = (int)meta_num(r->f, "D");
    r->K = (int)meta_num(r->f, "K");
    r->L = (int)meta_num(r->f, "L");
    const ecr_tensor_view *v[12] = {
        fx(r->f, "x", ECR_F32), fx(r->f, "y", ECR_F32), fx(r->f, "u", ECR_F32),
        fx(r->f, "anchors", ECR_F32), fx(r->f, "anchor_mean", ECR_F32), fx(r->f, "lang", ECR_I32),
        fx(r->f, "label", ECR_I32), fx(r->f, "group", ECR_I32), fx(r->f, "knn_x", ECR_I32),
        fx(r->f, "knn_y", ECR_I32), fx(r->f, "codes", ECR_I32), fx(r->f, "sym", ECR_F32)};
    for (int i = 0; i < 12; i++)
        if (!v[i]) return 0;
    CHECK(v[0]->shape[0] == r->n && v[0]->shape[1] == r->d && v[1]->shape[1] == r->D);
    r->x = v[0]->data; r->y = v[1]->data; r->u = v[2]->data; r->anchors = v[3]->data;
    r->mean = v[4]->data; r->lang = v[5]->data; r->label = v[6]->data; r->group = v[7]->data;
    r->knn_x = v[8]->data; r->knn_y = v[9]->data; r->codes = v[10]->data;
    return 1;
}

static void test_reference(void) {
    ref_data r;
    if (!ref_open(&r)) {
        ecr_st_close(r.f);
        return;
    }
    int n = r.n, d = r.d, D = r.D, L = r.L, k = ECR_KNN_K;
    /* effective rank and singular values */
    double er = 0, ref_er = meta_num(r.f, "erank_x");
    CHECK_OK(ecr_metric_effective_rank(r.x, n, d, &er));
    CHECK_CLOSE(er, ref_er, 1e-9 * ref_er);
    double sv[64], *cov = malloc((size_t)d * d * sizeof *cov), w[64], mu[64] = {0};
    int nsv = meta_list(r.f, "sv_x", sv, 64);
    CHECK(nsv == d);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += r.x[i * d + j] / (double)n;
    for (int a = 0; a < d; a++)
        for (int b = 0; b < d; b++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += (r.x[i * d + a] - mu[a]) * (r.x[i * d + b] - mu[b]);
            cov[a * d + b] = s;
        }
    CHECK_OK(ecr_sym_eigenvalues(cov, d, w));
    for (int i = 0; i < nsv && i < d; i++) /* sv descending, w ascending */
        CHECK_CLOSE(sqrt(fmax(w[d - 1 - i], 0)), sv[i], 1e-9 * sv[0]);
    free(cov);
    /* eigenvalues of the fixture's symmetric matrix */
    const ecr_tensor_view *sym = fx(r.f, "sym", ECR_F32);
    int m = (int)sym->shape[0];
    double *a = malloc((size_t)m * m * sizeof *a), *ev = malloc((size_t)m * sizeof *ev), ref_ev[64];
    for (int i = 0; i < m * m; i++) a[i] = ((const float *)sym->data)[i];
    CHECK(meta_list(r.f, "eig_sym", ref_ev, 64) == m);
    CHECK_OK(ecr_sym_eigenvalues(a, m, ev));
    for (int i = 0; i < m; i++) CHECK_CLOSE(ev[i], ref_ev[i], 1e-10 * fabs(ref_ev[0]));
    free(a); free(ev);
    /* anisotropy, CKA */
    double an = 0, c = 0;
    CHECK_OK(ecr_metric_anisotropy(r.x, n, d, &an));
    CHECK_CLOSE(an, meta_num(r.f, "anisotropy_x"), 1e-6);
    CHECK_OK(ecr_metric_cka(r.x, d, r.y, D, n, &c));
    CHECK_CLOSE(c, meta_num(r.f, "cka_xy"), 1e-9);
    CHECK_OK(ecr_metric_cka(r.u, D, r.y, D, n, &c));
    CHECK_CLOSE(c, meta_num(r.f, "cka_uy"), 1e-9);
    /* k-NN lists and overlap */
    int32_t *kx = malloc((size_t)n * k * sizeof *kx), *ky = malloc((size_t)n * k * sizeof *ky);
    CHECK_OK(ecr_metric_knn(r.x, n, d, k, kx));
    CHECK_OK(ecr_metric_knn(r.y, n, D, k, ky));
    int diff = 0;
    for (int i = 0; i < n * k; i++) diff += (kx[i] != r.knn_x[i]) + (ky[i] != r.knn_y[i]);
    CHECK_MSG(diff <= 2 * n * k / 200, "%d neighbour entries differ from numpy", diff);
    CHECK_CLOSE(ecr_metric_knn_overlap(kx, ky, n, k), meta_num(r.f, "knn_overlap_xy"), 2e-3);
    /* silhouette */
    double sil = 0;
    CHECK_OK(ecr_metric_silhouette(r.x, n, d, r.label, 4, &sil));
    CHECK_CLOSE(sil, meta_num(r.f, "silhouette_x"), 1e-4);
    /* P@1 and label transfer per language: within one query of the reference */
    double p1[16], tr[16], p1m = 0, trm = 0, ref_p1[16], ref_tr[16];
    CHECK(meta_list(r.f, "p1_x", ref_p1, 16) == L - 1);
    CHECK(meta_list(r.f, "transfer_x", ref_tr, 16) == L - 1);
    int per_lang = n / L;
    CHECK_OK(ecr_metric_retrieval_p1(r.x, n, d, r.lang, r.group, L, 0, p1, &p1m));
    CHECK_OK(ecr_metric_label_transfer(r.x, n, d, r.lang, r.label, L, 4, 0, k, tr, &trm));
    for (int l = 1; l < L; l++) {
        CHECK_CLOSE(p1[l], ref_p1[l - 1], 0.5 / per_lang + 1e-12);
        CHECK_CLOSE(tr[l], ref_tr[l - 1], 1.0 / per_lang + 1e-12);
    }
    CHECK_CLOSE(p1m, meta_num(r.f, "p1_x_mean"), 0.5 / per_lang + 1e-12);
    CHECK_CLOSE(trm, meta_num(r.f, "transfer_x_mean"), 1.0 / per_lang + 1e-12);
    fprintf(stderr, "    reference: erank %.6f (numpy %.6f), silhouette %.6f (sklearn %.6f), P@1 %.4f "
            "(numpy %.4f), transfer %.4f (sklearn %.4f), neighbour entries differing %d\n", er, ref_er,
            sil, meta_num(r.f, "silhouette_x"), p1m, meta_num(r.f, "p1_x_mean"), trm,
            meta_num(r.f, "transfer_x_mean"), diff);
    /* teacher codes and anchor agreement */
    ecr_anchors an_ = {0};
    an_.k = r.K;
    an_.dim = D;
    an_.anchors = (float *)r.anchors;
    an_.mean = (float *)r.mean;
    uint16_t *codes = malloc((size_t)n * sizeof *codes), *refc = malloc((size_t)n * sizeof *refc);
    CHECK_OK(ecr_metric_anchor_codes(&an_, r.y, n, codes));
    int cd = 0;
    for (int i = 0; i < n; i++) refc[i] = (uint16_t)r.codes[i], cd += codes[i] != refc[i];
    CHECK_MSG(cd <= 1, "%d teacher codes differ from numpy", cd);
    double ag = 0;
    CHECK_OK(ecr_metric_anchor_agreement(r.u, n, D, r.anchors, r.K, refc, &ag));
    CHECK_CLOSE(ag, meta_num(r.f, "agreement_u"), 1.0 / n + 1e-12);

    /* the whole geometry: same numbers as the single functions; same bytes on 1 and 2 threads */
    ecr_teacher_ref tref;
    CHECK_OK(ecr_teacher_ref_init(&tref, r.y, n, D, 1));
    ecr_geometry_in in = {0};
    in.x = r.u; in.n = n; in.d = D;
    in.lang = r.lang; in.label = r.label; in.group = r.group;
    in.n_langs = L; in.n_labels = 4; in.en = 0;
    in.teacher = &tref;
    in.anchors = r.anchors; in.k = r.K; in.codes = refc;
    in.name = "u"; in.quiet = 1;
    ecr_geometry g1, g2;
    int t0 = ecr_get_threads();
    ecr_set_threads(1);
    CHECK_OK(ecr_geometry_compute(&in, &g1));
    ecr_set_threads(2);
    CHECK_OK(ecr_geometry_compute(&in, &g2));
    ecr_set_threads(t0);
    CHECK(memcmp(&g1, &g2, offsetof(ecr_geometry, n_langs)) == 0);
    CHECK(memcmp(g1.p1_lang, g2.p1_lang, (size_t)L * sizeof(double)) == 0);
    CHECK(memcmp(g1.transfer_lang, g2.transfer_lang, (size_t)L * sizeof(double)) == 0);
    double v = 0;
    CHECK_OK(ecr_metric_effective_rank(r.u, n, D, &v));
    CHECK(v == g1.effective_rank);
    CHECK_OK(ecr_metric_anisotropy(r.u, n, D, &v));
    CHECK_CLOSE(g1.anisotropy, v, 1e-6); /* the geometry normalises in float first */
    CHECK_OK(ecr_metric_silhouette(r.u, n, D, r.label, 4, &v));
    CHECK(v == g1.silhouette);
    CHECK_OK(ecr_metric_cka(r.u, D, r.y, D, n, &v));
    CHECK(v == g1.cka);
    CHECK_CLOSE(g1.cka, meta_num(r.f, "cka_uy"), 1e-9);
    CHECK_OK(ecr_metric_knn(r.u, n, D, k, kx));
    CHECK(ecr_metric_knn_overlap(kx, tref.knn, n, k) == g1.knn_overlap);
    CHECK_OK(ecr_metric_retrieval_p1(r.u, n, D, r.lang, r.group, L, 0, p1, &p1m));
    CHECK(p1m == g1.p1 && p1[2] == g1.p1_lang[2] && isnan(g1.p1_lang[0]));
    CHECK_OK(ecr_metric_label_transfer(r.u, n, D, r.lang, r.label, L, 4, 0, k, tr, &trm));
    CHECK(trm == g1.transfer && tr[1] == g1.transfer_lang[1]);
    CHECK(ag == g1.anchor_agreement);
    ecr_geometry_release(&g1);
    ecr_geometry_release(&g2);
    /* without teacher, anchors and index columns: only what needs nothing */
    ecr_geometry_in in2 = {0};
    in2.x = r.x; in2.n = n; in2.d = d; in2.en = -1; in2.quiet = 1;
    CHECK_OK(ecr_geometry_compute(&in2, &g1));
    CHECK(g1.effective_rank == er && isnan(g1.cka) && isnan(g1.knn_overlap) && isnan(g1.silhouette) &&
          isnan(g1.p1) && isnan(g1.transfer) && isnan(g1.anchor_agreement));
    ecr_geometry_release(&g1);
    /* a teacher with other rows is refused */
    ecr_teacher_ref short_ref;
    CHECK_OK(ecr_teacher_ref_init(&short_ref, r.y, n - 1, D, 1));
    in2.teacher = &short_ref;
    CHECK_STATUS(ecr_geometry_compute(&in2, &g1), ECR_E_INVALID);
    ecr_geometry_release(&g1);
    ecr_teacher_ref_release(&short_ref);
    ecr_teacher_ref_release(&tref);

    /* stability */
    const ecr_tensor_view *ll = fx(r.f, "log_loss", ECR_F32), *lg = fx(r.f, "log_gnorm", ECR_F32),
                          *lc = fx(r.f, "log_clipped", ECR_I32);
    if (ll && lg && lc) {
        int S = (int)ll->shape[0];
        double *l = malloc(S * sizeof *l), *gg = malloc(S * sizeof *gg);
        uint8_t *cc = malloc(S);
        for (int i = 0; i < S; i++) {
            l[i] = ((const float *)ll->data)[i];
            gg[i] = ((const float *)lg->data)[i];
            cc[i] = (uint8_t)((const int32_t *)lc->data)[i];
        }
        ecr_stability s;
        CHECK_OK(ecr_stability_compute(l, gg, cc, S, &s));
        CHECK(s.spikes == (int64_t)meta_num(r.f, "spikes"));
        CHECK_CLOSE(s.grad_norm_cv, meta_num(r.f, "grad_norm_cv"), 1e-9);
        CHECK_CLOSE(s.clipped_share, meta_num(r.f, "clipped_share"), 1e-12);
        free(l); free(gg); free(cc);
    }
    free(kx); free(ky); free(codes); free(refc);
    ecr_st_close(r.f);
}

/* ---- LM metrics and embeddings in one pass -------------------------------------------------- */

static void test_eval_lm_embed(void) {
    char dir[256], corpus[512], tok_path[512], data_path[512];
    snprintf(dir, sizeof dir, "%s/ecr_test_metrics_XXXXXX", P_tmpdir);
    CHECK(mkdtemp(dir) != NULL);
    snprintf(corpus, sizeof corpus, "%s/c.jsonl", dir);
    snprintf(tok_path, sizeof tok_path, "%s/tok.json", dir);
    snprintf(data_path, sizeof data_path, "%s/d.safetensors", dir);
    /* 3 languages x 20 groups, one long text (truncated at T = 32), a one-word text */
    const char *langs[3] = {"en", "de", "fr"}, *words[3][4] = {{"the", "cat", "sits", "here"},
        {"die", "Katze", "sitzt", "hier"}, {"le", "chat", "est", "assis"}};
    FILE *fp = fopen(corpus, "w");
    CHECK(fp != NULL);
    if (!fp) return;
    for (int g = 0; g < 20; g++)
        for (int l = 0; l < 3; l++) {
            fprintf(fp, "{\"group\": \"g%d\", \"lang\": \"%s\", \"label\": \"%s\", \"text\": \"", g, langs[l],
                    g % 3 ? "ui" : "help");
            int nw = g == 7 && l == 1 ? 60 : g == 9 && l == 2 ? 1 : 3 + g % 5;
            for (int w = 0; w < nw; w++) fprintf(fp, "%s%s %d", w ? " " : "", words[l][(w + g) % 4], g * w);
            fprintf(fp, "\"}\n");
        }
    fclose(fp);
    ecr_corpus *c = NULL;
    CHECK_OK(ecr_corpus_read(corpus, &c));
    ecr_tokenizer_train_opts to;
    ecr_tokenizer_train_opts_default(&to);
    to.vocab_size = 300;
    to.quiet = 1;
    ecr_tokenizer *tok = NULL;
    if (c) CHECK_OK(ecr_tokenizer_train((const char *const *)c->text, c->n, &to, &tok));
    if (tok) CHECK_OK(ecr_tokenizer_save(tok, tok_path));
    CHECK_OK(ecr_prepare(corpus, tok_path, data_path, 1));
    ecr_data *d = NULL;
    CHECK_OK(ecr_data_open(data_path, &d));
    ecr_config cfg;
    CHECK_OK(ecr_config_preset("tiny", &cfg));
    cfg.vocab_size = ecr_tokenizer_vocab_size(tok);
    cfg.dim = 16, cfg.n_layers = 1, cfg.n_heads = 2, cfg.hidden_dim = 32, cfg.max_seq_len = 32;
    cfg.ecr_dim = 8;
    ecr_model *m = NULL;
    CHECK_OK(ecr_model_create(&cfg, 5, &m));
    if (d && m) {
        ecr_lm_eval a, b;
        float *h = malloc(d->n_texts * 16 * sizeof *h);
        CHECK_OK(ecr_eval_lm(m, d, 0, 256, 1, &a));
        CHECK_OK(ecr_eval_lm_embed(m, d, 0, 256, 1, &b, h, NULL));
        CHECK(memcmp(&a.overall, &b.overall, sizeof a.overall) == 0);
        CHECK(a.n_langs == 3 && b.n_langs == 3 && a.n_truncated == 1 && b.n_truncated == 1);
        CHECK(memcmp(a.per_lang, b.per_lang, 3 * sizeof *a.per_lang) == 0);
        CHECK(b.overall.texts == 60);
        ecr_embed_opts eo;
        ecr_embed_opts_default(&eo);
        eo.raw = 1;
        eo.tokens_per_batch = 256;
        eo.quiet = 1;
        float *e = NULL;
        int64_t cols = 0;
        int proj = -1;
        CHECK_OK(ecr_embed(m, d, &eo, &e, &cols, &proj));
        CHECK(cols == 16 && proj == 0);
        if (e) CHECK(memcmp(e, h, d->n_texts * 16 * sizeof *h) == 0);
        int nonzero = 0;
        for (size_t j = 0; j < d->n_texts * 16; j++) nonzero += h[j] != 0.0f;
        CHECK(nonzero == (int)d->n_texts * 16);
        free(e);
        free(h);
        ecr_lm_eval_release(&a);
        ecr_lm_eval_release(&b);
    }
    ecr_model_free(m);
    ecr_data_free(d);
    ecr_tokenizer_free(tok);
    ecr_corpus_free(c);
    unlink(corpus); unlink(tok_path); unlink(data_path);
    rmdir(dir);
}

int main(void) {
    RUN(test_eigenvalues);
    RUN(test_effective_rank);
    RUN(test_pca);
    RUN(test_anisotropy);
    RUN(test_cka);
    RUN(test_knn_blocks);
    RUN(test_retrieval);
    RUN(test_label_transfer);
    RUN(test_anchor_agreement);
    RUN(test_stability);
    RUN(test_reference);
    RUN(test_eval_lm_embed);
    return test_finish("test_metrics");
}
