/* anchors.c — semantic anchors: spherical k-means over embeddings (contract: ecr.h,
 * "Anchors"; method: DESIGN.md "The method").
 *
 * One fit, N rows, D dims, K anchors:
 *   prepare  emb [N, D] -> x [N, D]: centred by mu [D], unit rows (zero rows stay zero)
 *   seed     k-means++ -> c [K, D]; per row a (best anchor), s (its similarity), u (an
 *            upper bound on the similarity to every other anchor)
 *   iterate  update: c_k = normalise(sum of the rows of cluster k), empty clusters split
 *            from the largest; bounds: u += how far the other centroids moved, s exact;
 *            assign: rows with s > u + margin keep their anchor, the others get
 *            S = x c^T (sgemm, fixed row blocks) and a = argmax, u = second best
 *   finish   best restart -> codes (uint16), optional top-M soft codes
 *
 * Determinism across thread counts: every row block is multiplied by one thread with a
 * single-threaded sgemm (inside an active OpenMP region OpenBLAS runs on the calling
 * thread, and the portable fallback's inner region is inactive), blocks have a fixed size
 * that depends on K only, per-row work is independent, centroid sums run per cluster in
 * row order, and scalar totals are summed serially. */
#include "ecr.h"
#include "util.h"
#include "matmul.h"
#include "ops.h"
#include "rng.h"
#include "anchors_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    SEED_BLOCK = 32,          /* k-means++: refresh the distances every 32 new centres      */
    MAX_REJECT = 64,          /* ... or after 64 rejected proposals in a row                */
    BLOCK_FLOATS = 1 << 16,   /* rows per block: BLOCK_FLOATS / K, clamped to [16, 256]     */
};
/* A row keeps its anchor when s > u + PRUNE_MARGIN: covers float rounding of s and u. */
#define PRUNE_MARGIN 1e-5f

/* ---- shared read-only data and per-thread scratch -------------------------------------- */

typedef struct km_data {
    const float *x;           /* [n, d] unit or zero rows                                   */
    const uint8_t *zero;      /* [n] 1 for a zero row                                       */
    const int64_t *nz;        /* [nnz] the non-zero rows, ascending                          */
    int64_t n, nnz;
    int d, k;
    int br;                   /* rows per block                                             */
    int64_t nblk;
    int nthreads;
    float *xg;                /* [nthreads][br, d] gathered rows                            */
    float *sg;                /* [nthreads][br, k] similarities                             */
    int64_t *gi;              /* [nthreads][br] their row indices                           */
    double *acc;              /* [nthreads][d] centroid sums                                */
    int no_prune, quiet;
} km_data;

/* ---- one restart's state ------------------------------------------------------------------ */

typedef struct km_state {
    float *c;                 /* [k, d] centroids                                           */
    float *c_old;             /* [k, d] previous centroids                                  */
    int32_t *a;               /* [n] assigned centroid                                      */
    float *s;                 /* [n] <x_i, c_{a_i}>                                         */
    float *u;                 /* [n] upper bound on <x_i, c_j> for j != a_i                 */
    uint8_t *need;            /* [n] recompute this row in the next assignment              */
    float *w;                 /* [n] seeding weight: distance to the nearest centre         */
    double *cw;               /* [n] prefix sums of w                                       */
    int64_t *count;           /* [k] rows per cluster                                       */
    int64_t *start;           /* [k + 1] cluster offsets into order                          */
    int64_t *order;           /* [n] rows grouped by cluster, ascending within a cluster    */
    double *delta;            /* [k] ||c_k - c_old_k||                                      */
    double obj;               /* mean s                                                     */
    int iters_done;
} km_state;

/* <a, b> over d floats, summed in a fixed order (16 lanes, then the lanes in order). */
static float dotf(const float *restrict a, const float *restrict b, int d) {
    float lane[16] = {0};
    int j = 0;
    for (; j + 16 <= d; j += 16)
        for (int l = 0; l < 16; l++) lane[l] += a[j + l] * b[j + l];
    float s = 0.0f;
    for (int l = 0; l < 16; l++) s += lane[l];
    for (; j < d; j++) s += a[j] * b[j];
    return s;
}

/* Uniform integer in [0, n), n > 0. */
static int64_t rng_below(ecr_rng *r, int64_t n) {
    return (int64_t)(ecr_rng_uniform(r) * (double)n) % n;
}

