/* losses.c — InfoNCE, the ECR regulariser, the baselines (KD, feat, RKD) and the step
 * objective (contracts in losses.h).
 *
 * The embedding losses work on a few hundred pooled rows per step, so they are plain loops
 * in double precision, parallel over texts (each text's numbers are computed by one thread
 * in a fixed order; sums across texts, such as dP, run over texts in order), which keeps
 * them exact for finite differences and independent of the thread count. KD works on the
 * [slots, V] logits, parallel over slots, one slot per thread, summed in slot order. */
#include "losses.h"
#include "ops.h"
#include "train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* Grows *p to hold `need` elements of `size` bytes (contents not kept). */
static ecr_status reserve(void **p, size_t *cap, size_t need, size_t size, const char *what) {
    if (need <= *cap && *p) return ECR_OK;
    free(*p);
    *p = malloc((need ? need : 1) * size);
    *cap = *p ? need : 0;
    return *p ? ECR_OK : ecr_fail(ECR_E_NOMEM, "%s: out of memory for %zu elements", what, need);
}
#define RESERVE(ptr, capv, need, what) reserve((void **)&(ptr), &(capv), (need), sizeof *(ptr), what)

/* x[n] = v / max(||v||, eps) in double; *rnorm = 1 / max(||v||, eps); returns 1 when clamped. */
static int normalize_row(const double *v, int n, double *x, double *rnorm) {
    double s = 0;
    for (int j = 0; j < n; j++) s += v[j] * v[j];
    double norm = sqrt(s);
    int clamped = !(norm > ECR_NORM_EPS);
    double r = 1.0 / (clamped ? ECR_NORM_EPS : norm);
    for (int j = 0; j < n; j++) x[j] = v[j] * r;
    *rnorm = r;
    return clamped;
}

/* Backward of normalize_row: dv[n] = (dx - x <x, dx>) * rnorm (dx * rnorm when clamped). */
static void normalize_backward(const double *x, const double *dx, double rnorm, int clamped, int n,
                               double *dv) {
    double xd = 0;
    if (!clamped)
        for (int j = 0; j < n; j++) xd += x[j] * dx[j];
    for (int j = 0; j < n; j++) dv[j] = (dx[j] - x[j] * xd) * rnorm;
}

/* log(sum_k exp(l[k])) over n > 0 values. */
static double log_sum_exp(const double *l, int n) {
    double mx = l[0];
    for (int k = 1; k < n; k++)
        if (l[k] > mx || l[k] != l[k]) mx = l[k];
    if (!isfinite(mx)) return mx;
    double s = 0;
    for (int k = 0; k < n; k++) s += exp(l[k] - mx);
    return mx + log(s);
}

/* ==== InfoNCE ================================================================================== */

struct ecr_infonce {
    int n, d, n_anchor;
    double tau;
    double *x;                /* [n, d] normalised rows                                */
    double *rnorm;            /* [n] 1 / max(||h_i||, eps)                             */
    unsigned char *clamped;   /* [n]                                                   */
    double *G;                /* [n, n] dL/ds_ik (s = cosine / tau), 0 off the anchors */
    double *loss_i;           /* [n]                                                   */
    int32_t *n_pos;           /* [n] |P(i)|                                            */
    double *dx;               /* [n, d] backward scratch                               */
    size_t cap_x, cap_r, cap_c, cap_g, cap_l, cap_p, cap_dx;
};

ecr_status ecr_infonce_create(ecr_infonce **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "infonce: out of memory");
}

void ecr_infonce_free(ecr_infonce *w) {
    if (!w) return;
    free(w->x);
    free(w->rnorm);
    free(w->clamped);
    free(w->G);
    free(w->loss_i);
    free(w->n_pos);
    free(w->dx);
    free(w);
}

static ecr_status infonce_reserve(ecr_infonce *w, int n, int d) {
    size_t nd = (size_t)n * d, nn = (size_t)n * n, un = (size_t)n;
    ecr_status st = RESERVE(w->x, w->cap_x, nd, "infonce");
    if (!st) st = RESERVE(w->dx, w->cap_dx, nd, "infonce");
    if (!st) st = RESERVE(w->G, w->cap_g, nn, "infonce");
    if (!st) st = RESERVE(w->rnorm, w->cap_r, un, "infonce");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "infonce");
    if (!st) st = RESERVE(w->loss_i, w->cap_l, un, "infonce");
    if (!st) st = RESERVE(w->n_pos, w->cap_p, un, "infonce");
    return st;
}

/* Row i of the InfoNCE forward: fills G[i, :] (before the 1/|A| of the mean) and loss_i. */
static void infonce_row(ecr_infonce *w, const int32_t *group, int i) {
    int n = w->n, d = w->d;
    double *g = w->G + (size_t)i * n;
    const double *xi = w->x + (size_t)i * d;
    int m = w->n_pos[i];
    if (m == 0) {
        memset(g, 0, (size_t)n * sizeof *g);
        w->loss_i[i] = 0;
        return;
    }
    /* s_ik into g (k != i); the diagonal is excluded from the softmax */
    double mx = -INFINITY;
    for (int k = 0; k < n; k++) {
        if (k == i) continue;
        const double *xk = w->x + (size_t)k * d;
        double s = 0;
        for (int j = 0; j < d; j++) s += xi[j] * xk[j];
        g[k] = s / w->tau;
        if (g[k] > mx || g[k] != g[k]) mx = g[k];
    }
    double sum = 0, pos = 0;
    for (int k = 0; k < n; k++)
        if (k != i) sum += exp(g[k] - mx);
    double lse = mx + log(sum);
    for (int k = 0; k < n; k++) {
        if (k == i) { g[k] = 0; continue; }
        int is_pos = group[k] == group[i];
        if (is_pos) pos += g[k];
        g[k] = exp(g[k] - lse) - (is_pos ? 1.0 / m : 0.0);
    }
    w->loss_i[i] = lse - pos / m;
}

ecr_status ecr_infonce_forward(ecr_infonce *w, const float *h, const int32_t *group, int n, int d,
                               float tau, double *loss, int *n_anchor) {
    *loss = 0;
    if (n_anchor) *n_anchor = 0;
    if (n < 0 || d < 1 || !(tau > 0))
        return ecr_fail(ECR_E_INVALID, "infonce: n=%d d=%d tau=%g out of range", n, d, (double)tau);
    ecr_status st = infonce_reserve(w, n, d);
    if (st) return st;
    w->n = n, w->d = d, w->tau = tau, w->n_anchor = 0;
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *xi = w->x + (size_t)i * d;
        for (int j = 0; j < d; j++) xi[j] = h[(size_t)i * d + j];
        w->clamped[i] = (unsigned char)normalize_row(xi, d, xi, &w->rnorm[i]);
        int m = 0;
        for (int k = 0; group[i] >= 0 && k < n; k++) m += k != i && group[k] == group[i];
        w->n_pos[i] = m;
    }
    for (int i = 0; i < n; i++) w->n_anchor += w->n_pos[i] > 0;
    ECR_OMP(parallel for schedule(dynamic, 4))
    for (int i = 0; i < n; i++) infonce_row(w, group, i);
    if (w->n_anchor == 0) return ECR_OK;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += w->loss_i[i];
    *loss = sum / w->n_anchor;
    if (n_anchor) *n_anchor = w->n_anchor;
    return ECR_OK;
}

