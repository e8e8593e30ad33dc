/* test_anchors.c — spherical k-means anchors: planted clusters recovered exactly, codes are
 * the argmax and converged anchors the normalised means of their rows (checked in double),
 * pruning changes nothing, empty clusters and duplicate/zero rows, determinism by seed and
 * across thread counts, a non-decreasing objective, soft codes against brute force, the
 * file round trip and the loader's refusals, the ablation controls (shuffled codes, random
 * anchors). */
#include "test.h"
#include "testlib.h"
#include "rng.h"

#include <string.h>
#include <unistd.h>

static char g_dir[256];

/* ---- data ------------------------------------------------------------------------------ */

/* n x d standard normal rows. */
static float *gauss(int64_t n, int d, uint64_t seed) {
    ecr_rng r;
    ecr_rng_seed(&r, seed);
    float *x = malloc((size_t)n * d * sizeof(float));
    for (size_t i = 0; i < (size_t)n * d; i++) x[i] = (float)ecr_rng_normal(&r);
    return x;
}

/* K random unit centres in D dims, `per` rows each (centre + noise * N(0, I/D) + an offset
 * common to all rows, which centring removes), shuffled. label[i] = planted cluster. */
static float *planted(int K, int d, int per, double noise, uint64_t seed, int *label) {
    ecr_rng r;
    ecr_rng_seed(&r, seed);
    int n = K * per;
    float *c = malloc((size_t)K * d * sizeof(float));
    for (int k = 0; k < K; k++) {
        double nn = 0;
        for (int j = 0; j < d; j++) { c[k * d + j] = (float)ecr_rng_normal(&r); nn += c[k * d + j] * c[k * d + j]; }
        for (int j = 0; j < d; j++) c[k * d + j] = (float)(c[k * d + j] / sqrt(nn));
    }
    int *perm = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(ecr_rng_u64(&r) % (uint64_t)(i + 1));
        int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    float *x = malloc((size_t)n * d * sizeof(float));
    for (int q = 0; q < n; q++) {
        int i = perm[q], k = q / per;
        label[i] = k;
        for (int j = 0; j < d; j++)
            x[(size_t)i * d + j] = c[k * d + j] + (float)(noise * ecr_rng_normal(&r) / sqrt(d)) + 3.0f;
    }
    free(c);
    free(perm);
    return x;
}

/* The rows as the fit sees them (double): x - mean, normalised (zero rows stay zero). */
static double *normalised(const float *x, int64_t n, int d, const float *mean) {
    double *y = malloc((size_t)n * d * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        double nn = 0;
        for (int j = 0; j < d; j++) {
            y[i * d + j] = (double)(x[i * d + j] - mean[j]);
            nn += y[i * d + j] * y[i * d + j];
        }
        for (int j = 0; j < d; j++) y[i * d + j] = nn > 0 ? y[i * d + j] / sqrt(nn) : 0.0;
    }
    return y;
}

static double dotd(const double *y, const float *a, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) s += y[j] * a[j];
    return s;
}

static ecr_anchors *fit(const float *x, int64_t n, int d, int k, uint64_t seed, int soft) {
    ecr_anchors_opts o;
    ecr_anchors_opts_default(&o);
    o.k = k; o.seed = seed; o.soft = soft; o.quiet = 1; o.source = "test.npy";
    ecr_anchors *a = NULL;
    CHECK_OK(ecr_anchors_fit(x, n, d, &o, &a));
    return a;
}

/* Every anchor a unit vector, no NaN, every code < K. */
static void check_sane(const ecr_anchors *a) {
    int bad = 0;
    for (int k = 0; k < a->k; k++) {
        double nn = 0;
        for (int j = 0; j < a->dim; j++) nn += (double)a->anchors[k * a->dim + j] * a->anchors[k * a->dim + j];
        if (!(fabs(nn - 1.0) < 1e-5)) bad++;
    }
    CHECK_MSG(bad == 0, "%d anchors are not unit vectors", bad);
    for (int64_t i = 0; i < a->rows; i++) CHECK_MSG(a->codes[i] < a->k, "codes[%lld] = %u", (long long)i, a->codes[i]);
    CHECK(isfinite(a->objective));
}