/* ---- prepare: centre and normalise ------------------------------------------------------ */

/* mu = column mean (double sums in row order). x = emb - mu with unit rows; a row whose
 * centred norm is 0 stays 0 and is flagged. Fails on a non-finite value. */
static ecr_status km_prepare(const float *emb, int64_t n, int d, const char *src, float *mu,
                             float *x, uint8_t *zero) {
    double *sum = calloc((size_t)d, sizeof *sum);
    if (!sum) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", src);
    for (int64_t i = 0; i < n; i++) {
        const float *e = emb + (size_t)i * d;
        for (int j = 0; j < d; j++) {
            if (!isfinite(e[j])) {
                free(sum);
                return ecr_fail(ECR_E_INVALID, "%s: row %lld, column %d: value is not finite",
                                src, (long long)i, j);
            }
            sum[j] += e[j];
        }
    }
    for (int j = 0; j < d; j++) mu[j] = (float)(sum[j] / (double)n);
    free(sum);
ECR_OMP(parallel for schedule(static))
    for (int64_t i = 0; i < n; i++) {
        const float *e = emb + (size_t)i * d;
        float *y = x + (size_t)i * d;
        for (int j = 0; j < d; j++) y[j] = e[j] - mu[j];
        zero[i] = !(ecr_unit_row(y, d, 0.0, y) > 0.0);
    }
    return ECR_OK;
}

/* ---- state allocation --------------------------------------------------------------------- */

static void km_state_free(km_state *S) {
    free(S->c); free(S->c_old); free(S->a); free(S->s); free(S->u); free(S->need);
    free(S->w); free(S->cw); free(S->count); free(S->start); free(S->order); free(S->delta);
    memset(S, 0, sizeof *S);
}

static int km_state_alloc(km_state *S, int64_t n, int d, int k) {
    memset(S, 0, sizeof *S);
    size_t kd = (size_t)k * d, un = (size_t)n;
    S->c = malloc(kd * sizeof(float));
    S->c_old = malloc(kd * sizeof(float));
    S->a = malloc(un * sizeof(int32_t));
    S->s = malloc(un * sizeof(float));
    S->u = malloc(un * sizeof(float));
    S->need = malloc(un);
    S->w = malloc(un * sizeof(float));
    S->cw = malloc(un * sizeof(double));
    S->count = malloc((size_t)k * sizeof(int64_t));
    S->start = malloc(((size_t)k + 1) * sizeof(int64_t));
    S->order = malloc(un * sizeof(int64_t));
    S->delta = malloc((size_t)k * sizeof(double));
    return S->c && S->c_old && S->a && S->s && S->u && S->need && S->w && S->cw && S->count &&
           S->start && S->order && S->delta;
}

/* ---- similarities of one row block -------------------------------------------------------- */

/* Rows [r0, r0+m) of block b: into rows[] the ones to compute (all when all == 1, else
 * those with need[i]), gathers them unless they are contiguous, and returns S [cnt, kc] =
 * X_rows C[c0:c0+kc]^T in the calling thread's buffer. *cnt = number of rows. */
static const float *block_sims(const km_data *D, const km_state *S, int64_t b, int all,
                               const float *c, int kc, int64_t **rows, int *cnt) {
    int t = ecr_thread_id();
    int64_t r0 = b * D->br;
    int m = (int)(r0 + D->br <= D->n ? D->br : D->n - r0);
    int64_t *gi = D->gi + (size_t)t * D->br;
    float *xg = D->xg + (size_t)t * D->br * D->d;
    float *sg = D->sg + (size_t)t * D->br * D->k;
    int g = 0;
    for (int r = 0; r < m; r++)
        if (all || S->need[r0 + r]) gi[g++] = r0 + r;
    *rows = gi;
    *cnt = g;
    if (g == 0) return sg;
    const float *xa = D->x + (size_t)r0 * D->d;
    if (g < m) {
        for (int r = 0; r < g; r++)
            memcpy(xg + (size_t)r * D->d, D->x + (size_t)gi[r] * D->d, (size_t)D->d * sizeof(float));
        xa = xg;
    }
    /* One thread per block (see the file comment): sg [g, kc] = xa [g, d] c [kc, d]^T. */
    ecr_sgemm(0, 1, g, kc, D->d, 1.0f, xa, D->d, c, D->d, 0.0f, sg, kc);
    return sg;
}