void ecr_infonce_backward(ecr_infonce *w, float scale, float *dh) {
    int n = w->n, d = w->d;
    if (w->n_anchor == 0) return;
    /* dL/dx_i = (1 / (|A| tau)) sum_k (G_ik + G_ki) x_k */
    double c = 1.0 / ((double)w->n_anchor * w->tau);
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *dxi = w->dx + (size_t)i * d;
        memset(dxi, 0, (size_t)d * sizeof *dxi);
        for (int k = 0; k < n; k++) {
            double gk = (w->G[(size_t)i * n + k] + w->G[(size_t)k * n + i]) * c;
            if (gk == 0) continue;
            const double *xk = w->x + (size_t)k * d;
            for (int j = 0; j < d; j++) dxi[j] += gk * xk[j];
        }
        normalize_backward(w->x + (size_t)i * d, dxi, w->rnorm[i], w->clamped[i], d, dxi);
        for (int j = 0; j < d; j++) dh[(size_t)i * d + j] += (float)(scale * dxi[j]);
    }
}

/* ==== ECR ======================================================================================== */

struct ecr_reg {
    int K, D;
    double tau;
    const float *A;           /* [K, D] borrowed                                          */
    double *Pi;               /* [K, K] row-softmax(A A^T / tau), or NULL (K too large)   */
    /* the last forward */
    int n, d, n_used;
    double *u;                /* [n, D] normalised projections                           */
    double *rz;               /* [n] 1 / max(||z_i||, eps)                               */
    unsigned char *clamped;   /* [n]                                                      */
    unsigned char *used;      /* [n] code >= 0                                            */
    double *g;                /* [n, K] q_i - pi_i (the targets during the forward)       */
    double *lg;               /* [n, K] logits A u_i / tau                                */
    double *kl;               /* [n]                                                      */
    double *dz;               /* [n, D] backward scratch                                  */
    double *acc;              /* [max(n, D) * d] backward scratch                         */
    size_t cap_u, cap_rz, cap_c, cap_used, cap_g, cap_lg, cap_kl, cap_dz, cap_acc;
};

/* Pi[c, :] computed from the anchors: softmax_k(<a_c, a_k> / tau). */
static void pi_row_compute(const ecr_reg *w, int c, double *out) {
    const float *ac = w->A + (size_t)c * w->D;
    for (int k = 0; k < w->K; k++) {
        const float *ak = w->A + (size_t)k * w->D;
        double s = 0;
        for (int j = 0; j < w->D; j++) s += (double)ac[j] * ak[j];
        out[k] = s / w->tau;
    }
    double lse = log_sum_exp(out, w->K);
    for (int k = 0; k < w->K; k++) out[k] = exp(out[k] - lse);
}

void ecr_reg_target_row(const ecr_reg *w, int c, double *out) {
    if (w->Pi) memcpy(out, w->Pi + (size_t)c * w->K, (size_t)w->K * sizeof *out);
    else pi_row_compute(w, c, out);
}

ecr_status ecr_reg_create(const float *anchors, int K, int D, float tau, ecr_reg **out) {
    *out = NULL;
    if (!anchors || K < 1 || D < 1 || !(tau > 0) || !isfinite(tau))
        return ecr_fail(ECR_E_INVALID, "ecr: K=%d D=%d tau=%g out of range", K, D, (double)tau);
    ecr_reg *w = calloc(1, sizeof *w);
    if (!w) return ecr_fail(ECR_E_NOMEM, "ecr: out of memory");
    w->K = K, w->D = D, w->tau = tau, w->A = anchors;
    if (K <= ECR_REG_CACHE_K) {
        w->Pi = malloc((size_t)K * K * sizeof *w->Pi);
        if (!w->Pi) {
            free(w);
            return ecr_fail(ECR_E_NOMEM, "ecr: out of memory for the %d x %d target matrix", K, K);
        }
        ECR_OMP(parallel for schedule(static))
        for (int c = 0; c < K; c++) pi_row_compute(w, c, w->Pi + (size_t)c * K);
    }
    *out = w;
    return ECR_OK;
}

void ecr_reg_free(ecr_reg *w) {
    if (!w) return;
    free(w->Pi);
    free(w->u);
    free(w->rz);
    free(w->clamped);
    free(w->used);
    free(w->g);
    free(w->lg);
    free(w->kl);
    free(w->dz);
    free(w->acc);
    free(w);
}

static ecr_status reg_reserve(ecr_reg *w, int n, int d) {
    size_t un = (size_t)n, nD = un * w->D, nK = un * w->K;
    size_t acc = (un > (size_t)w->D ? un : (size_t)w->D) * (size_t)d;
    ecr_status st = RESERVE(w->u, w->cap_u, nD, "ecr");
    if (!st) st = RESERVE(w->dz, w->cap_dz, nD, "ecr");
    if (!st) st = RESERVE(w->g, w->cap_g, nK, "ecr");
    if (!st) st = RESERVE(w->lg, w->cap_lg, nK, "ecr");
    if (!st) st = RESERVE(w->acc, w->cap_acc, acc, "ecr");
    if (!st) st = RESERVE(w->rz, w->cap_rz, un, "ecr");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "ecr");
    if (!st) st = RESERVE(w->used, w->cap_used, un, "ecr");
    if (!st) st = RESERVE(w->kl, w->cap_kl, un, "ecr");
    return st;
}

/* One text of the forward: u_i, the logits, q_i - pi_i into g and KL_i; pi_i is in g on
 * entry. */
static void reg_row(ecr_reg *w, const float *P, const float *hi, int i) {
    int K = w->K, D = w->D, d = w->d;
    double *u = w->u + (size_t)i * D, *g = w->g + (size_t)i * K, *l = w->lg + (size_t)i * K;
    for (int a = 0; a < D; a++) { /* z = P h   [D] */
        const float *pa = P + (size_t)a * d;
        double s = 0;
        for (int b = 0; b < d; b++) s += (double)pa[b] * hi[b];
        u[a] = s;
    }
    w->clamped[i] = (unsigned char)normalize_row(u, D, u, &w->rz[i]);
    for (int k = 0; k < K; k++) { /* l = A u / tau   [K] */
        const float *ak = w->A + (size_t)k * D;
        double s = 0;
        for (int a = 0; a < D; a++) s += (double)ak[a] * u[a];
        l[k] = s / w->tau;
    }
    double lse = log_sum_exp(l, K), kl = 0;
    for (int k = 0; k < K; k++) {
        double pi = g[k], logq = l[k] - lse;
        if (pi > 0) kl += pi * (log(pi) - logq);
        g[k] = exp(logq) - pi;
    }
    w->kl[i] = kl;
}