/* Same partition up to relabelling: a bijection between labels and codes. */
static int same_partition(const int *label, const uint16_t *codes, int64_t n, int K) {
    int *map = malloc(K * sizeof(int)), *inv = malloc(65536 * sizeof(int)), ok = 1;
    for (int k = 0; k < K; k++) map[k] = -1;
    for (int c = 0; c < 65536; c++) inv[c] = -1;
    for (int64_t i = 0; i < n && ok; i++) {
        int l = label[i], c = codes[i];
        if (map[l] < 0 && inv[c] < 0) { map[l] = c; inv[c] = l; }
        else if (map[l] != c || inv[c] != l) ok = 0;
    }
    free(map);
    free(inv);
    return ok;
}

/* codes[i] is the argmax of <y_i, a_k> (up to 1e-5); returns rows that are not. */
static int64_t not_argmax(const ecr_anchors *a, const double *y) {
    int64_t bad = 0;
    for (int64_t i = 0; i < a->rows; i++) {
        double own = dotd(y + i * a->dim, a->anchors + (size_t)a->codes[i] * a->dim, a->dim);
        for (int k = 0; k < a->k; k++)
            if (dotd(y + i * a->dim, a->anchors + (size_t)k * a->dim, a->dim) > own + 1e-5) { bad++; break; }
    }
    return bad;
}

typedef struct hist { int n; int restart[512], iter[512]; double obj[512]; } hist;
static void record(void *ctx, int restart, int iter, double objective) {
    hist *h = ctx;
    if (h->n < 512) { h->restart[h->n] = restart; h->iter[h->n] = iter; h->obj[h->n] = objective; h->n++; }
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_planted_recovered(void) {
    int K = 8, d = 16, per = 50, n = K * per, label[400];
    float *x = planted(K, d, per, 0.15, 42, label);
    for (uint64_t seed = 1; seed <= 4; seed++) {
        ecr_anchors *a = fit(x, n, d, K, seed, 0);
        if (!a) continue;
        check_sane(a);
        CHECK_MSG(same_partition(label, a->codes, n, K), "seed %llu: planted clusters not recovered",
                  (unsigned long long)seed);
        CHECK_MSG(a->objective > 0.95, "objective %g", a->objective);
        CHECK(a->iters_done < 25);                /* converged */
        /* A converged anchor is the normalised mean of its rows. */
        double *y = normalised(x, n, d, a->mean);
        double worst = 0;
        for (int k = 0; k < K; k++) {
            double m[16] = {0}, nn = 0;
            for (int i = 0; i < n; i++)
                if (a->codes[i] == k)
                    for (int j = 0; j < d; j++) m[j] += y[i * d + j];
            for (int j = 0; j < d; j++) nn += m[j] * m[j];
            for (int j = 0; j < d; j++) worst = fmax(worst, fabs(m[j] / sqrt(nn) - a->anchors[k * d + j]));
        }
        CHECK_MSG(worst < 1e-5, "anchor differs from its rows' normalised mean by %g", worst);
        CHECK(not_argmax(a, y) == 0);
        /* mean = the column mean of the input. */
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += x[i * d + j];
            CHECK_CLOSE(a->mean[j], s / n, 1e-5);
        }
        free(y);
        ecr_anchors_free(a);
    }
    free(x);
}

/* Unstructured data: codes are the argmax of the final anchors, pruning changes nothing,
 * and after convergence the anchors are the normalised means. */
static void test_lloyd_reference(void) {
    int64_t n = 1500;
    int d = 12, K = 24;
    float *x = gauss(n, d, 7);
    ecr_anchors_opts o;
    ecr_anchors_opts_default(&o);
    o.k = K; o.quiet = 1; o.restarts = 2; o.iters = 300;
    ecr_anchors *a = NULL, *b = NULL;
    CHECK_OK(ecr_anchors_fit(x, n, d, &o, &a));
    o.no_prune = 1;
    CHECK_OK(ecr_anchors_fit(x, n, d, &o, &b));
    if (a && b) {
        check_sane(a);
        CHECK(memcmp(a->codes, b->codes, n * sizeof(uint16_t)) == 0);
        CHECK(memcmp(a->anchors, b->anchors, (size_t)K * d * sizeof(float)) == 0);
        CHECK(a->objective == b->objective);
        double *y = normalised(x, n, d, a->mean);
        CHECK_MSG(not_argmax(a, y) == 0, "%lld codes are not the argmax", (long long)not_argmax(a, y));
        CHECK_MSG(a->iters_done < 300, "no convergence in 300 iterations (%d)", a->iters_done);
        double obj = 0;
        for (int64_t i = 0; i < n; i++) obj += dotd(y + i * d, a->anchors + (size_t)a->codes[i] * d, d);
        CHECK_CLOSE(a->objective, obj / n, 1e-6);
        free(y);
    }
    ecr_anchors_free(a);
    ecr_anchors_free(b);
    /* 25 iterations (not converged): codes still the argmax of the final anchors. */
    o.iters = 25; o.no_prune = 0; o.restarts = 1;
    CHECK_OK(ecr_anchors_fit(x, n, d, &o, &a));
    if (a) {
        double *y = normalised(x, n, d, a->mean);
        CHECK(not_argmax(a, y) == 0);
        free(y);
    }
    ecr_anchors_free(a);
    free(x);
}