/* ---- seeding: k-means++ on 1 - <x, c> ------------------------------------------------------- */

/* Merges centres [p0, p1) into every row's best (s, a) and second best (u) and recomputes
 * the seeding weights w = 1 - s (0 for zero rows) and their prefix sums. */
static void seed_refresh(const km_data *D, km_state *S, int p0, int p1) {
    int kc = p1 - p0;
    const float *c = S->c + (size_t)p0 * D->d;
ECR_OMP(parallel for schedule(dynamic, 1))
    for (int64_t b = 0; b < D->nblk; b++) {
        int64_t *rows;
        int g;
        const float *sg = block_sims(D, S, b, 1, c, kc, &rows, &g);
        for (int r = 0; r < g; r++) {
            int64_t i = rows[r];
            const float *v = sg + (size_t)r * kc;
            float best = S->s[i], second = S->u[i];
            int32_t arg = S->a[i];
            for (int j = 0; j < kc; j++) {
                if (v[j] > best) { second = best; best = v[j]; arg = p0 + j; }
                else if (v[j] > second) second = v[j];
            }
            S->s[i] = best; S->u[i] = second; S->a[i] = arg;
            float w = 1.0f - best;
            S->w[i] = D->zero[i] || !(w > 0.0f) ? 0.0f : w;
        }
    }
    double run = 0.0;
    for (int64_t i = 0; i < D->n; i++) S->cw[i] = run += S->w[i];
}

/* Centre t = row `row`, or a random unit vector when there is no non-zero row. */
static void seed_set(const km_data *D, km_state *S, int t, int64_t row, ecr_rng *rng) {
    float *c = S->c + (size_t)t * D->d;
    if (row >= 0) {
        memcpy(c, D->x + (size_t)row * D->d, (size_t)D->d * sizeof(float));
        return;
    }
    for (int j = 0; j < D->d; j++) c[j] = (float)ecr_rng_normal(rng);
    if (!(ecr_unit_row(c, D->d, 0.0, c) > 0.0)) c[0] = 1.0f;
}

/* A row drawn with probability proportional to its distance to the nearest of centres
 * [0, t). The weights w cover centres [0, *p0) only (an upper bound on the true ones), so
 * a proposal drawn from w is accepted with probability w_true / w, where w_true also
 * accounts for the pending centres [*p0, t): an exact draw from w_true. After MAX_REJECT
 * rejections the weights are refreshed. When every weight is 0 (all rows sit on a
 * centre), a uniform non-zero row. Returns -1 only when there is no non-zero row. */
static int64_t seed_draw(const km_data *D, km_state *S, ecr_rng *rng, int t, int *p0) {
    int tries = 0;
    for (;;) {
        double W = S->cw[D->n - 1];
        if (!(W > 0.0)) return D->nnz ? D->nz[rng_below(rng, D->nnz)] : -1;
        double r = ecr_rng_uniform(rng) * W;
        int64_t lo = 0, hi = D->n - 1;             /* first i with cw[i] > r */
        while (lo < hi) {
            int64_t mid = lo + (hi - lo) / 2;
            if (S->cw[mid] > r) hi = mid; else lo = mid + 1;
        }
        while (lo > 0 && !(S->w[lo] > 0.0f)) lo--; /* r rounded up to W */
        float w = S->w[lo], wt = w;
        const float *xi = D->x + (size_t)lo * D->d;
        for (int j = *p0; j < t; j++) {
            float dj = 1.0f - dotf(xi, S->c + (size_t)j * D->d, D->d);
            if (dj < wt) wt = dj;
        }
        if (ecr_rng_uniform(rng) * w < wt) return lo;
        if (++tries >= MAX_REJECT) {
            seed_refresh(D, S, *p0, t);
            *p0 = t;
            tries = 0;
        }
    }
}

/* Exact similarity of every row to its centroid, and the objective (their mean). */
static void exact_sims(const km_data *D, km_state *S) {
ECR_OMP(parallel for schedule(static))
    for (int64_t i = 0; i < D->n; i++)
        S->s[i] = D->zero[i] ? 0.0f : dotf(D->x + (size_t)i * D->d, S->c + (size_t)S->a[i] * D->d, D->d);
    double sum = 0.0;
    for (int64_t i = 0; i < D->n; i++) sum += S->s[i];
    S->obj = sum / (double)D->n;
}