ecr_status ecr_reg_forward(ecr_reg *w, const float *P, const float *h, int n, int d,
                           const int32_t *code, const uint16_t *soft_idx, const float *soft_sim,
                           int M, double *loss, int *n_used) {
    *loss = 0;
    if (n_used) *n_used = 0;
    if (n < 0 || d < 1 || (soft_idx && (M < 1 || !soft_sim)))
        return ecr_fail(ECR_E_INVALID, "ecr: n=%d d=%d M=%d out of range", n, d, M);
    for (int i = 0; i < n; i++) {
        if (code[i] >= w->K)
            return ecr_fail(ECR_E_INVALID, "ecr: text %d: code %d is not below K = %d", i, code[i], w->K);
        for (int j = 0; soft_idx && code[i] >= 0 && j < M; j++)
            if (soft_idx[(size_t)i * M + j] >= w->K)
                return ecr_fail(ECR_E_INVALID, "ecr: text %d: soft index %d is not below K = %d", i,
                                soft_idx[(size_t)i * M + j], w->K);
    }
    ecr_status st = reg_reserve(w, n, d);
    if (st) return st;
    w->n = n, w->d = d, w->n_used = 0;
    for (int i = 0; i < n; i++) {
        w->used[i] = code[i] >= 0;
        w->n_used += w->used[i];
    }
    ECR_OMP(parallel for schedule(dynamic, 4))
    for (int i = 0; i < n; i++) {
        double *g = w->g + (size_t)i * w->K;
        w->kl[i] = 0;
        if (!w->used[i]) {
            memset(g, 0, (size_t)w->K * sizeof *g);
            continue;
        }
        if (soft_idx) { /* pi = softmax(sim / tau) on the M indices */
            const uint16_t *ix = soft_idx + (size_t)i * M;
            const float *sm = soft_sim + (size_t)i * M;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < M; j++)
                if (sm[j] / w->tau > mx) mx = sm[j] / w->tau;
            for (int j = 0; j < M; j++) sum += exp(sm[j] / w->tau - mx);
            memset(g, 0, (size_t)w->K * sizeof *g);
            for (int j = 0; j < M; j++) g[ix[j]] += exp(sm[j] / w->tau - mx) / sum;
        } else {
            ecr_reg_target_row(w, code[i], g);
        }
        reg_row(w, P, h + (size_t)i * d, i);
    }
    if (w->n_used == 0) return ECR_OK;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += w->kl[i];
    *loss = sum / w->n_used;
    if (n_used) *n_used = w->n_used;
    return ECR_OK;
}

void ecr_reg_backward(ecr_reg *w, const float *P, const float *h, float scale, float *dP, float *dh) {
    int n = w->n, d = w->d, K = w->K, D = w->D;
    if (w->n_used == 0) return;
    double c = (double)scale / w->n_used;
    /* dz_i = c * normalize'(du_i),  du_i = A^T g_i / tau; dh_i += P^T dz_i */
    ECR_OMP(parallel for schedule(dynamic, 4))
    for (int i = 0; i < n; i++) {
        double *dz = w->dz + (size_t)i * D;
        memset(dz, 0, (size_t)D * sizeof *dz);
        if (!w->used[i]) continue;
        const double *g = w->g + (size_t)i * K;
        for (int k = 0; k < K; k++) {
            double gk = g[k] * c / w->tau;
            const float *ak = w->A + (size_t)k * D;
            for (int a = 0; a < D; a++) dz[a] += gk * ak[a];
        }
        normalize_backward(w->u + (size_t)i * D, dz, w->rz[i], w->clamped[i], D, dz);
        if (!dh) continue;
        double *acc = w->acc + (size_t)i * d;
        memset(acc, 0, (size_t)d * sizeof *acc);
        for (int a = 0; a < D; a++) {
            const float *pa = P + (size_t)a * d;
            for (int b = 0; b < d; b++) acc[b] += dz[a] * pa[b];
        }
        for (int b = 0; b < d; b++) dh[(size_t)i * d + b] += (float)acc[b];
    }
    if (!dP) return;
    /* dP[a, :] += sum_i dz_i[a] h_i  (texts in order) */
    ECR_OMP(parallel for schedule(static))
    for (int a = 0; a < D; a++) {
        double *acc = w->acc + (size_t)a * d;
        memset(acc, 0, (size_t)d * sizeof *acc);
        for (int i = 0; i < n; i++) {
            double z = w->dz[(size_t)i * D + a];
            if (z == 0) continue;
            const float *hi = h + (size_t)i * d;
            for (int b = 0; b < d; b++) acc[b] += z * hi[b];
        }
        for (int b = 0; b < d; b++) dP[(size_t)a * d + b] += (float)acc[b];
    }
}

/* ==== logit distillation ========================================================================= */

struct ecr_kd {
    int N, V;
    int64_t n_used;
    double temp;
    double *lse_s, *lse_t;    /* [N] log sum exp of zs / T and zt / T (target slots)      */
    double *kl;               /* [N] KL_t (0 off the targets)                             */
    const int32_t *targets;   /* of the last forward (borrowed for the backward)          */
    size_t cap_s, cap_t, cap_k;
};

ecr_status ecr_kd_create(ecr_kd **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "kd: out of memory");
}

void ecr_kd_free(ecr_kd *w) {
    if (!w) return;
    free(w->lse_s);
    free(w->lse_t);
    free(w->kl);
    free(w);
}

/* One slot: the two log-normalisers and KL(p_T || p_S) in two passes over the row. With
 * a_v = zs_v / T, b_v = zt_v / T, e_v = exp(b_v - max b):
 *   KL = sum_v p_T(v) (b_v - a_v) - LT + LS = (sum_v e_v (b_v - a_v)) / sum_v e_v - LT + LS. */
static void kd_row(const float *zs, const float *zt, int V, double temp, double *ls, double *lt,
                   double *kl) {
    double ms = -INFINITY, mt = -INFINITY;
    for (int v = 0; v < V; v++) {
        double a = zs[v] / temp, b = zt[v] / temp;
        if (a > ms || a != a) ms = a;
        if (b > mt || b != b) mt = b;
    }
    double ss = 0, st = 0, cross = 0;
    for (int v = 0; v < V; v++) {
        double a = zs[v] / temp, b = zt[v] / temp, e = exp(b - mt);
        ss += exp(a - ms);
        st += e;
        cross += e * (b - a);
    }
    *ls = ms + log(ss);
    *lt = mt + log(st);
    *kl = cross / st - *lt + *ls;
}

ecr_status ecr_kd_forward(ecr_kd *w, const float *zs, const float *zt, const int32_t *targets,
                          int N, int V, float temp, double *loss, int64_t *n_used) {
    *loss = 0;
    if (n_used) *n_used = 0;
    if (N < 0 || V < 1 || !(temp > 0) || !isfinite(temp))
        return ecr_fail(ECR_E_INVALID, "kd: N=%d V=%d temperature %g out of range", N, V, (double)temp);
    size_t un = (size_t)N;
    ecr_status st = RESERVE(w->lse_s, w->cap_s, un, "kd");
    if (!st) st = RESERVE(w->lse_t, w->cap_t, un, "kd");
    if (!st) st = RESERVE(w->kl, w->cap_k, un, "kd");
    if (st) return st;
    w->N = N, w->V = V, w->temp = temp, w->targets = targets, w->n_used = 0;
    for (int t = 0; t < N; t++) w->n_used += targets[t] >= 0;
    ECR_OMP(parallel for schedule(static))
    for (int t = 0; t < N; t++) {
        w->kl[t] = 0;
        if (targets[t] < 0) continue;
        size_t o = (size_t)t * V;
        kd_row(zs + o, zt + o, V, w->temp, &w->lse_s[t], &w->lse_t[t], &w->kl[t]);
    }
    if (w->n_used == 0) return ECR_OK;
    double sum = 0;
    for (int t = 0; t < N; t++) sum += w->kl[t];
    *loss = w->temp * w->temp * sum / (double)w->n_used;
    if (n_used) *n_used = w->n_used;
    return ECR_OK;
}