static void test_empty_and_duplicates(void) {
    /* 5 distinct rows, each 4 times; K = 10 and K = N = 20. */
    int d = 6;
    float *base = gauss(5, d, 3), x[20 * 6];
    for (int i = 0; i < 20; i++) memcpy(x + i * d, base + (i % 5) * d, d * sizeof(float));
    for (int K = 10; K <= 20; K += 10) {
        ecr_anchors *a = fit(x, 20, d, K, 5, 3);
        if (!a) continue;
        check_sane(a);
        for (int i = 5; i < 20; i++) CHECK(a->codes[i] == a->codes[i % 5]);
        int used[20] = {0}, distinct = 0;
        for (int i = 0; i < 20; i++) distinct += !used[a->codes[i]]++;
        CHECK(distinct == 5);
        CHECK_CLOSE(a->objective, 1.0, 1e-5);
        for (int i = 0; i < 20; i++) CHECK(a->soft_idx[i * 3] == a->codes[i]);
        ecr_anchors_free(a);
    }
    free(base);
    /* Every row the same: all rows are zero after centring. */
    float same[6 * 4];
    for (int i = 0; i < 24; i++) same[i] = (float)(i % 4) - 1.5f;
    ecr_anchors *a = fit(same, 6, 4, 3, 1, 2);
    if (a) {
        check_sane(a);
        for (int i = 0; i < 6; i++) CHECK(a->codes[i] == 0);
        CHECK(a->objective == 0.0);
        ecr_anchors_free(a);
    }
    /* A zero row among others gets code 0 and similarity 0. */
    int label[40];
    float *p = planted(4, 8, 10, 0.1, 9, label);
    float *q = malloc(41 * 8 * sizeof(float));
    memcpy(q, p, 40 * 8 * sizeof(float));
    for (int j = 0; j < 8; j++) {
        double s = 0;
        for (int i = 0; i < 40; i++) s += p[i * 8 + j];
        q[40 * 8 + j] = (float)(s / 40);      /* the mean of all 41 rows: zero once centred */
    }
    a = fit(q, 41, 8, 4, 1, 2);
    if (a) {
        check_sane(a);
        CHECK(same_partition(label, a->codes, 40, 4));
        ecr_anchors_free(a);
    }
    free(p);
    free(q);
}

/* Distinct rows in 8 tight groups and K = 12: the 4 extra anchors take rows split off the
 * largest clusters, so every anchor owns rows. */
static void test_split_fills_all(void) {
    int label[40];
    float *x = planted(8, 10, 5, 0.05, 11, label);
    for (uint64_t seed = 1; seed <= 3; seed++) {
        ecr_anchors *a = fit(x, 40, 10, 12, seed, 0);
        if (!a) continue;
        check_sane(a);
        int used[12] = {0}, distinct = 0;
        for (int i = 0; i < 40; i++) distinct += !used[a->codes[i]]++;
        CHECK_MSG(distinct == 12, "seed %llu: %d of 12 anchors own rows", (unsigned long long)seed, distinct);
        /* Each anchor's rows stay inside one planted group. */
        int grp[12];
        for (int k = 0; k < 12; k++) grp[k] = -1;
        int mixed = 0;
        for (int i = 0; i < 40; i++) {
            if (grp[a->codes[i]] < 0) grp[a->codes[i]] = label[i];
            else if (grp[a->codes[i]] != label[i]) mixed++;
        }
        CHECK(mixed == 0);
        ecr_anchors_free(a);
    }
    free(x);
}

/* Given anchors e0, -e0, e3 for two groups at +e0 and -e0 (30 rows each plus one outlier
 * each, p = normalise(e0 + 0.7 e1) and -p): anchor 2 is left empty by the first assignment,
 * so it takes the row of the largest cluster (a tie: the lower index, 0) least similar to its
 * centroid, p, which then keeps it. */