/* k-means++: K centres, then every row's best/second-best similarity. */
static void km_seed(const km_data *D, km_state *S, ecr_rng *rng) {
    for (int64_t i = 0; i < D->n; i++) { S->s[i] = S->u[i] = -INFINITY; S->a[i] = 0; }
    seed_set(D, S, 0, D->nnz ? D->nz[rng_below(rng, D->nnz)] : -1, rng);
    seed_refresh(D, S, 0, 1);
    int p0 = 1;
    for (int t = 1; t < D->k; t++) {
        if (t - p0 >= SEED_BLOCK) {
            seed_refresh(D, S, p0, t);
            p0 = t;
        }
        seed_set(D, S, t, seed_draw(D, S, rng, t, &p0), rng);
    }
    if (p0 < D->k) seed_refresh(D, S, p0, D->k);
    exact_sims(D, S);
}

static int64_t km_assign(const km_data *D, km_state *S, int all, int64_t *computed);

/* Given starting anchors (rows normalised here; check_opts made sure they are non-zero):
 * every row assigned to its most similar one. */
static void km_init(const km_data *D, km_state *S, const float *init) {
    int d = D->d;
    for (int k = 0; k < D->k; k++) {
        const float *r = init + (size_t)k * d;
        double nn = 0.0;
        for (int j = 0; j < d; j++) nn += (double)r[j] * r[j];
        for (int j = 0; j < d; j++) S->c[(size_t)k * d + j] = (float)(r[j] / sqrt(nn));
    }
    for (int64_t i = 0; i < D->n; i++) S->a[i] = -1;
    int64_t computed;
    km_assign(D, S, 1, &computed);
}

/* ---- Lloyd iteration ----------------------------------------------------------------------- */

/* Gives every empty cluster (ascending) the row of the currently largest cluster (lowest
 * index on ties; at least 2 rows) least similar to its centroid (lowest row on ties; never
 * a zero row). Returns the number of splits. */
static int km_split_empty(const km_data *D, km_state *S) {
    int splits = 0;
    for (int e = 0; e < D->k; e++) {
        if (S->count[e] != 0) continue;
        int L = 0;
        for (int j = 1; j < D->k; j++)
            if (S->count[j] > S->count[L]) L = j;
        if (S->count[L] < 2) continue;
        int64_t p = -1;
        for (int64_t i = 0; i < D->n; i++)
            if (S->a[i] == L && !D->zero[i] && (p < 0 || S->s[i] < S->s[p])) p = i;
        if (p < 0) continue;
        S->a[p] = e;
        S->count[L]--;
        S->count[e] = 1;
        S->u[p] = INFINITY;                       /* recompute it in the next assignment */
        splits++;
    }
    return splits;
}

/* c_old = c; c_k = normalise(sum of the rows of cluster k, in row order) (kept when the sum
 * is 0 or the cluster is empty); delta_k = ||c_k - c_old_k||. */
static int km_update(const km_data *D, km_state *S) {
    int k = D->k, d = D->d;
    float *tmp = S->c_old; S->c_old = S->c; S->c = tmp;
    memset(S->count, 0, (size_t)k * sizeof(int64_t));
    for (int64_t i = 0; i < D->n; i++) S->count[S->a[i]]++;
    int splits = km_split_empty(D, S);
    S->start[0] = 0;
    for (int j = 0; j < k; j++) S->start[j + 1] = S->start[j] + S->count[j];
    int64_t *fill = S->count;                    /* reused as cursors, restored below */
    for (int j = 0; j < k; j++) fill[j] = S->start[j];
    for (int64_t i = 0; i < D->n; i++) S->order[fill[S->a[i]]++] = i;
    for (int j = 0; j < k; j++) S->count[j] = S->start[j + 1] - S->start[j];
ECR_OMP(parallel for schedule(dynamic, 1))
    for (int j = 0; j < k; j++) {
        double *acc = D->acc + (size_t)ecr_thread_id() * d;
        float *c = S->c + (size_t)j * d;
        const float *co = S->c_old + (size_t)j * d;
        memset(acc, 0, (size_t)d * sizeof(double));
        for (int64_t q = S->start[j]; q < S->start[j + 1]; q++) {
            const float *xi = D->x + (size_t)S->order[q] * d;
            for (int l = 0; l < d; l++) acc[l] += xi[l];
        }
        double nn = 0.0;
        for (int l = 0; l < d; l++) nn += acc[l] * acc[l];
        if (!(nn > 0.0)) {
            memcpy(c, co, (size_t)d * sizeof(float));
            S->delta[j] = 0.0;
            continue;
        }
        double inv = 1.0 / sqrt(nn), dd = 0.0;
        for (int l = 0; l < d; l++) {
            c[l] = (float)(acc[l] * inv);
            double df = (double)c[l] - co[l];
            dd += df * df;
        }
        S->delta[j] = sqrt(dd);
    }
    return splits;
}