void ecr_kd_backward(ecr_kd *w, const float *zs, const float *zt, float scale, float *dz) {
    int N = w->N, V = w->V;
    double T = w->temp, c = w->n_used ? (double)scale * T / (double)w->n_used : 0.0;
    ECR_OMP(parallel for schedule(static))
    for (int t = 0; t < N; t++) {
        size_t o = (size_t)t * V;
        if (w->targets[t] < 0 || c == 0) {
            memset(dz + o, 0, (size_t)V * sizeof *dz);
            continue;
        }
        double ls = w->lse_s[t], lt = w->lse_t[t];
        for (int v = 0; v < V; v++) { /* read zt[v] before dz[v] (they may be one array) */
            double a = zs[o + v] / T, b = zt[o + v] / T;
            dz[o + v] = (float)(c * (exp(a - ls) - exp(b - lt)));
        }
    }
}

/* ==== projection rows shared by feat and RKD ====================================================== */

/* u_i = normalize(P h_i) in double for the used rows (the others: u_i = 0, rz = 0). */
static void project_rows(const float *P, const float *h, const unsigned char *used, int n, int d, int D,
                         double *u, double *rz, unsigned char *clamped) {
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *ui = u + (size_t)i * D;
        if (!used[i]) {
            memset(ui, 0, (size_t)D * sizeof *ui);
            rz[i] = 0, clamped[i] = 0;
            continue;
        }
        const float *hi = h + (size_t)i * d;
        for (int a = 0; a < D; a++) {
            const float *pa = P + (size_t)a * d;
            double s = 0;
            for (int b = 0; b < d; b++) s += (double)pa[b] * hi[b];
            ui[a] = s;
        }
        clamped[i] = (unsigned char)normalize_row(ui, D, ui, &rz[i]);
    }
}

/* Backward of project_rows. du [n, D] holds dL/du_i (scaled; zero rows for unused texts) and
 * is overwritten with dL/dz_i; then dh_i += P^T dz_i and dP += sum_i dz_i h_i^T (texts in
 * order). acc: scratch of max(n, D) * d doubles. */
static void project_backward(const float *P, const float *h, const unsigned char *used, int n, int d,
                             int D, const double *u, const double *rz, const unsigned char *clamped,
                             double *du, double *acc, float *dP, float *dh) {
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *dz = du + (size_t)i * D;
        if (!used[i]) {
            memset(dz, 0, (size_t)D * sizeof *dz);
            continue;
        }
        normalize_backward(u + (size_t)i * D, dz, rz[i], clamped[i], D, dz);
        if (!dh) continue;
        double *ac = acc + (size_t)i * d;
        memset(ac, 0, (size_t)d * sizeof *ac);
        for (int a = 0; a < D; a++) {
            const float *pa = P + (size_t)a * d;
            for (int b = 0; b < d; b++) ac[b] += dz[a] * pa[b];
        }
        for (int b = 0; b < d; b++) dh[(size_t)i * d + b] += (float)ac[b];
    }
    if (!dP) return;
    ECR_OMP(parallel for schedule(static))
    for (int a = 0; a < D; a++) {
        double *ac = acc + (size_t)a * d;
        memset(ac, 0, (size_t)d * sizeof *ac);
        for (int i = 0; i < n; i++) {
            double z = du[(size_t)i * D + a];
            if (z == 0) continue;
            const float *hi = h + (size_t)i * d;
            for (int b = 0; b < d; b++) ac[b] += z * hi[b];
        }
        for (int b = 0; b < d; b++) dP[(size_t)a * d + b] += (float)ac[b];
    }
}

/* ==== feature matching ============================================================================ */

struct ecr_feat {
    int n, d, D, n_used;
    double *u, *rz;           /* [n, D], [n]                                            */
    double *tt;               /* [n, D] normalised teacher rows                         */
    double *du;               /* [n, D] backward scratch                                */
    double *acc;              /* [max(n, D), d]                                         */
    unsigned char *clamped, *used;
    size_t cap_u, cap_r, cap_t, cap_du, cap_acc, cap_c, cap_used;
};

ecr_status ecr_feat_create(ecr_feat **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "feat: out of memory");
}

void ecr_feat_free(ecr_feat *w) {
    if (!w) return;
    free(w->u);
    free(w->rz);
    free(w->tt);
    free(w->du);
    free(w->acc);
    free(w->clamped);
    free(w->used);
    free(w);
}

ecr_status ecr_feat_forward(ecr_feat *w, const float *P, const float *h, const float *t,
                            const unsigned char *used, int n, int d, int D, double *loss, int *n_used) {
    *loss = 0;
    if (n_used) *n_used = 0;
    if (n < 0 || d < 1 || D < 1) return ecr_fail(ECR_E_INVALID, "feat: n=%d d=%d D=%d out of range", n, d, D);
    size_t un = (size_t)n, nD = un * D, acc = (un > (size_t)D ? un : (size_t)D) * (size_t)d;
    ecr_status st = RESERVE(w->u, w->cap_u, nD, "feat");
    if (!st) st = RESERVE(w->tt, w->cap_t, nD, "feat");
    if (!st) st = RESERVE(w->du, w->cap_du, nD, "feat");
    if (!st) st = RESERVE(w->acc, w->cap_acc, acc, "feat");
    if (!st) st = RESERVE(w->rz, w->cap_r, un, "feat");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "feat");
    if (!st) st = RESERVE(w->used, w->cap_used, un, "feat");
    if (st) return st;
    w->n = n, w->d = d, w->D = D, w->n_used = 0;
    for (int i = 0; i < n; i++) {
        w->used[i] = used ? used[i] != 0 : 1;
        w->n_used += w->used[i];
    }
    project_rows(P, h, w->used, n, d, D, w->u, w->rz, w->clamped);
    double sum = 0;
    for (int i = 0; i < n; i++) {
        double *ti = w->tt + (size_t)i * D, r;
        if (!w->used[i]) {
            memset(ti, 0, (size_t)D * sizeof *ti);
            continue;
        }
        for (int a = 0; a < D; a++) ti[a] = t[(size_t)i * D + a];
        normalize_row(ti, D, ti, &r);
        const double *ui = w->u + (size_t)i * D;
        double c = 0;
        for (int a = 0; a < D; a++) c += ui[a] * ti[a];
        sum += 1.0 - c;
    }
    if (w->n_used == 0) return ECR_OK;
    *loss = sum / w->n_used;
    if (n_used) *n_used = w->n_used;
    return ECR_OK;
}

void ecr_feat_backward(ecr_feat *w, const float *P, const float *h, float scale, float *dP, float *dh) {
    if (w->n_used == 0) return;
    size_t nD = (size_t)w->n * w->D;
    double c = -(double)scale / w->n_used;
    for (size_t k = 0; k < nD; k++) w->du[k] = c * w->tt[k];
    project_backward(P, h, w->used, w->n, w->d, w->D, w->u, w->rz, w->clamped, w->du, w->acc, dP, dh);
}

/* ==== relational KD =============================================================================== */