static void test_split_takes_farthest(void) {
    int d = 8, n = 62, P = 17, Q = 40;
    float *x = calloc((size_t)n * d, sizeof(float)), init[3 * 8] = {0};
    ecr_rng r;
    ecr_rng_seed(&r, 77);
    for (int i = 0; i < n; i++) {
        float sign = i < 31 ? 1.0f : -1.0f;
        x[i * d + 0] = sign;
        for (int j = 1; j < d; j++) x[i * d + j] = (float)(0.02 * ecr_rng_normal(&r));
    }
    for (int j = 1; j < d; j++) x[P * d + j] = x[Q * d + j] = 0;
    x[P * d + 1] = 0.7f;
    x[Q * d + 0] = -1.0f;
    x[Q * d + 1] = -0.7f;
    init[0] = 1; init[8] = -1; init[16 + 3] = 1;
    static hist h;
    h.n = 0;
    ecr_anchors_opts o;
    ecr_anchors_opts_default(&o);
    o.k = 3; o.quiet = 1; o.init = init; o.on_iter = record; o.ctx = &h;
    ecr_anchors *a = NULL;
    CHECK_OK(ecr_anchors_fit(x, n, d, &o, &a));
    if (a) {
        check_sane(a);
        CHECK(a->restarts == 1);
        for (int i = 0; i < n; i++)
            CHECK_MSG(a->codes[i] == (i == P ? 2 : i < 31 ? 0 : 1), "row %d: code %u", i, a->codes[i]);
        double *y = normalised(x, n, d, a->mean);
        CHECK_CLOSE(dotd(y + P * d, a->anchors + 2 * d, d), 1.0, 1e-6);
        free(y);
        CHECK(h.n >= 2 && h.obj[1] > h.obj[0]);
    }
    ecr_anchors_free(a);
    /* Without the split (no iterations), anchor 2 stays empty. */
    o.iters = 0; o.on_iter = NULL;
    CHECK_OK(ecr_anchors_fit(x, n, d, &o, &a));
    if (a) {
        int used2 = 0;
        for (int i = 0; i < n; i++) used2 += a->codes[i] == 2;
        CHECK(used2 == 0);
    }
    ecr_anchors_free(a);
    /* A zero starting anchor is refused. */
    init[16 + 3] = 0;
    o.init = init;
    CHECK_STATUS(ecr_anchors_fit(x, n, d, &o, &a), ECR_E_INVALID);
    free(x);
}

static int same_anchors(const ecr_anchors *a, const ecr_anchors *b) {
    if (a->k != b->k || a->dim != b->dim || a->rows != b->rows || a->soft != b->soft) return 0;
    size_t nm = (size_t)a->rows * a->soft;
    return !memcmp(a->anchors, b->anchors, (size_t)a->k * a->dim * sizeof(float)) &&
           !memcmp(a->codes, b->codes, a->rows * sizeof(uint16_t)) &&
           !memcmp(a->mean, b->mean, a->dim * sizeof(float)) && (a->objective == b->objective || (isnan(a->objective) && isnan(b->objective))) &&
           (!nm || (!memcmp(a->soft_idx, b->soft_idx, nm * sizeof(uint16_t)) &&
                    !memcmp(a->soft_sim, b->soft_sim, nm * sizeof(float))));
}

static void test_deterministic(void) {
    int64_t n = 3000;
    int d = 20;
    float *x = gauss(n, d, 21);
    ecr_anchors *a = fit(x, n, d, 40, 3, 5), *b = fit(x, n, d, 40, 3, 5), *c = fit(x, n, d, 40, 4, 5);
    if (a && b && c) {
        CHECK(same_anchors(a, b));
        check_sane(c);
        CHECK(!same_anchors(a, c));           /* another seed lands elsewhere on this data */
    }
    ecr_anchors_free(a);
    ecr_anchors_free(b);
    ecr_anchors_free(c);
    free(x);
}