/* After an update: u_i += the largest move among the other centroids, s_i exact, and
 * need_i = 1 unless s_i > u_i + margin (then no other centroid can beat a_i). */
static void km_bounds(const km_data *D, km_state *S) {
    double m1 = 0.0, m2 = 0.0;
    int i1 = -1;
    for (int j = 0; j < D->k; j++) {
        if (S->delta[j] > m1) { m2 = m1; m1 = S->delta[j]; i1 = j; }
        else if (S->delta[j] > m2) m2 = S->delta[j];
    }
    /* Round the bound up so float rounding cannot make it too small. */
    float f1 = (float)m1 * (1.0f + 1e-6f), f2 = (float)m2 * (1.0f + 1e-6f);
ECR_OMP(parallel for schedule(static))
    for (int64_t i = 0; i < D->n; i++) {
        if (D->zero[i]) { S->need[i] = 0; continue; }
        S->u[i] += S->a[i] == i1 ? f2 : f1;
        S->s[i] = dotf(D->x + (size_t)i * D->d, S->c + (size_t)S->a[i] * D->d, D->d);
        S->need[i] = D->no_prune || !(S->s[i] > S->u[i] + PRUNE_MARGIN);
    }
}

/* Reassigns the rows flagged in need (all of them with all = 1): a = argmax of x c^T
 * (lowest index on ties), u = second best, s exact. Returns rows that changed centroid;
 * *computed = rows recomputed. */
static int64_t km_assign(const km_data *D, km_state *S, int all, int64_t *computed) {
    int64_t changed = 0, comp = 0;
    int k = D->k;
ECR_OMP(parallel for schedule(dynamic, 1) reduction(+ : changed, comp))
    for (int64_t b = 0; b < D->nblk; b++) {
        int64_t *rows;
        int g;
        const float *sg = block_sims(D, S, b, all, S->c, k, &rows, &g);
        comp += g;
        for (int r = 0; r < g; r++) {
            int64_t i = rows[r];
            const float *v = sg + (size_t)r * k;
            float best = v[0], second = -INFINITY;
            int32_t arg = 0;
            for (int j = 1; j < k; j++) {
                if (v[j] > best) { second = best; best = v[j]; arg = j; }
                else if (v[j] > second) second = v[j];
            }
            if (arg != S->a[i]) {
                changed++;
                S->a[i] = arg;
                S->s[i] = dotf(D->x + (size_t)i * D->d, S->c + (size_t)arg * D->d, D->d);
            }
            S->u[i] = second;
        }
    }
    double sum = 0.0;
    for (int64_t i = 0; i < D->n; i++) sum += S->s[i];
    S->obj = sum / (double)D->n;
    *computed = comp;
    return changed;
}

/* One restart: seeding then up to `iters` iterations (stops once no row moves). */
static void km_run(const km_data *D, km_state *S, const ecr_anchors_opts *o, int r) {
    ecr_rng rng;
    uint64_t st = o->seed + ECR_SEED_KMEANS * (uint64_t)r;
    ecr_rng_seed(&rng, ecr_splitmix64(&st));
    double t0 = ecr_now();
    if (o->init) km_init(D, S, o->init);
    else km_seed(D, S, &rng);
    S->iters_done = 0;
    if (o->on_iter) o->on_iter(o->ctx, r, 0, S->obj);
    if (!o->quiet)
        fprintf(stderr, "anchors: restart %d/%d: %s %d anchors, objective %.6f (%.1f s)\n",
                r + 1, o->restarts, o->init ? "given" : "k-means++ seeded", D->k, S->obj,
                ecr_now() - t0);
    for (int it = 1; it <= o->iters; it++) {
        int splits = km_update(D, S);
        km_bounds(D, S);
        int64_t computed;
        int64_t moved = km_assign(D, S, 0, &computed);
        S->iters_done = it;
        if (o->on_iter) o->on_iter(o->ctx, r, it, S->obj);
        if (!o->quiet)
            fprintf(stderr, "anchors: restart %d/%d iter %d/%d: objective %.6f, %lld rows moved, "
                    "%d empty split, %.1f%% rows recomputed (%.1f s)\n", r + 1, o->restarts, it,
                    o->iters, S->obj, (long long)moved, splits,
                    100.0 * (double)computed / (double)D->n, ecr_now() - t0);
        if (moved == 0) {
            if (!o->quiet && it < o->iters)
                fprintf(stderr, "anchors: restart %d/%d: converged (no row moved)\n", r + 1,
                        o->restarts);
            break;
        }
    }
}

