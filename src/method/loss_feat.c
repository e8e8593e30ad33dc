/* loss_feat.c — feature matching 1 - cos(P h, t) (the feat baseline), forward beside
 * backward (contract in losses.h). */
#include "loss_common.h"


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
    ecr_loss_project_rows(P, h, w->used, n, d, D, w->u, w->rz, w->clamped);
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
    ecr_loss_project_backward(P, h, w->used, w->n, w->d, w->D, w->u, w->rz, w->clamped, w->du, w->acc, dP, dh);
}