struct ecr_rkd {
    int n, d, D, m;
    int *idx;                 /* [m] the used rows                                      */
    double *u, *rz;           /* [n, D], [n] student rows (zero when unused)            */
    double *tt;               /* [m, D] normalised teacher rows of the used texts       */
    double *Gs, *Gt;          /* [m, m] Gram matrices                                   */
    double *Ds, *Dt;          /* [m, m] distances                                       */
    double mus, mut;          /* mean distance over i != j                              */
    double *part;             /* [m] per-vertex sums (forward loss; backward scratch)   */
    double *dG, *dD;          /* [m, m] backward                                        */
    double *du;               /* [n, D]                                                 */
    double *acc;              /* [max(n, D), d]                                         */
    double dist, angle;
    unsigned char *clamped, *used;
    size_t cap_idx, cap_u, cap_r, cap_t, cap_gs, cap_gt, cap_ds, cap_dt, cap_p, cap_dg, cap_dd,
        cap_du, cap_acc, cap_c, cap_used;
};

ecr_status ecr_rkd_create(ecr_rkd **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "rkd: out of memory");
}

void ecr_rkd_free(ecr_rkd *w) {
    if (!w) return;
    free(w->idx);
    free(w->u);
    free(w->rz);
    free(w->tt);
    free(w->Gs);
    free(w->Gt);
    free(w->Ds);
    free(w->Dt);
    free(w->part);
    free(w->dG);
    free(w->dD);
    free(w->du);
    free(w->acc);
    free(w->clamped);
    free(w->used);
    free(w);
}

static ecr_status rkd_reserve(ecr_rkd *w, int n, int d, int D) {
    size_t un = (size_t)n, nD = un * D, nn = un * un, acc = (un > (size_t)D ? un : (size_t)D) * (size_t)d;
    ecr_status st = RESERVE(w->idx, w->cap_idx, un, "rkd");
    if (!st) st = RESERVE(w->u, w->cap_u, nD, "rkd");
    if (!st) st = RESERVE(w->du, w->cap_du, nD, "rkd");
    if (!st) st = RESERVE(w->tt, w->cap_t, nD, "rkd");
    if (!st) st = RESERVE(w->rz, w->cap_r, un, "rkd");
    if (!st) st = RESERVE(w->part, w->cap_p, un, "rkd");
    if (!st) st = RESERVE(w->clamped, w->cap_c, un, "rkd");
    if (!st) st = RESERVE(w->used, w->cap_used, un, "rkd");
    if (!st) st = RESERVE(w->Gs, w->cap_gs, nn, "rkd");
    if (!st) st = RESERVE(w->Gt, w->cap_gt, nn, "rkd");
    if (!st) st = RESERVE(w->Ds, w->cap_ds, nn, "rkd");
    if (!st) st = RESERVE(w->Dt, w->cap_dt, nn, "rkd");
    if (!st) st = RESERVE(w->dG, w->cap_dg, nn, "rkd");
    if (!st) st = RESERVE(w->dD, w->cap_dd, nn, "rkd");
    if (!st) st = RESERVE(w->acc, w->cap_acc, acc, "rkd");
    return st;
}

static double smooth_l1(double x) { return fabs(x) < 1.0 ? 0.5 * x * x : fabs(x) - 0.5; }
static double smooth_l1_grad(double x) { return x > 1.0 ? 1.0 : x < -1.0 ? -1.0 : x; }

/* c_ijk at vertex i from the Gram matrix G and distances Dm [m, m] (j, k != i). */
static inline double rkd_cos(const double *G, const double *Dm, int m, int i, int j, int k) {
    double dij = Dm[(size_t)i * m + j], dik = Dm[(size_t)i * m + k];
    if (dij < ECR_RKD_MIN_DIST || dik < ECR_RKD_MIN_DIST) return 0.0;
    double num = G[(size_t)j * m + k] - G[(size_t)i * m + j] - G[(size_t)i * m + k] + G[(size_t)i * m + i];
    return num / (dij * dik);
}

/* G = X X^T and D_ab = ||x_a - x_b|| of the m rows x_a = X + rows[a] * D (double). */
static void gram_dist(const double *X, const int *rows, int m, int D, double *G, double *Dm) {
    ECR_OMP(parallel for schedule(static))
    for (int a = 0; a < m; a++) {
        const double *xa = X + (size_t)(rows ? rows[a] : a) * D;
        for (int b = 0; b < m; b++) {
            const double *xb = X + (size_t)(rows ? rows[b] : b) * D;
            double g = 0, s = 0;
            for (int k = 0; k < D; k++) {
                g += xa[k] * xb[k];
                s += (xa[k] - xb[k]) * (xa[k] - xb[k]);
            }
            G[(size_t)a * m + b] = g;
            Dm[(size_t)a * m + b] = sqrt(s);
        }
    }
}

/* mean_{a != b} D_ab, summed in order. */
static double mean_offdiag(const double *Dm, int m) {
    double s = 0;
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++)
            if (a != b) s += Dm[(size_t)a * m + b];
    return s / ((double)m * (m - 1));
}

ecr_status ecr_rkd_forward(ecr_rkd *w, const float *P, const float *h, const float *t,
                           const unsigned char *used, int n, int d, int D, double *loss,
                           double *dist, double *angle, int *n_used) {
    *loss = 0;
    if (dist) *dist = 0;
    if (angle) *angle = 0;
    if (n_used) *n_used = 0;
    if (n < 0 || d < 1 || D < 1) return ecr_fail(ECR_E_INVALID, "rkd: n=%d d=%d D=%d out of range", n, d, D);
    ecr_status st = rkd_reserve(w, n, d, D);
    if (st) return st;
    w->n = n, w->d = d, w->D = D, w->m = 0, w->dist = 0, w->angle = 0;
    for (int i = 0; i < n; i++) {
        w->used[i] = used ? used[i] != 0 : 1;
        if (w->used[i]) w->idx[w->m++] = i;
    }
    int m = w->m;
    project_rows(P, h, w->used, n, d, D, w->u, w->rz, w->clamped);
    for (int a = 0; a < m; a++) {
        double *ta = w->tt + (size_t)a * D, r;
        for (int k = 0; k < D; k++) ta[k] = t[(size_t)w->idx[a] * D + k];
        normalize_row(ta, D, ta, &r);
    }
    if (n_used) *n_used = m;
    if (m < 2) return ECR_OK;
    gram_dist(w->u, w->idx, m, D, w->Gs, w->Ds);
    gram_dist(w->tt, NULL, m, D, w->Gt, w->Dt);
    w->mus = mean_offdiag(w->Ds, m);
    w->mut = mean_offdiag(w->Dt, m);
    double rs = w->mus > 0 ? 1.0 / w->mus : 0.0, rt = w->mut > 0 ? 1.0 / w->mut : 0.0, sd = 0;
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++)
            if (a != b) sd += smooth_l1(w->Ds[(size_t)a * m + b] * rs - w->Dt[(size_t)a * m + b] * rt);
    /* angles: per vertex i, over ordered pairs j != k (c_ijj = 1 on both sides adds 0) */
    ECR_OMP(parallel for schedule(dynamic, 1))
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = 0; j < m; j++) {
            if (j == i) continue;
            for (int k = 0; k < m; k++) {
                if (k == i || k == j) continue;
                s += smooth_l1(rkd_cos(w->Gs, w->Ds, m, i, j, k) - rkd_cos(w->Gt, w->Dt, m, i, j, k));
            }
        }
        w->part[i] = s;
    }
    double sa = 0;
    for (int i = 0; i < m; i++) sa += w->part[i];
    double mm = (double)m * m;
    w->dist = sd / mm;
    w->angle = sa / (mm * m);
    *loss = ECR_RKD_DIST_WEIGHT * w->dist + ECR_RKD_ANGLE_WEIGHT * w->angle;
    if (dist) *dist = w->dist;
    if (angle) *angle = w->angle;
    return ECR_OK;
}