/* ---- soft codes ---------------------------------------------------------------------------- */

typedef struct sim_idx { float v; int32_t j; } sim_idx;

/* Descending similarity, then ascending index. */
static int sim_cmp(const void *pa, const void *pb) {
    const sim_idx *a = pa, *b = pb;
    if (a->v != b->v) return a->v > b->v ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

/* The top-m of v[0..k) into idx/sim, most similar first (lower index first on ties). */
static void top_m(const float *v, int k, int m, sim_idx *tmp, uint16_t *idx, float *sim) {
    if (m > 64) {
        for (int j = 0; j < k; j++) { tmp[j].v = v[j]; tmp[j].j = j; }
        qsort(tmp, (size_t)k, sizeof *tmp, sim_cmp);
    } else {
        int n = 0;                                /* insertion into tmp[0..n), sorted */
        for (int j = 0; j < k; j++) {
            if (n == m && !(v[j] > tmp[m - 1].v)) continue;
            int p = n < m ? n++ : m - 1;
            while (p > 0 && v[j] > tmp[p - 1].v) { tmp[p] = tmp[p - 1]; p--; }
            tmp[p].v = v[j];
            tmp[p].j = j;
        }
    }
    for (int q = 0; q < m; q++) { idx[q] = (uint16_t)tmp[q].j; sim[q] = tmp[q].v; }
}

/* Soft codes of every row against the final anchors; codes = their first entries. */
static ecr_status km_soft(const km_data *D, km_state *S, ecr_anchors *A) {
    int k = D->k, m = A->soft;
    sim_idx *tmp = malloc((size_t)D->nthreads * k * sizeof *tmp);
    if (!tmp) return ecr_fail(ECR_E_NOMEM, "anchors: out of memory");
ECR_OMP(parallel for schedule(dynamic, 1))
    for (int64_t b = 0; b < D->nblk; b++) {
        int64_t *rows;
        int g;
        const float *sg = block_sims(D, S, b, 1, S->c, k, &rows, &g);
        sim_idx *t = tmp + (size_t)ecr_thread_id() * k;
        for (int r = 0; r < g; r++) {
            int64_t i = rows[r];
            top_m(sg + (size_t)r * k, k, m, t, A->soft_idx + (size_t)i * m, A->soft_sim + (size_t)i * m);
            S->a[i] = A->soft_idx[(size_t)i * m];
        }
    }
    free(tmp);
    exact_sims(D, S);
    return ECR_OK;
}

/* ---- public: fit ----------------------------------------------------------------------------- */

void ecr_anchors_opts_default(ecr_anchors_opts *o) {
    memset(o, 0, sizeof *o);
    o->k = 256;
    o->iters = 25;
    o->restarts = 3;
    o->seed = 1;
    o->tau = 0.05f;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static ecr_status check_opts(const ecr_anchors_opts *o, int64_t rows, int64_t dim, const char *src) {
    if (rows <= 0 || dim <= 0)
        return ecr_fail(ECR_E_INVALID, "%s: shape [%lld, %lld]: no rows to cluster", src,
                        (long long)rows, (long long)dim);
    if (dim > (1 << 24) || rows > ((int64_t)1 << 40))
        return ecr_fail(ECR_E_INVALID, "%s: shape [%lld, %lld] is too large", src,
                        (long long)rows, (long long)dim);
    if (o->k < 1 || o->k > ECR_ANCHORS_MAX_K)
        return ecr_fail(ECR_E_INVALID, "%s: k = %d is out of range [1, %d]", src, o->k, ECR_ANCHORS_MAX_K);
    if (o->k > rows)
        return ecr_fail(ECR_E_INVALID, "%s: k = %d is more than the %lld rows", src, o->k, (long long)rows);
    if (o->iters < 0 || o->restarts < 1)
        return ecr_fail(ECR_E_INVALID, "%s: iters = %d, restarts = %d (expected >= 0 and >= 1)", src,
                        o->iters, o->restarts);
    if (o->soft < 0 || o->soft > o->k)
        return ecr_fail(ECR_E_INVALID, "%s: soft = %d is out of range [0, k = %d]", src, o->soft, o->k);
    if (!(o->tau > 0.0f) || !isfinite(o->tau))
        return ecr_fail(ECR_E_INVALID, "%s: tau = %g (expected > 0)", src, (double)o->tau);
    for (int k = 0; o->init && k < o->k; k++) {
        double nn = 0.0;
        for (int64_t j = 0; j < dim; j++) nn += (double)o->init[k * dim + j] * o->init[k * dim + j];
        if (!(nn > 0.0) || !isfinite(nn))
            return ecr_fail(ECR_E_INVALID, "%s: starting anchor %d is zero or not finite", src, k);
    }
    return ECR_OK;
}

void ecr_anchors_free(ecr_anchors *a) {
    if (!a) return;
    free(a->anchors); free(a->codes); free(a->mean); free(a->soft_idx); free(a->soft_sim);
    free(a->source);
    free(a);
}

/* See anchors_internal.h. */
ecr_anchors *ecr_anchors_alloc(int k, int d, int64_t n, int m, const char *source) {
    ecr_anchors *A = calloc(1, sizeof *A);
    if (!A) return NULL;
    A->k = k; A->dim = d; A->rows = n; A->soft = m;
    A->anchors = malloc((size_t)k * d * sizeof(float));
    A->codes = malloc((size_t)n * sizeof(uint16_t) + 1);
    A->mean = malloc((size_t)d * sizeof(float));
    A->source = strdup(source ? source : "");
    if (m > 0) {
        A->soft_idx = malloc((size_t)n * m * sizeof(uint16_t));
        A->soft_sim = malloc((size_t)n * m * sizeof(float));
    }
    if (!A->anchors || !A->codes || !A->mean || !A->source ||
        (m > 0 && (!A->soft_idx || !A->soft_sim))) {
        ecr_anchors_free(A);
        return NULL;
    }
    return A;
}

static void km_data_free(km_data *D) {
    free((void *)D->x); free((void *)D->zero); free((void *)D->nz);
    free(D->xg); free(D->sg); free(D->gi); free(D->acc);
}

ecr_status ecr_anchors_fit(const float *emb, int64_t rows, int64_t dim, const ecr_anchors_opts *opts,
                           ecr_anchors **out) {
    *out = NULL;
    ecr_anchors_opts oo = *opts;                  /* given anchors: one run */
    if (oo.init) oo.restarts = 1;
    const ecr_anchors_opts *o = &oo;
    const char *src = o->source ? o->source : "<emb>";
    ecr_status st = check_opts(o, rows, dim, src);
    if (st) return st;
    int d = (int)dim, k = o->k;
    km_data D = {0};
    km_state S = {0}, best = {0};
    ecr_anchors *A = ecr_anchors_alloc(k, d, rows, o->soft, base_name(src));
    D.n = rows; D.d = d; D.k = k;
    D.br = BLOCK_FLOATS / k < 16 ? 16 : BLOCK_FLOATS / k > 256 ? 256 : BLOCK_FLOATS / k;
    D.nblk = (rows + D.br - 1) / D.br;
    D.nthreads = ecr_get_threads();
    D.no_prune = o->no_prune;
    D.quiet = o->quiet;
    float *x = malloc((size_t)rows * d * sizeof(float));
    uint8_t *zero = malloc((size_t)rows);
    int64_t *nz = malloc((size_t)rows * sizeof(int64_t));
    D.x = x; D.zero = zero; D.nz = nz;
    D.xg = malloc((size_t)D.nthreads * D.br * d * sizeof(float));
    D.sg = malloc((size_t)D.nthreads * D.br * k * sizeof(float));
    D.gi = malloc((size_t)D.nthreads * D.br * sizeof(int64_t));
    D.acc = malloc((size_t)D.nthreads * d * sizeof(double));
    if (!A || !x || !zero || !nz || !D.xg || !D.sg || !D.gi || !D.acc ||
        !km_state_alloc(&S, rows, d, k) || !km_state_alloc(&best, rows, d, k)) {
        st = ecr_fail(ECR_E_NOMEM, "%s: out of memory for %lld x %d rows and k = %d", src,
                      (long long)rows, d, k);
        goto done;
    }
    st = km_prepare(emb, rows, d, src, A->mean, x, zero);
    if (st) goto done;
    for (int64_t i = 0; i < rows; i++)
        if (!zero[i]) nz[D.nnz++] = i;
    ecr_hash_hex(emb, (size_t)rows * d * sizeof(float), A->source_hash);

    int best_r = -1;
    for (int r = 0; r < o->restarts; r++) {
        km_run(&D, &S, o, r);
        if (best_r < 0 || S.obj > best.obj) {
            km_state t = best; best = S; S = t;   /* keep this restart's buffers */
            best_r = r;
        }
    }
    if (o->soft > 0) {
        st = km_soft(&D, &best, A);
        if (st) goto done;
    }
    memcpy(A->anchors, best.c, (size_t)k * d * sizeof(float));
    for (int64_t i = 0; i < rows; i++) A->codes[i] = (uint16_t)best.a[i];
    A->tau = o->tau;
    A->seed = o->seed;
    A->iters = o->iters;
    A->restarts = o->restarts;
    A->iters_done = best.iters_done;
    A->objective = best.obj;
    if (!o->quiet)
        fprintf(stderr, "anchors: best restart %d/%d, objective %.6f\n", best_r + 1, o->restarts,
                best.obj);
    *out = A;
    A = NULL;
done:
    ecr_anchors_free(A);
    km_state_free(&S);
    km_state_free(&best);
    km_data_free(&D);
    return st;
}

/* ---- ablation controls ------------------------------------------------------------------- */

/* Permutes the texts' codes (and soft rows) with one Fisher-Yates shuffle. */
static void shuffle_codes(ecr_anchors *a, ecr_rng *r) {
    int m = a->soft;
    for (int64_t i = a->rows - 1; i > 0; i--) {
        int64_t j = rng_below(r, i + 1);
        uint16_t c = a->codes[i];
        a->codes[i] = a->codes[j];
        a->codes[j] = c;
        for (int q = 0; q < m; q++) {
            size_t x = (size_t)i * m + q, y = (size_t)j * m + q;
            uint16_t ti = a->soft_idx[x];
            float ts = a->soft_sim[x];
            a->soft_idx[x] = a->soft_idx[y];
            a->soft_sim[x] = a->soft_sim[y];
            a->soft_idx[y] = ti;
            a->soft_sim[y] = ts;
        }
    }
}

/* Replaces the anchors by random unit rows and drops the soft codes. */
static void random_anchors(ecr_anchors *a, ecr_rng *r) {
    for (int k = 0; k < a->k; k++) {
        float *row = a->anchors + (size_t)k * a->dim;
        do { /* a zero draw (never seen) is drawn again */
            for (int j = 0; j < a->dim; j++) row[j] = (float)ecr_rng_normal(r);
        } while (ecr_unit_row(row, a->dim, 0.0, row) == 0.0);
    }
    free(a->soft_idx);
    free(a->soft_sim);
    a->soft_idx = NULL;
    a->soft_sim = NULL;
    a->soft = 0;
}

ecr_status ecr_anchors_control(ecr_anchors *a, ecr_anchors_control_kind kind, uint64_t seed) {
    if (a->control[0])
        return ecr_fail(ECR_E_INVALID, "anchors: '%s' already are a control (%s)", a->source, a->control);
    if (kind != ECR_CONTROL_SHUFFLE_CODES && kind != ECR_CONTROL_RANDOM_ANCHORS)
        return ecr_fail(ECR_E_INVALID, "anchors: unknown control kind %d", (int)kind);
    ecr_rng r;
    ecr_rng_seed(&r, seed);
    if (kind == ECR_CONTROL_SHUFFLE_CODES) shuffle_codes(a, &r);
    else random_anchors(a, &r);
    snprintf(a->control, sizeof a->control, "%s",
             kind == ECR_CONTROL_SHUFFLE_CODES ? "shuffled-codes" : "random-anchors");
    a->seed = seed;
    a->objective = NAN;
    return ECR_OK;
}
