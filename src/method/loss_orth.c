/* loss_orth.c — orthogonality of the projection, a codes-only companion of ECR: it keeps
 * P^T P near the identity, so that cosines in u = P h / |P h| are cosines in h and what the
 * anchors put into u is in h as well. Forward beside backward (contract in losses.h), and
 * its term (term.h). */
#include "loss_common.h"
#include "term.h"


struct ecr_orth {
    int D, d;
    double *M;                /* [d, d] P^T P - I of the last forward                       */
    size_t cap_m;
};

ecr_status ecr_orth_create(ecr_orth **out) {
    *out = calloc(1, sizeof **out);
    return *out ? ECR_OK : ecr_fail(ECR_E_NOMEM, "orth: out of memory");
}

void ecr_orth_free(ecr_orth *w) {
    if (!w) return;
    free(w->M);
    free(w);
}

ecr_status ecr_orth_forward(ecr_orth *w, const float *P, int D, int d, double *loss) {
    *loss = 0;
    if (D < 1 || d < 1) return ecr_fail(ECR_E_INVALID, "orth: D=%d d=%d out of range", D, d);
    ecr_status st = RESERVE(w->M, w->cap_m, (size_t)d * d, "orth");
    if (st) return st;
    w->D = D, w->d = d;
    /* M_ab = sum_k P_ka P_kb - [a == b], one row a per thread, k in order */
    ECR_OMP(parallel for schedule(static))
    for (int a = 0; a < d; a++) {
        double *m = w->M + (size_t)a * d;
        for (int b = 0; b < d; b++) m[b] = a == b ? -1.0 : 0.0;
        for (int k = 0; k < D; k++) {
            double pa = P[(size_t)k * d + a];
            const float *pk = P + (size_t)k * d;
            for (int b = 0; b < d; b++) m[b] += pa * pk[b];
        }
    }
    double sum = 0;
    for (size_t i = 0; i < (size_t)d * d; i++) sum += w->M[i] * w->M[i];
    *loss = sum / d;
    return ECR_OK;
}

void ecr_orth_backward(ecr_orth *w, const float *P, float scale, float *dP) {
    int D = w->D, d = w->d;
    double c = 4.0 * (double)scale / d;
    /* dP_ka += c sum_b P_kb M_ba (M symmetric), one row k per thread */
    ECR_OMP(parallel for schedule(static))
    for (int k = 0; k < D; k++) {
        const float *pk = P + (size_t)k * d;
        for (int a = 0; a < d; a++) {
            const double *m = w->M + (size_t)a * d;
            double s = 0;
            for (int b = 0; b < d; b++) s += pk[b] * m[b];
            dP[(size_t)k * d + a] += (float)(c * s);
        }
    }
}

/* ---- the term (term.h): on with a weight beside ECR (terms.c: it needs "ecr") --------------- */

static int orth_on(const ecr_objective_opts *o) {
    return o->train && o->train->orth_weight != 0 && o->anchors != NULL;
}
static float orth_weight(const ecr_objective_opts *o, double progress) {
    (void)progress;
    return o->train->orth_weight;
}

static ecr_status orth_check(const ecr_objective_opts *o, const ecr_model *m) {
    if (ecr_term_bad_weight(o->train->orth_weight))
        return ecr_fail(ECR_E_INVALID, "objective: orth weight %g out of range", (double)o->train->orth_weight);
    if (!ecr_model_find_tensor(m, "ecr.proj.weight"))
        return ecr_fail(ECR_E_INVALID, "objective: the orth term needs the model's projection (--anchors)");
    return ECR_OK;
}

static void orth_destroy(void *state) { ecr_orth_free(state); }

static ecr_status orth_create(const ecr_objective_opts *o, const ecr_model *m, void **out) {
    (void)o, (void)m;
    ecr_orth *w = NULL;
    ecr_status st = ecr_orth_create(&w);
    *out = w;
    return st;
}

static ecr_status orth_forward(void *state, const ecr_term_step *x, ecr_objective_terms *t) {
    return ecr_orth_forward(state, x->P, x->D, x->d, &t->orth);
}

static void orth_backward(void *state, const ecr_term_step *x, float scale, float *dP, float *dh) {
    (void)x, (void)dh;
    ecr_orth_backward(state, x->P, scale, dP);
}

const ecr_term_ops ecr_term_ops_orth = {
    offsetof(ecr_objective_terms, orth), 0, orth_on, orth_weight, orth_check, orth_create, orth_destroy,
    orth_forward, orth_backward, NULL, 0,
};
