/* loss_common.c — the projection rows u_i = normalize(P h_i) shared by feat, RKD and rel,
 * forward beside backward (contracts in loss_common.h). */
#include "loss_common.h"


/* See loss_common.h. */
void ecr_loss_project_rows(const float *P, const float *h, const unsigned char *used, int n, int d,
                           int D, double *u, double *rz, unsigned char *clamped) {
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
            if (!P) { /* no projection: h itself (D = d) */
                ui[a] = hi[a];
                continue;
            }
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
void ecr_loss_project_backward(const float *P, const float *h, const unsigned char *used, int n,
                               int d, int D, const double *u, const double *rz,
                               const unsigned char *clamped, double *du, double *acc, float *dP,
                               float *dh) {
    ECR_OMP(parallel for schedule(static))
    for (int i = 0; i < n; i++) {
        double *dz = du + (size_t)i * D;
        if (!used[i]) {
            memset(dz, 0, (size_t)D * sizeof *dz);
            continue;
        }
        normalize_backward(u + (size_t)i * D, dz, rz[i], clamped[i], D, dz);
        if (!dh) continue;
        if (!P) { /* no projection: dh_i += dz_i */
            for (int b = 0; b < d; b++) dh[(size_t)i * d + b] += (float)dz[b];
            continue;
        }
        double *ac = acc + (size_t)i * d;
        memset(ac, 0, (size_t)d * sizeof *ac);
        for (int a = 0; a < D; a++) {
            const float *pa = P + (size_t)a * d;
            for (int b = 0; b < d; b++) ac[b] += dz[a] * pa[b];
        }
        for (int b = 0; b < d; b++) dh[(size_t)i * d + b] += (float)ac[b];
    }
    if (!dP || !P) return;
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