/* dL/dD from the distance term into dD (overwrites; a != b). */
static void rkd_dist_backward(ecr_rkd *w, double cD) {
    int m = w->m;
    memset(w->dD, 0, (size_t)m * m * sizeof *w->dD);
    if (!(w->mus > 0)) return; /* all student rows coincide: psi^S = 0, no gradient */
    double rs = 1.0 / w->mus, rt = w->mut > 0 ? 1.0 / w->mut : 0.0, gd = 0, mm = (double)m * m;
    /* L_D = (1/m^2) sum sl1(D_ab / mu - psi^T_ab), mu = mean D: dL/dD_ab = g_ab / mu - (sum g D) / (mu^2 m (m-1)) */
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++) {
            if (a == b) continue;
            size_t ab = (size_t)a * m + b;
            double g = smooth_l1_grad(w->Ds[ab] * rs - w->Dt[ab] * rt) / mm;
            w->dD[ab] = g;
            gd += g * w->Ds[ab];
        }
    double corr = gd * rs * rs / ((double)m * (m - 1));
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++)
            if (a != b) w->dD[(size_t)a * m + b] = cD * (w->dD[(size_t)a * m + b] * rs - corr);
}

/* The angle term into dG (overwrites) and dD (adds). With w_ijk = gc_ijk / (D_ij D_ik),
 * gc_ijk = cA sl1'(c^S - c^T) / m^3 (symmetric in j, k):
 *   dG_jk += w_ijk;  dG_ij -= w_ijk;  dG_ik -= w_ijk;  dG_ii += w_ijk;
 *   dD_ij -= gc_ijk c^S_ijk / D_ij;  dD_ik -= gc_ijk c^S_ijk / D_ik.
 * Pass 1 (per vertex i) fills row i: the dG_ij, dG_ik, dG_ii and dD parts, which by the
 * j <-> k symmetry are twice the j-role sums. Pass 2 (per row j) adds sum_i w_ijk to dG_jk,
 * recomputing w. Every entry is summed by one thread in a fixed order. */
static void rkd_angle_backward(ecr_rkd *w, double cA) {
    int m = w->m;
    double c3 = cA / ((double)m * m * m);
    const double *Gs = w->Gs, *Gt = w->Gt, *Ds = w->Ds, *Dt = w->Dt;
    ECR_OMP(parallel for schedule(dynamic, 1))
    for (int i = 0; i < m; i++) {
        double *dGi = w->dG + (size_t)i * m, *dDi = w->dD + (size_t)i * m, diag = 0;
        for (int j = 0; j < m; j++) {
            dGi[j] = 0;
            double dij = Ds[(size_t)i * m + j];
            if (j == i || dij < ECR_RKD_MIN_DIST) continue;
            double e = 0, f = 0;
            for (int k = 0; k < m; k++) {
                if (k == i || k == j || Ds[(size_t)i * m + k] < ECR_RKD_MIN_DIST) continue;
                double cs = rkd_cos(Gs, Ds, m, i, j, k), ct = rkd_cos(Gt, Dt, m, i, j, k);
                double gc = c3 * smooth_l1_grad(cs - ct);
                e += gc / (dij * Ds[(size_t)i * m + k]);
                f -= gc * cs / dij;
            }
            dGi[j] = -2.0 * e;
            diag += e;
            dDi[j] += 2.0 * f;
        }
        w->part[i] = diag;
    }
    for (int i = 0; i < m; i++) w->dG[(size_t)i * m + i] = w->part[i];
    ECR_OMP(parallel for schedule(dynamic, 1))
    for (int j = 0; j < m; j++) {
        for (int k = 0; k < m; k++) {
            if (k == j) continue;
            double s = 0;
            for (int i = 0; i < m; i++) {
                if (i == j || i == k) continue;
                double dij = Ds[(size_t)i * m + j], dik = Ds[(size_t)i * m + k];
                if (dij < ECR_RKD_MIN_DIST || dik < ECR_RKD_MIN_DIST) continue;
                double cs = rkd_cos(Gs, Ds, m, i, j, k), ct = rkd_cos(Gt, Dt, m, i, j, k);
                s += c3 * smooth_l1_grad(cs - ct) / (dij * dik);
            }
            w->dG[(size_t)j * m + k] += s;
        }
    }
}

void ecr_rkd_backward(ecr_rkd *w, const float *P, const float *h, float scale, float *dP, float *dh) {
    int m = w->m, D = w->D;
    if (m < 2) return;
    rkd_dist_backward(w, (double)scale * ECR_RKD_DIST_WEIGHT);
    rkd_angle_backward(w, (double)scale * ECR_RKD_ANGLE_WEIGHT);
    /* du_a = sum_b (dG_ab + dG_ba) x_b + sum_{b != a} (dD_ab + dD_ba) (x_a - x_b) / D_ab */
    memset(w->du, 0, (size_t)w->n * D * sizeof *w->du);
    ECR_OMP(parallel for schedule(static))
    for (int a = 0; a < m; a++) {
        double *dua = w->du + (size_t)w->idx[a] * D;
        const double *xa = w->u + (size_t)w->idx[a] * D;
        for (int b = 0; b < m; b++) {
            const double *xb = w->u + (size_t)w->idx[b] * D;
            double g = w->dG[(size_t)a * m + b] + w->dG[(size_t)b * m + a];
            for (int k = 0; k < D; k++) dua[k] += g * xb[k];
            double dab = w->Ds[(size_t)a * m + b];
            if (b == a || dab == 0) continue;
            double q = (w->dD[(size_t)a * m + b] + w->dD[(size_t)b * m + a]) / dab;
            for (int k = 0; k < D; k++) dua[k] += q * (xa[k] - xb[k]);
        }
    }
    project_backward(P, h, w->used, w->n, w->d, D, w->u, w->rz, w->clamped, w->du, w->acc, dP, dh);
}

/* ==== the step objective ========================================================================= */

struct ecr_objective {
    ecr_objective_opts o;
    ecr_infonce *nce;         /* NULL when the InfoNCE term is off                  */
    ecr_reg *reg;             /* NULL when the ECR term is off                      */
    ecr_kd *kd;               /* NULL when the KD term is off                       */
    ecr_feat *feat;           /* NULL when the feat term is off                     */
    ecr_rkd *rkd;             /* NULL when the RKD term is off                      */
    size_t proj_off;          /* offset of ecr.proj.weight in the parameter block   */
    int d, M;
    /* per-step arrays, [cap] texts */
    int n, ready;
    int32_t *group, *code;
    unsigned char *has_tokens;
    uint16_t *soft_idx;       /* [cap, M] */
    float *soft_sim;          /* [cap, M] */
    float *feat_t, *rkd_t;    /* [cap, feat_dim], [cap, rkd_dim] teacher rows        */
    float *dpooled;           /* [cap, d] */
    const float *pooled;      /* the last forward's h (borrowed from the model) */
    float *kd_grad;           /* the teacher's logits buffer, holding the KD gradient */
    size_t cap_g, cap_c, cap_t, cap_si, cap_ss, cap_ft, cap_rt, cap_dp;
};

