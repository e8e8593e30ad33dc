/* loss_kd.c — logit distillation (the kd baseline), forward beside backward (contract in
 * losses.h). */
#include "loss_common.h"
#include "term.h"


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

/* ---- the term (term.h): a logit term, on with a teacher model ------------------------------ */

typedef struct kd_term {
    ecr_kd *w;
    float *grad;              /* the teacher's logits buffer, holding the KD gradient, or
                                 NULL (ours until the teacher's next forward)             */
} kd_term;

static int kd_on(const ecr_objective_opts *o) { return o->kd_teacher != NULL; }
static float kd_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->kd_alpha; }

static ecr_status kd_check(const ecr_objective_opts *o, const ecr_model *m) {
    const ecr_config *tc = ecr_model_config(o->kd_teacher), *cfg = ecr_model_config(m);
    if (!(o->kd_alpha >= 0 && o->kd_alpha <= 1) || !(o->kd_temp > 0) || !isfinite(o->kd_temp))
        return ecr_fail(ECR_E_INVALID, "objective: KD alpha %g / temperature %g out of range",
                        (double)o->kd_alpha, (double)o->kd_temp);
    if (o->kd_teacher == m) return ecr_fail(ECR_E_INVALID, "objective: the KD teacher is the student itself");
    if (tc->vocab_size != cfg->vocab_size)
        return ecr_fail(ECR_E_INVALID, "objective: the KD teacher's vocabulary has %d tokens, the student's %d",
                        tc->vocab_size, cfg->vocab_size);
    return ECR_OK;
}

static void kd_destroy(void *state) {
    kd_term *s = state;
    if (!s) return;
    ecr_kd_free(s->w);
    free(s);
}

static ecr_status kd_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)o, (void)m;
    kd_term *s = calloc(1, sizeof *s);
    if (!s) return ecr_fail(ECR_E_NOMEM, "objective: out of memory");
    ecr_status st = ecr_kd_create(&s->w);
    if (st) kd_destroy(s), s = NULL;
    *out = s;
    return st;
}

/* The teacher's forward on the same batch, then the loss against the student's logits; the
 * gradient goes into the teacher's logits buffer right away (it is the only N x V buffer
 * the term needs, and the teacher never runs a backward). */
static ecr_status kd_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    kd_term *s = state;
    const ecr_objective_opts *o = x->o;
    s->grad = NULL;
    ecr_forward_out tf;
    ecr_status st = ecr_model_forward(o->kd_teacher, x->b, &tf);
    if (st) return st;
    int N = x->b->B * x->b->T, V = ecr_model_config(o->kd_teacher)->vocab_size;
    st = ecr_kd_forward(s->w, x->logits, tf.logits, x->b->targets, N, V, o->kd_temp, &t->kd, NULL);
    if (st) return st;
    s->grad = (float *)tf.logits; /* the teacher's own workspace */
    ecr_kd_backward(s->w, x->logits, tf.logits, o->kd_alpha, s->grad);
    return ECR_OK;
}

static const float *kd_dlogits(void *state) {
    kd_term *s = state;
    const float *g = s->grad;
    s->grad = NULL;
    return g;
}

const ecr_term_ops ecr_term_ops_kd = {
    offsetof(ecr_objective_terms, kd), 1, kd_on, kd_weight, kd_check, kd_create, kd_destroy, kd_forward, NULL,
    kd_dlogits, 0,
};
