/* loss_ecr.c — the ECR regulariser, the method of this project: KL between the anchor
 * distribution of a text's projected embedding and its code's target, forward beside
 * backward (contract in losses.h). */
#include "loss_common.h"
#include "term.h"


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

/* ---- the term (term.h): on with anchors; codes (hard or soft) of the anchors ---------------- */

typedef struct reg_term {
    ecr_reg *w;
    int M;                    /* soft codes per text, 0 for hard codes                    */
    int32_t *code;            /* [n] the text's code, -1 without tokens                  */
    uint16_t *soft_idx;       /* [n, M]                                                   */
    float *soft_sim;          /* [n, M]                                                   */
    size_t cap_c, cap_si, cap_ss;
} reg_term;

static int reg_on(const ecr_objective_opts *o) { return o->anchors != NULL; }
/* lambda, times the schedule's ramps at `progress` (the share of the run done, 0 to 1):
 * lambda min(1, p / warmup) min(1, (1 - p) / decay), a ramp being off when its share is 0. */
static float reg_weight(const ecr_objective_opts *o, double progress) {
    double w = o->ecr_weight, up = o->train ? o->train->ecr_warmup : 0, down = o->train ? o->train->ecr_decay : 0;
    if (up > 0 && progress < up) w *= progress / up;
    if (down > 0 && 1 - progress < down) w *= (1 - progress) / down;
    return (float)w;
}

static ecr_status reg_check(const ecr_objective_opts *o, const ecr_model *m) {
    const ecr_anchors *an = o->anchors;
    if (ecr_term_bad_weight(o->ecr_weight) || !(o->ecr_tau > 0) || !isfinite(o->ecr_tau))
        return ecr_fail(ECR_E_INVALID, "objective: ECR weight %g / temperature %g out of range",
                        (double)o->ecr_weight, (double)o->ecr_tau);
    ecr_status st = ecr_term_check_proj(m, an->dim, "the anchors");
    if (st) return st;
    if (o->ecr_soft && (an->soft < 1 || !an->soft_idx || !an->soft_sim))
        return ecr_fail(ECR_E_INVALID, "%s: no soft codes in the anchors (make them with "
                        "ecr anchors --soft M)", an->source && an->source[0] ? an->source : "anchors");
    return ECR_OK;
}

static void reg_destroy(void *state) {
    reg_term *s = state;
    if (!s) return;
    ecr_reg_free(s->w);
    free(s->code);
    free(s->soft_idx);
    free(s->soft_sim);
    free(s);
}

static ecr_status reg_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)m;
    const ecr_anchors *an = o->anchors;
    reg_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    s->M = o->ecr_soft ? an->soft : 0;
    ecr_status st = ecr_reg_create(an->anchors, an->k, an->dim, o->ecr_tau, &s->w);
    if (st) reg_destroy(s), s = NULL;
    *out = s;
    return st;
}

static ecr_status reg_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    reg_term *s = state;
    const ecr_anchors *an = x->o->anchors;
    size_t n = (size_t)x->n, M = (size_t)(s->M > 0 ? s->M : 1);
    ecr_status st = RESERVE(s->code, s->cap_c, n, "objective");
    if (!st) st = RESERVE(s->soft_idx, s->cap_si, n * M, "objective");
    if (!st) st = RESERVE(s->soft_sim, s->cap_ss, n * M, "objective");
    for (int i = 0; !st && i < x->n; i++) {
        if ((st = ecr_term_code(an, x, i, &s->code[i]))) return st;
        int64_t id = x->b->text_id[i];
        if (s->M > 0) {
            memcpy(s->soft_idx + (size_t)i * s->M, an->soft_idx + (size_t)id * s->M, M * sizeof *s->soft_idx);
            memcpy(s->soft_sim + (size_t)i * s->M, an->soft_sim + (size_t)id * s->M, M * sizeof *s->soft_sim);
        }
    }
    if (st) return st;
    return ecr_reg_forward(s->w, x->P, x->h, x->n, x->d, s->code, s->M ? s->soft_idx : NULL, s->soft_sim, s->M,
                           &t->ecr, &t->n_ecr);
}

static void reg_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    ecr_reg_backward(((reg_term *)state)->w, x->P, x->h, scale, dP, dh);
}

const ecr_term_ops ecr_term_ops_ecr = {
    offsetof(ecr_objective_terms, ecr), 0, reg_on, reg_weight, reg_check, reg_create, reg_destroy, reg_forward,
    reg_backward, NULL, 0,
};