void ecr_objective_free(ecr_objective *ob) {
    if (!ob) return;
    ecr_infonce_free(ob->nce);
    ecr_reg_free(ob->reg);
    ecr_kd_free(ob->kd);
    ecr_feat_free(ob->feat);
    ecr_rkd_free(ob->rkd);
    free(ob->group);
    free(ob->code);
    free(ob->has_tokens);
    free(ob->soft_idx);
    free(ob->soft_sim);
    free(ob->feat_t);
    free(ob->rkd_t);
    free(ob->dpooled);
    free(ob);
}

/* A term on the projection needs ecr.proj.weight [D, d]. */
static ecr_status check_proj(const ecr_param_info *proj, const ecr_config *cfg, int D, const char *what) {
    if (proj && proj->shape[0] == D && proj->shape[1] == cfg->dim) return ECR_OK;
    return ecr_fail(ECR_E_INVALID, "objective: the model's ECR projection is [%d, %d], %s need [%d, %d] "
                    "(ecr_dim = their dim)", cfg->ecr_dim, cfg->dim, what, D, cfg->dim);
}

static int bad_weight(float w) { return !(w >= 0) || !isfinite(w); }

static ecr_status check_options(const ecr_objective_opts *o, const ecr_model *m) {
    const ecr_config *cfg = ecr_model_config(m);
    const ecr_param_info *proj = ecr_model_find_tensor(m, "ecr.proj.weight");
    if (bad_weight(o->contrastive_weight) || (o->contrastive_weight > 0 && !(o->contrastive_tau > 0)))
        return ecr_fail(ECR_E_INVALID, "objective: contrastive weight %g / temperature %g out of range",
                        (double)o->contrastive_weight, (double)o->contrastive_tau);
    const ecr_anchors *an = o->anchors;
    if (an) {
        if (bad_weight(o->ecr_weight) || !(o->ecr_tau > 0) || !isfinite(o->ecr_tau))
            return ecr_fail(ECR_E_INVALID, "objective: ECR weight %g / temperature %g out of range",
                            (double)o->ecr_weight, (double)o->ecr_tau);
        ecr_status st = check_proj(proj, cfg, an->dim, "the anchors");
        if (st) return st;
        if (o->ecr_soft && (an->soft < 1 || !an->soft_idx || !an->soft_sim))
            return ecr_fail(ECR_E_INVALID, "%s: no soft codes in the anchors (make them with "
                            "ecr anchors --soft M)", an->source && an->source[0] ? an->source : "anchors");
    }
    if (o->kd_teacher) {
        const ecr_config *tc = ecr_model_config(o->kd_teacher);
        if (!(o->kd_alpha >= 0 && o->kd_alpha <= 1) || !(o->kd_temp > 0) || !isfinite(o->kd_temp))
            return ecr_fail(ECR_E_INVALID, "objective: KD alpha %g / temperature %g out of range",
                            (double)o->kd_alpha, (double)o->kd_temp);
        if (o->kd_teacher == m)
            return ecr_fail(ECR_E_INVALID, "objective: the KD teacher is the student itself");
        if (tc->vocab_size != cfg->vocab_size)
            return ecr_fail(ECR_E_INVALID, "objective: the KD teacher's vocabulary has %d tokens, the student's %d",
                            tc->vocab_size, cfg->vocab_size);
    }
    if (o->feat_emb) {
        if (bad_weight(o->feat_weight) || o->feat_rows < 0)
            return ecr_fail(ECR_E_INVALID, "objective: feat weight %g out of range", (double)o->feat_weight);
        ecr_status st = check_proj(proj, cfg, o->feat_dim, "the feat teacher vectors");
        if (st) return st;
    }
    if (o->rkd_emb) {
        if (bad_weight(o->rkd_weight) || o->rkd_rows < 0)
            return ecr_fail(ECR_E_INVALID, "objective: RKD weight %g out of range", (double)o->rkd_weight);
        ecr_status st = check_proj(proj, cfg, o->rkd_dim, "the RKD teacher vectors");
        if (st) return st;
    }
    return ECR_OK;
}

ecr_status ecr_objective_create(const ecr_objective_opts *o, const ecr_model *m,
                                ecr_objective **out) {
    *out = NULL;
    ecr_status st = check_options(o, m);
    if (st) return st;
    const ecr_anchors *an = o->anchors;
    const ecr_param_info *proj = ecr_model_find_tensor(m, "ecr.proj.weight");
    ecr_objective *ob = calloc(1, sizeof *ob);
    if (!ob) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ob->o = *o;
    ob->d = ecr_model_config(m)->dim;
    ob->M = an && o->ecr_soft ? an->soft : 0;
    if (proj) ob->proj_off = proj->offset;
    if (o->contrastive_weight > 0) st = ecr_infonce_create(&ob->nce);
    if (!st && an) st = ecr_reg_create(an->anchors, an->k, an->dim, o->ecr_tau, &ob->reg);
    if (!st && o->kd_teacher) st = ecr_kd_create(&ob->kd);
    if (!st && o->feat_emb) st = ecr_feat_create(&ob->feat);
    if (!st && o->rkd_emb) st = ecr_rkd_create(&ob->rkd);
    if (st) {
        ecr_objective_free(ob);
        return st;
    }
    *out = ob;
    return ECR_OK;
}

static ecr_status objective_reserve(ecr_objective *ob, int n) {
    size_t un = (size_t)n, M = (size_t)(ob->M > 0 ? ob->M : 1);
    size_t fd = (size_t)(ob->feat ? ob->o.feat_dim : 1), rd = (size_t)(ob->rkd ? ob->o.rkd_dim : 1);
    ecr_status st = RESERVE(ob->group, ob->cap_g, un, "objective");
    if (!st) st = RESERVE(ob->code, ob->cap_c, un, "objective");
    if (!st) st = RESERVE(ob->has_tokens, ob->cap_t, un, "objective");
    if (!st) st = RESERVE(ob->soft_idx, ob->cap_si, un * M, "objective");
    if (!st) st = RESERVE(ob->soft_sim, ob->cap_ss, un * M, "objective");
    if (!st) st = RESERVE(ob->feat_t, ob->cap_ft, un * fd, "objective");
    if (!st) st = RESERVE(ob->rkd_t, ob->cap_rt, un * rd, "objective");
    if (!st) st = RESERVE(ob->dpooled, ob->cap_dp, un * (size_t)ob->d, "objective");
    return st;
}

/* Teacher row `id` of a [rows, dim] matrix into dst, or a refusal naming the batch text. */
static ecr_status gather_row(const float *emb, int64_t rows, int dim, int64_t id, int i, const char *what,
                             float *dst) {
    if (id < 0 || id >= rows)
        return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the %s teacher vectors "
                        "(%lld rows)", i, (long long)id, what, (long long)rows);
    memcpy(dst, emb + (size_t)id * dim, (size_t)dim * sizeof *dst);
    return ECR_OK;
}

/* Per batch text: has_tokens (a slot with pos >= 1, i.e. a non-zero pooled row), group,
 * code and soft code rows, teacher rows, from the data, the anchors and the teacher
 * matrices by text_id. */
