/* linalg.c — eigenvalues of a symmetric matrix in double (contract: ecr.h, "Metrics",
 * ecr_sym_eigenvalues); the effective rank and the other covariance metrics use it. */
#include "ecr.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Householder tridiagonalisation + implicit QL. */

/* Reduces the symmetric matrix a [n, n] (lower triangle used) to tridiagonal form:
 * diagonal dg[n], subdiagonal e[n] with e[i] coupling i-1 and i (e[0] = 0). */
static void tridiagonalise(double *a, int n, double *dg, double *e) {
#define A(i, j) a[(size_t)(i) * n + (j)]
    for (int i = n - 1; i >= 1; i--) {
        int l = i - 1;
        double h = 0.0, scale = 0.0;
        if (l > 0) {
            for (int k = 0; k <= l; k++) scale += fabs(A(i, k));
            if (scale == 0.0) {
                e[i] = A(i, l);
            } else {
                for (int k = 0; k <= l; k++) {
                    A(i, k) /= scale;
                    h += A(i, k) * A(i, k);
                }
                double f = A(i, l);
                double g = f >= 0.0 ? -sqrt(h) : sqrt(h);
                e[i] = scale * g;
                h -= f * g;
                A(i, l) = f - g;
                f = 0.0;
                for (int j = 0; j <= l; j++) {
                    g = 0.0;
                    for (int k = 0; k <= j; k++) g += A(j, k) * A(i, k);
                    for (int k = j + 1; k <= l; k++) g += A(k, j) * A(i, k);
                    e[j] = g / h;
                    f += e[j] * A(i, j);
                }
                double hh = f / (h + h);
                for (int j = 0; j <= l; j++) {
                    f = A(i, j);
                    e[j] = g = e[j] - hh * f;
                    for (int k = 0; k <= j; k++) A(j, k) -= f * e[k] + g * A(i, k);
                }
            }
        } else {
            e[i] = A(i, l);
        }
        dg[i] = h;
    }
    e[0] = 0.0;
    for (int i = 0; i < n; i++) dg[i] = A(i, i);
#undef A
}

/* Eigenvalues of the symmetric tridiagonal (dg, e) into dg by implicit QL with shifts. */
static ecr_status tridiagonal_ql(double *dg, double *e, int n) {
    for (int i = 1; i < n; i++) e[i - 1] = e[i];
    if (n > 0) e[n - 1] = 0.0;
    for (int l = 0; l < n; l++) {
        int iter = 0, m;
        do {
            for (m = l; m < n - 1; m++) {
                double dd = fabs(dg[m]) + fabs(dg[m + 1]);
                if (fabs(e[m]) <= DBL_EPSILON * dd) break;
            }
            if (m != l) {
                if (iter++ == 60)
                    return ecr_fail(ECR_E_RUNTIME, "metrics: eigenvalues: no convergence after 60 QL iterations");
                double g = (dg[l + 1] - dg[l]) / (2.0 * e[l]);
                double r = hypot(g, 1.0);
                g = dg[m] - dg[l] + e[l] / (g + (g >= 0.0 ? fabs(r) : -fabs(r)));
                double s = 1.0, c = 1.0, p = 0.0;
                int i;
                for (i = m - 1; i >= l; i--) {
                    double f = s * e[i], b = c * e[i];
                    e[i + 1] = (r = hypot(f, g));
                    if (r == 0.0) {
                        dg[i + 1] -= p;
                        e[m] = 0.0;
                        break;
                    }
                    s = f / r;
                    c = g / r;
                    g = dg[i + 1] - p;
                    r = (dg[i] - g) * s + 2.0 * c * b;
                    dg[i + 1] = g + (p = s * r);
                    g = c * r - b;
                }
                if (r == 0.0 && i >= l) continue;
                dg[l] -= p;
                e[l] = g;
                e[m] = 0.0;
            }
        } while (m != l);
    }
    return ECR_OK;
}

static int cmp_double(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

ecr_status ecr_sym_eigenvalues(double *a, int n, double *w) {
    if (n < 0 || (n > 0 && (!a || !w))) return ecr_fail(ECR_E_INVALID, "metrics: eigenvalues: bad arguments");
    if (n == 0) return ECR_OK;
    double *e = malloc((size_t)n * sizeof *e);
    if (!e) return ecr_fail(ECR_E_NOMEM, "metrics: eigenvalues: out of memory");
    tridiagonalise(a, n, w, e);
    ecr_status st = tridiagonal_ql(w, e, n);
    free(e);
    if (!st) qsort(w, (size_t)n, sizeof *w, cmp_double);
    return st;
}