static void test_threads(void) {
    int64_t n = 3000;
    int d = 20;
    float *x = gauss(n, d, 22);
    int saved = ecr_get_threads();
    ecr_set_threads(1);
    ecr_anchors *a = fit(x, n, d, 40, 9, 4);
    ecr_set_threads(2);
    if (ecr_get_threads() != 2) fprintf(stderr, "  (built without OpenMP: one thread only)\n");
    ecr_anchors *b = fit(x, n, d, 40, 9, 4);
    ecr_set_threads(3);
    ecr_anchors *c = fit(x, n, d, 40, 9, 4);
    ecr_set_threads(saved);
    if (a && b && c) {
        CHECK_MSG(same_anchors(a, b), "1 and 2 threads differ");
        CHECK_MSG(same_anchors(a, c), "1 and 3 threads differ");
    }
    ecr_anchors_free(a);
    ecr_anchors_free(b);
    ecr_anchors_free(c);
    free(x);
}

static void test_objective_monotone(void) {
    int64_t n = 2500;
    int d = 16;
    float *x = gauss(n, d, 33);
    static hist h;
    h.n = 0;
    ecr_anchors_opts o;
    ecr_anchors_opts_default(&o);
    o.k = 30; o.quiet = 1; o.iters = 40; o.on_iter = record; o.ctx = &h;
    ecr_anchors *a = NULL;
    CHECK_OK(ecr_anchors_fit(x, n, d, &o, &a));
    CHECK(h.n > 3 * 5);                          /* seeding + several iterations per restart */
    int drops = 0, starts = 0;
    double best = -2, last_of[3] = {-2, -2, -2};
    for (int q = 0; q < h.n; q++) {
        if (h.iter[q] == 0) { starts++; continue; }
        CHECK(h.restart[q] == h.restart[q - 1] && h.iter[q] == h.iter[q - 1] + 1);
        if (h.obj[q] < h.obj[q - 1] - 1e-7) drops++;
        last_of[h.restart[q]] = h.obj[q];
    }
    CHECK(starts == 3);
    CHECK_MSG(drops == 0, "objective decreased %d times", drops);
    for (int r = 0; r < 3; r++) best = fmax(best, last_of[r]);
    if (a) {
        CHECK(a->objective == best);            /* the best restart is the one kept */
        CHECK(h.obj[h.n - 1] > h.obj[1]);       /* iterations improved on the seeding */
    }
    ecr_anchors_free(a);
    free(x);
}

/* Soft codes: sorted, first = code, similarities = the true cosines, nothing better left out. */
static void check_soft(const ecr_anchors *a, const float *x) {
    int M = a->soft, d = a->dim;
    double *y = normalised(x, a->rows, d, a->mean);
    int64_t bad_first = 0, bad_order = 0, bad_sim = 0, bad_top = 0;
    for (int64_t i = 0; i < a->rows; i++) {
        const uint16_t *idx = a->soft_idx + i * M;
        const float *sim = a->soft_sim + i * M;
        bad_first += idx[0] != a->codes[i];
        for (int q = 1; q < M; q++) bad_order += !(sim[q] <= sim[q - 1]) || idx[q] == idx[q - 1];
        for (int q = 0; q < M; q++)
            bad_sim += fabs(sim[q] - dotd(y + i * d, a->anchors + (size_t)idx[q] * d, d)) > 1e-5;
        for (int k = 0; k < a->k; k++) {
            int in = 0;
            for (int q = 0; q < M; q++) in |= idx[q] == k;
            if (!in && dotd(y + i * d, a->anchors + (size_t)k * d, d) > sim[M - 1] + 1e-5) bad_top++;
        }
    }
    CHECK(bad_first == 0);
    CHECK(bad_order == 0);
    CHECK(bad_sim == 0);
    CHECK(bad_top == 0);
    free(y);
}

static void test_soft_codes(void) {
    int64_t n = 800;
    int d = 10;
    float *x = gauss(n, d, 44);
    ecr_anchors *a = fit(x, n, d, 20, 1, 4);      /* insertion path */
    if (a) { check_sane(a); check_soft(a, x); }
    ecr_anchors_free(a);
    a = fit(x, n, d, 80, 1, 80);                  /* M = K > 64: sort path */
    if (a) {
        check_sane(a);
        check_soft(a, x);
        for (int64_t i = 0; i < n; i++) {
            int seen[80] = {0}, dup = 0;
            for (int q = 0; q < 80; q++) dup += seen[a->soft_idx[i * 80 + q]]++;
            CHECK(dup == 0);
        }
    }
    ecr_anchors_free(a);
    free(x);
}