static ecr_status gather_texts(ecr_objective *ob, const ecr_batch *b, const ecr_data *d) {
    int n = b->n_texts;
    memset(ob->has_tokens, 0, (size_t)n);
    for (size_t s = 0; s < (size_t)b->B * b->T; s++)
        if (b->text[s] >= 0 && b->pos[s] >= 1) ob->has_tokens[b->text[s]] = 1;
    const ecr_anchors *an = ob->o.anchors;
    const ecr_objective_opts *o = &ob->o;
    for (int i = 0; i < n; i++) {
        int64_t id = b->text_id[i];
        if (ob->nce && (id < 0 || (size_t)id >= d->n_texts))
            return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the data (%zu texts)",
                            i, (long long)id, d->n_texts);
        if (an && (id < 0 || id >= an->rows))
            return ecr_fail(ECR_E_INVALID, "objective: batch text %d is row %lld, outside the anchors' codes "
                            "(%lld rows)", i, (long long)id, (long long)an->rows);
        ob->group[i] = ob->nce && ob->has_tokens[i] ? d->group[id] : -1;
        ob->code[i] = an && ob->has_tokens[i] ? an->codes[id] : -1;
        if (ob->M > 0) {
            memcpy(ob->soft_idx + (size_t)i * ob->M, an->soft_idx + (size_t)id * ob->M,
                   (size_t)ob->M * sizeof *ob->soft_idx);
            memcpy(ob->soft_sim + (size_t)i * ob->M, an->soft_sim + (size_t)id * ob->M,
                   (size_t)ob->M * sizeof *ob->soft_sim);
        }
        ecr_status st = ECR_OK;
        if (ob->feat)
            st = gather_row(o->feat_emb, o->feat_rows, o->feat_dim, id, i, "feat",
                            ob->feat_t + (size_t)i * o->feat_dim);
        if (!st && ob->rkd)
            st = gather_row(o->rkd_emb, o->rkd_rows, o->rkd_dim, id, i, "RKD", ob->rkd_t + (size_t)i * o->rkd_dim);
        if (st) return st;
    }
    return ECR_OK;
}

/* The KD term: the teacher's forward on the same batch, then the loss against the student's
 * logits; the gradient goes into the teacher's logits buffer right away (it is the only N x V
 * buffer the term needs, and the teacher never runs a backward). */
static ecr_status kd_forward(ecr_objective *ob, const ecr_batch *b, const float *student_logits,
                             ecr_objective_terms *t) {
    ecr_forward_out tf;
    ecr_status st = ecr_model_forward(ob->o.kd_teacher, b, &tf);
    if (st) return st;
    int N = b->B * b->T, V = ecr_model_config(ob->o.kd_teacher)->vocab_size;
    st = ecr_kd_forward(ob->kd, student_logits, tf.logits, b->targets, N, V, ob->o.kd_temp, &t->kd, NULL);
    if (st) return st;
    ob->kd_grad = (float *)tf.logits; /* the teacher's own workspace, ours until its next forward */
    ecr_kd_backward(ob->kd, student_logits, tf.logits, ob->o.kd_alpha, ob->kd_grad);
    return ECR_OK;
}

ecr_status ecr_objective_forward(ecr_objective *ob, ecr_model *m, const ecr_batch *b,
                                 const ecr_data *d, ecr_objective_terms *t) {
    memset(t, 0, sizeof *t);
    ob->ready = 0;
    ob->kd_grad = NULL;
    ecr_forward_out fo;
    ecr_status st = ecr_model_forward(m, b, &fo);
    if (st) return st;
    t->n_targets = fo.n_targets;
    t->lm = fo.n_targets ? fo.loss_sum / (double)fo.n_targets : 0.0;
    t->total = t->lm;
    int n = b->n_texts;
    ob->n = n;
    ob->pooled = fo.pooled;
    if (ob->kd) {
        if ((st = kd_forward(ob, b, fo.logits, t))) return st;
        t->total = (1.0 - ob->o.kd_alpha) * t->lm + ob->o.kd_alpha * t->kd;
    }
    if (!ob->nce && !ob->reg && !ob->feat && !ob->rkd) {
        ob->ready = 1;
        return ECR_OK;
    }
    if ((st = objective_reserve(ob, n)) || (st = gather_texts(ob, b, d))) return st;
    const float *P = ecr_tr_model_params(m) + ob->proj_off;
    if (ob->nce) {
        st = ecr_infonce_forward(ob->nce, fo.pooled, ob->group, n, ob->d, ob->o.contrastive_tau,
                                 &t->contrastive, &t->n_contrastive);
        if (st) return st;
        t->total += ob->o.contrastive_weight * t->contrastive;
    }
    if (ob->reg) {
        st = ecr_reg_forward(ob->reg, P, fo.pooled, n, ob->d, ob->code, ob->M ? ob->soft_idx : NULL,
                             ob->soft_sim, ob->M, &t->ecr, &t->n_ecr);
        if (st) return st;
        t->total += ob->o.ecr_weight * t->ecr;
    }
    if (ob->feat) {
        st = ecr_feat_forward(ob->feat, P, fo.pooled, ob->feat_t, ob->has_tokens, n, ob->d, ob->o.feat_dim,
                              &t->feat, &t->n_feat);
        if (st) return st;
        t->total += ob->o.feat_weight * t->feat;
    }
    if (ob->rkd) {
        st = ecr_rkd_forward(ob->rkd, P, fo.pooled, ob->rkd_t, ob->has_tokens, n, ob->d, ob->o.rkd_dim,
                             &t->rkd, &t->rkd_dist, &t->rkd_angle, &t->n_rkd);
        if (st) return st;
        t->total += ob->o.rkd_weight * t->rkd;
    }
    ob->ready = 1;
    return ECR_OK;
}

ecr_status ecr_objective_backward(ecr_objective *ob, ecr_model *m, const ecr_batch *b) {
    if (!ob->ready || b->n_texts != ob->n)
        return ecr_fail(ECR_E_INVALID, "objective: backward needs the forward of the same batch");
    ob->ready = 0;
    float lm_scale = ob->kd ? 1.0f - ob->o.kd_alpha : 1.0f;
    const float *dlogits = ob->kd_grad;
    ob->kd_grad = NULL;
    if (!ob->nce && !ob->reg && !ob->feat && !ob->rkd) return ecr_model_backward(m, b, lm_scale, NULL, dlogits);
    float *dp = ob->dpooled;
    memset(dp, 0, (size_t)ob->n * ob->d * sizeof *dp);
    const float *P = ecr_tr_model_params(m) + ob->proj_off;
    float *dP = ecr_model_grads(m) + ob->proj_off;
    if (ob->nce) ecr_infonce_backward(ob->nce, ob->o.contrastive_weight, dp);
    if (ob->reg) ecr_reg_backward(ob->reg, P, ob->pooled, ob->o.ecr_weight, dP, dp);
    if (ob->feat) ecr_feat_backward(ob->feat, P, ob->pooled, ob->o.feat_weight, dP, dp);
    if (ob->rkd) ecr_rkd_backward(ob->rkd, P, ob->pooled, ob->o.rkd_weight, dP, dp);
    return ecr_model_backward(m, b, lm_scale, dp, dlogits);
}