static void test_bad_input(void) {
    float x[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 0, 1};
    ecr_anchors_opts o;
    ecr_anchors_opts_default(&o);
    o.quiet = 1; o.source = "dir/emb.npy";
    ecr_anchors *a = (ecr_anchors *)&o;
    o.k = 5;
    CHECK_STATUS(ecr_anchors_fit(x, 4, 3, &o, &a), ECR_E_INVALID);
    CHECK(a == NULL);
    CHECK(strstr(ecr_last_error(), "dir/emb.npy") && strstr(ecr_last_error(), "more than the 4 rows"));
    o.k = 0;
    CHECK_STATUS(ecr_anchors_fit(x, 4, 3, &o, &a), ECR_E_INVALID);
    o.k = 2; o.soft = 3;
    CHECK_STATUS(ecr_anchors_fit(x, 4, 3, &o, &a), ECR_E_INVALID);
    o.soft = 0; o.restarts = 0;
    CHECK_STATUS(ecr_anchors_fit(x, 4, 3, &o, &a), ECR_E_INVALID);
    o.restarts = 1; o.tau = 0;
    CHECK_STATUS(ecr_anchors_fit(x, 4, 3, &o, &a), ECR_E_INVALID);
    o.tau = 0.05f;
    CHECK_STATUS(ecr_anchors_fit(x, 0, 3, &o, &a), ECR_E_INVALID);
    x[7] = NAN;
    CHECK_STATUS(ecr_anchors_fit(x, 4, 3, &o, &a), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "row 2, column 1"));
    x[7] = 8;
    CHECK_OK(ecr_anchors_fit(x, 4, 3, &o, &a));
    ecr_anchors_free(a);
    ecr_anchors_free(NULL);
}

static void path(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_dir, name); }

static void test_save_load(void) {
    int label[120];
    float *x = planted(6, 12, 20, 0.2, 5, label);
    ecr_anchors_opts o;
    ecr_anchors_opts_default(&o);
    o.k = 6; o.soft = 3; o.quiet = 1; o.tau = 0.07f; o.seed = 12345678901ULL; o.iters = 9;
    o.restarts = 2; o.source = "some/dir/teacher.npy";
    ecr_anchors *a = NULL, *b = NULL;
    CHECK_OK(ecr_anchors_fit(x, 120, 12, &o, &a));
    char p[512];
    path(p, sizeof p, "a.safetensors");
    if (a) CHECK_OK(ecr_anchors_save(a, p));
    CHECK_OK(ecr_anchors_load(p, &b));
    if (a && b) {
        CHECK(same_anchors(a, b));
        CHECK(b->tau == 0.07f && b->seed == 12345678901ULL && b->iters == 9 && b->restarts == 2);
        CHECK(!strcmp(b->source, "teacher.npy"));
        char h[17];
        ecr_hash_hex(x, 120 * 12 * sizeof(float), h);
        CHECK(!strcmp(b->source_hash, h) && !strcmp(a->source_hash, h));
    }
    ecr_st_file *f = NULL;
    CHECK_OK(ecr_st_open(p, &f));
    if (f) {
        const char *want[][2] = {{"format", "ecr-anchors-1"}, {"k", "6"}, {"dim", "12"}, {"rows", "120"},
                                 {"soft", "3"}, {"tau", "0.07"}, {"seed", "12345678901"},
                                 {"iters", "9"}, {"restarts", "2"}, {"source", "teacher.npy"}};
        for (size_t q = 0; q < sizeof want / sizeof want[0]; q++) {
            const char *v = ecr_st_meta(f, want[q][0]);
            CHECK_MSG(v && !strcmp(v, want[q][1]), "metadata %s = %s", want[q][0], v ? v : "(none)");
        }
        CHECK(ecr_st_meta(f, "objective") && fabs(atof(ecr_st_meta(f, "objective")) - a->objective) < 1e-8);
        const char *names[] = {"anchors", "codes", "mean", "soft_idx", "soft_sim"};
        for (int q = 0; q < 5; q++) CHECK(ecr_st_find(f, names[q]) != NULL);
        ecr_st_close(f);
    }
    ecr_anchors_free(b);
    /* Without soft codes there are no soft tensors. */
    o.soft = 0;
    CHECK_OK(ecr_anchors_fit(x, 120, 12, &o, &b));
    path(p, sizeof p, "hard.safetensors");
    if (b) CHECK_OK(ecr_anchors_save(b, p));
    ecr_anchors_free(b);
    b = NULL;
    CHECK_OK(ecr_anchors_load(p, &b));
    if (b) CHECK(b->soft == 0 && b->soft_idx == NULL && b->soft_sim == NULL);
    ecr_anchors_free(b);
    ecr_anchors_free(a);
    free(x);
}

/* Writes a crafted anchors file: K = 3, D = 2, N = 4, optionally broken. */
typedef struct craft {
    const char *format, *k, *tau;
    uint16_t bad_code;            /* written into codes[2] when non-zero        */
    int codes_i32, no_mean, soft_only_idx, nan_anchor;
} craft;

static ecr_status write_craft(const char *p, const craft *c) {
    float an[6] = {1, 0, 0, 1, 0.6f, 0.8f}, mean[2] = {0, 0}, sim[4] = {1, 1, 1, 1};
    uint16_t codes[4] = {0, 1, 2, 0}, sidx[4] = {0, 1, 2, 0};
    int32_t codes32[4] = {0, 1, 2, 0};
    if (c->bad_code) codes[2] = c->bad_code;
    if (c->nan_anchor) an[3] = NAN;
    int64_t sa[2] = {3, 2}, sc[1] = {4}, sm[1] = {2}, ss[2] = {4, 1};
    ecr_st_writer *w;
    ecr_st_writer_create(&w);
    ecr_st_writer_add(w, "anchors", ECR_F32, 2, sa, an);
    if (c->codes_i32) ecr_st_writer_add(w, "codes", ECR_I32, 1, sc, codes32);
    else ecr_st_writer_add(w, "codes", ECR_U16, 1, sc, codes);
    if (!c->no_mean) ecr_st_writer_add(w, "mean", ECR_F32, 1, sm, mean);
    if (c->soft_only_idx) ecr_st_writer_add(w, "soft_idx", ECR_U16, 2, ss, sidx);
    else { ecr_st_writer_add(w, "soft_idx", ECR_U16, 2, ss, sidx); ecr_st_writer_add(w, "soft_sim", ECR_F32, 2, ss, sim); }
    if (c->format) ecr_st_writer_meta(w, "format", c->format);
    ecr_st_writer_meta(w, "k", c->k ? c->k : "3");
    ecr_st_writer_meta(w, "dim", "2");
    ecr_st_writer_meta(w, "rows", "4");
    ecr_st_writer_meta(w, "soft", "1");
    ecr_st_writer_meta(w, "tau", c->tau ? c->tau : "0.05");
    ecr_status st = ecr_st_writer_write(w, p);
    ecr_st_writer_free(w);
    return st;
}

static void expect_refused(const craft *c, const char *want) {
    char p[512];
    path(p, sizeof p, "bad.safetensors");
    CHECK_OK(write_craft(p, c));
    ecr_anchors *a = (ecr_anchors *)p;
    CHECK_STATUS(ecr_anchors_load(p, &a), ECR_E_INVALID);
    CHECK(a == NULL);
    CHECK_MSG(strstr(ecr_last_error(), "bad.safetensors") && strstr(ecr_last_error(), want),
              "message '%s' lacks '%s'", ecr_last_error(), want);
}

static void test_load_refuses(void) {
    char p[512];
    path(p, sizeof p, "good.safetensors");
    craft good = {.format = "ecr-anchors-1"};
    CHECK_OK(write_craft(p, &good));
    ecr_anchors *a = NULL;
    CHECK_OK(ecr_anchors_load(p, &a));
    if (a) CHECK(a->k == 3 && a->dim == 2 && a->rows == 4 && a->soft == 1 && a->codes[2] == 2);
    ecr_anchors_free(a);
    craft c;
    c = good; c.bad_code = 3;              expect_refused(&c, "tensor 'codes': element 2 is 3 (expected < k = 3)");
    c = good; c.codes_i32 = 1;             expect_refused(&c, "'codes'");
    c = good; c.no_mean = 1;               expect_refused(&c, "'mean'");
    c = good; c.soft_only_idx = 1;         expect_refused(&c, "'soft_idx': present without 'soft_sim'");
    c = good; c.nan_anchor = 1;            expect_refused(&c, "tensor 'anchors': element 3");
    c = good; c.format = NULL;             expect_refused(&c, "metadata 'format'");
    c = good; c.format = "ecr-data-1";     expect_refused(&c, "metadata 'format'");
    c = good; c.k = "4";                   expect_refused(&c, "metadata k/dim/rows/soft");
    c = good; c.tau = "-1";                expect_refused(&c, "metadata 'tau'");
    path(p, sizeof p, "missing.safetensors");
    CHECK_STATUS(ecr_anchors_load(p, &a), ECR_E_IO);
}

/* Controls: shuffled codes are a permutation of the codes that moves most texts, soft rows
 * move with their code, the anchors stay; random anchors are unit rows unlike the fitted
 * ones, codes kept, soft codes dropped; both deterministic by seed, saved with their
 * "control" metadata, and a control of a control is refused. */
static void test_controls(void) {
    int d = 8, K = 6, per = 50, n = K * per, *label = malloc((size_t)n * sizeof(int));
    float *x = planted(K, d, per, 0.3, 21, label);
    ecr_anchors *a = fit(x, n, d, K, 1, 3), *s1 = fit(x, n, d, K, 1, 3), *s2 = fit(x, n, d, K, 1, 3);
    CHECK_OK(ecr_anchors_control(s1, ECR_CONTROL_SHUFFLE_CODES, 5));
    CHECK_OK(ecr_anchors_control(s2, ECR_CONTROL_SHUFFLE_CODES, 5));
    CHECK(same_anchors(s1, s2));
    CHECK(!strcmp(s1->control, "shuffled-codes") && isnan(s1->objective));
    CHECK(!memcmp(a->anchors, s1->anchors, (size_t)K * d * sizeof(float)));
    int count_a[6] = {0}, count_s[6] = {0}, moved = 0;
    for (int i = 0; i < n; i++) {
        count_a[a->codes[i]]++;
        count_s[s1->codes[i]]++;
        moved += a->codes[i] != s1->codes[i];
        CHECK(s1->soft_idx[i * 3] == s1->codes[i]);
    }
    CHECK(!memcmp(count_a, count_s, sizeof count_a));
    CHECK_MSG(moved > n / 2, "only %d of %d codes changed", moved, n);
    CHECK_STATUS(ecr_anchors_control(s1, ECR_CONTROL_RANDOM_ANCHORS, 5), ECR_E_INVALID);

    ecr_anchors *r = fit(x, n, d, K, 1, 3);
    CHECK_OK(ecr_anchors_control(r, ECR_CONTROL_RANDOM_ANCHORS, 9));
    CHECK(!strcmp(r->control, "random-anchors") && r->soft == 0 && !r->soft_idx && !r->soft_sim);
    CHECK(!memcmp(a->codes, r->codes, (size_t)n * sizeof(uint16_t)));
    double worst = 0, far = 0;
    for (int k = 0; k < K; k++) {
        double nn = 0, dd = 0;
        for (int j = 0; j < d; j++) {
            nn += (double)r->anchors[k * d + j] * r->anchors[k * d + j];
            dd += fabs((double)r->anchors[k * d + j] - a->anchors[k * d + j]);
        }
        worst = fmax(worst, fabs(nn - 1));
        far += dd;
    }
    CHECK_MSG(worst < 1e-6, "random anchors not unit: %.2e", worst);
    CHECK(far > 1.0);
    char p[300];
    snprintf(p, sizeof p, "%s/control.safetensors", g_dir);
    CHECK_OK(ecr_anchors_save(r, p));
    ecr_anchors *back = NULL;
    CHECK_OK(ecr_anchors_load(p, &back));
    if (back) CHECK(!strcmp(back->control, "random-anchors") && same_anchors(r, back));
    CHECK_STATUS(ecr_anchors_control(a, (ecr_anchors_control_kind)7, 1), ECR_E_INVALID);
    unlink(p);
    ecr_anchors_free(back);
    ecr_anchors_free(a);
    ecr_anchors_free(s1);
    ecr_anchors_free(s2);
    ecr_anchors_free(r);
    free(x);
    free(label);
}

int main(void) {
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/ecr_test_anchors_XXXXXX", t && *t ? t : P_tmpdir);
    if (!mkdtemp(g_dir)) { perror("mkdtemp"); return 1; }
    RUN(test_planted_recovered);
    RUN(test_controls);
    RUN(test_lloyd_reference);
    RUN(test_empty_and_duplicates);
    RUN(test_split_fills_all);
    RUN(test_split_takes_farthest);
    RUN(test_deterministic);
    RUN(test_threads);
    RUN(test_objective_monotone);
    RUN(test_soft_codes);
    RUN(test_bad_input);
    RUN(test_save_load);
    RUN(test_load_refuses);
    tl_rm_tree(g_dir);
    return test_finish("test_anchors");
}
