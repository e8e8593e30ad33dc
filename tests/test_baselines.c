/* test_baselines.c — the baseline regularisers (src/method/loss_kd.c, loss_feat.c, loss_rkd.c): logit distillation (KD),
 * feature matching through the projection (feat) and relational KD (RKD), alone and in the
 * step objective.
 *
 *  - PyTorch reference (tests/fixtures/baselines_ref.safetensors, written by
 *    tools/torch_ref_baselines.py in float64): KD loss and dL/dzs for T = 2 and T = 1 with
 *    slots without a target; feat loss, dL/dP, dL/dh with texts left out and an all-zero
 *    teacher row; RKD loss, its distance and angle parts, dL/dP, dL/dh for a random and a
 *    clustered teacher (entries in both parts of smooth-L1), texts left out. Tolerances:
 *    losses 1e-6 relative; gradients 1e-5 relative to the largest magnitude of each tensor
 *    (both sides compute in double from the same float32 inputs);
 *  - finite differences on each loss alone (every element of zs, P and h; parabola through
 *    the float neighbours actually used, step 1e-4, losses in double):
 *    |fd - an| <= 1e-5 * max(1, max |an|) per tensor;
 *  - edge cases: KD without targets, KD of equal logits (0, no gradient), the in-place KD
 *    backward (gradient over the teacher's logits) equal to a separate buffer, feat and RKD
 *    with every text left out or one text, RKD of a student that equals its teacher (0, no
 *    gradient), RKD invariance to the scale of P and of the teacher rows, coincident rows
 *    (finite), thread-count independence of all three;
 *  - the whole objective through a tiny model with every term on (LM, InfoNCE, ECR, KD with a
 *    tiny teacher model, feat, RKD): total = (1 - alpha) L_LM + w InfoNCE + lambda ECR +
 *    alpha KD + w_f feat + w_r RKD; derivatives wrt sampled elements of every tensor
 *    (ecr.proj included) by Richardson extrapolation of central differences at h = 1e-2 and
 *    5e-3 (the sum of six terms is curved enough that the plain h = 1e-2 difference is off
 *    by up to ~1 tolerance, converging as h^2), tolerance |fd - an| <= 3e-4 + 2e-2 |an| (fp32
 *    model, as in test_losses.c); each baseline term changes the gradient; the teacher gets no
 *    gradient; refusals of a teacher of another vocabulary and of teacher vectors of another
 *    dim. */
#include "test.h"
#include "testlib.h"
#include "losses.h"
#include "rng.h"

#include <string.h>

#define FIXTURE "tests/fixtures/baselines_ref.safetensors"

static int all_finite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* ---- PyTorch reference ----------------------------------------------------------------------- */

static void reference_kd(const ecr_st_file *f, int c) {
    char key[32];
    snprintf(key, sizeof key, "kd_%d_temp", c);
    const char *tv = ecr_st_meta(f, key);
    CHECK_MSG(tv != NULL, "fixture metadata '%s' missing", key);
    const ecr_tensor_view *zs = tl_fx(f, "kd", c, "zs", ECR_F32), *zt = tl_fx(f, "kd", c, "zt", ECR_F32);
    const ecr_tensor_view *tg = tl_fx(f, "kd", c, "targets", ECR_I32), *L = tl_fx(f, "kd", c, "loss", ECR_F32);
    const ecr_tensor_view *dz = tl_fx(f, "kd", c, "dzs", ECR_F32);
    if (!tv || !zs || !zt || !tg || !L || !dz) return;
    float temp = (float)atof(tv);
    int N = (int)zs->shape[0], V = (int)zs->shape[1];
    ecr_kd *w = NULL;
    CHECK_OK(ecr_kd_create(&w));
    if (!w) return;
    double loss = 0;
    int64_t used = 0;
    CHECK_OK(ecr_kd_forward(w, zs->data, zt->data, tg->data, N, V, temp, &loss, &used));
    float *mine = malloc((size_t)N * V * sizeof *mine);
    ecr_kd_backward(w, zs->data, zt->data, 1.0f, mine);
    double e = tl_rel_err(mine, dz->data, (size_t)N * V);
    fprintf(stderr, "    KD case %d (T %.0f, %lld of %d slots, V %d): loss %.6f (torch %.6f), dzs rel err %.1e\n", c,
            (double)temp, (long long)used, N, V, loss, tl_fx1(L), e);
    CHECK_CLOSE(loss, tl_fx1(L), 1e-6 * fabs(tl_fx1(L)));
    CHECK(e < 1e-5);
    int n_t = 0;
    for (int t = 0; t < N; t++) n_t += ((const int32_t *)tg->data)[t] >= 0;
    CHECK(used == n_t && n_t < N);
    free(mine);
    ecr_kd_free(w);
}

static void reference_proj(const ecr_st_file *f, const char *kind, int c) {
    const ecr_tensor_view *P = tl_fx(f, kind, c, "P", ECR_F32), *h = tl_fx(f, kind, c, "h", ECR_F32);
    const ecr_tensor_view *t = tl_fx(f, kind, c, "t", ECR_F32), *u = tl_fx(f, kind, c, "used", ECR_I32);
    const ecr_tensor_view *L = tl_fx(f, kind, c, "loss", ECR_F32);
    const ecr_tensor_view *dPr = tl_fx(f, kind, c, "dP", ECR_F32), *dhr = tl_fx(f, kind, c, "dh", ECR_F32);
    int is_rkd = !strcmp(kind, "rkd");
    const ecr_tensor_view *Ld = is_rkd ? tl_fx(f, kind, c, "dist", ECR_F32) : NULL;
    const ecr_tensor_view *La = is_rkd ? tl_fx(f, kind, c, "angle", ECR_F32) : NULL;
    if (!P || !h || !t || !u || !L || !dPr || !dhr || (is_rkd && (!Ld || !La))) return;
    int n = (int)h->shape[0], d = (int)h->shape[1], D = (int)P->shape[0];
    unsigned char *used = tl_fx_flags(u);
    float *dP = calloc((size_t)D * d, sizeof *dP), *dh = calloc((size_t)n * d, sizeof *dh);
    double loss = 0, dist = 0, angle = 0;
    int nu = 0;
    if (is_rkd) {
        ecr_rkd *w = NULL;
        CHECK_OK(ecr_rkd_create(&w));
        if (w) {
            CHECK_OK(ecr_rkd_forward(w, P->data, h->data, t->data, used, n, d, D, &loss, &dist, &angle, &nu));
            ecr_rkd_backward(w, P->data, h->data, 1.0f, dP, dh);
        }
        ecr_rkd_free(w);
        CHECK_CLOSE(dist, tl_fx1(Ld), 1e-6 * fabs(tl_fx1(Ld)));
        CHECK_CLOSE(angle, tl_fx1(La), 1e-6 * fabs(tl_fx1(La)));
    } else {
        ecr_feat *w = NULL;
        CHECK_OK(ecr_feat_create(&w));
        if (w) {
            CHECK_OK(ecr_feat_forward(w, P->data, h->data, t->data, used, n, d, D, &loss, &nu));
            ecr_feat_backward(w, P->data, h->data, 1.0f, dP, dh);
        }
        ecr_feat_free(w);
    }
    double eP = tl_rel_err(dP, dPr->data, (size_t)D * d), eh = tl_rel_err(dh, dhr->data, (size_t)n * d);
    fprintf(stderr, "    %s case %d (%d of %d texts, d %d, D %d): loss %.6f (torch %.6f)%s, dP rel err %.1e, "
                    "dh rel err %.1e\n", is_rkd ? "RKD" : "feat", c, nu, n, d, D, loss, tl_fx1(L),
            is_rkd ? " incl. distance and angle parts" : "", eP, eh);
    CHECK_CLOSE(loss, tl_fx1(L), 1e-6 * fabs(tl_fx1(L)));
    CHECK(eP < 1e-5 && eh < 1e-5);
    int want = 0, left_out_zero = 1;
    for (int i = 0; i < n; i++) {
        want += used[i];
        if (!used[i]) left_out_zero &= tl_max_abs(dh + (size_t)i * d, (size_t)d) == 0.0;
    }
    CHECK(nu == want && nu < n && left_out_zero);
    free(used);
    free(dP);
    free(dh);
}

static void test_reference(void) {
    ecr_st_file *f = NULL;
    CHECK_OK(ecr_st_open(FIXTURE, &f));
    if (!f) return;
    for (int c = 0; c < 2; c++) reference_kd(f, c);
    for (int c = 0; c < 2; c++) reference_proj(f, "feat", c);
    for (int c = 0; c < 2; c++) reference_proj(f, "rkd", c);
    ecr_st_close(f);
}

/* ---- finite differences on the losses alone ------------------------------------------------ */

enum { KN = 6, KV = 9, FN = 9, Fd = 5, FD_ = 6 };
static float g_zs[KN * KV], g_zt[KN * KV];
static int32_t g_tg[KN] = {3, -1, 0, 8, 2, 5};
static float g_temp;
static float g_P[FD_ * Fd], g_h[FN * Fd], g_t[FN * FD_];
static unsigned char g_used[FN] = {1, 1, 0, 1, 1, 1, 1, 0, 1};

static double loss_kd(void) {
    ecr_kd *w = NULL;
    double L = NAN;
    if (ecr_kd_create(&w) == ECR_OK) ecr_kd_forward(w, g_zs, g_zt, g_tg, KN, KV, g_temp, &L, NULL);
    ecr_kd_free(w);
    return L;
}

static double loss_feat(void) {
    ecr_feat *w = NULL;
    double L = NAN;
    if (ecr_feat_create(&w) == ECR_OK) ecr_feat_forward(w, g_P, g_h, g_t, g_used, FN, Fd, FD_, &L, NULL);
    ecr_feat_free(w);
    return L;
}

static double loss_rkd(void) {
    ecr_rkd *w = NULL;
    double L = NAN;
    if (ecr_rkd_create(&w) == ECR_OK)
        ecr_rkd_forward(w, g_P, g_h, g_t, g_used, FN, Fd, FD_, &L, NULL, NULL, NULL);
    ecr_rkd_free(w);
    return L;
}

static void fd_setup(uint64_t seed) {
    tl_fill_normal(g_zs, KN * KV, 2.0, seed);
    tl_fill_normal(g_zt, KN * KV, 2.0, seed + 1);
    tl_fill_normal(g_P, FD_ * Fd, 0.5, seed + 2);
    tl_fill_normal(g_h, FN * Fd, 1.0, seed + 3);
    tl_fill_normal(g_t, FN * FD_, 1.0, seed + 4);
    for (int i = 3; i < FN; i += 3) /* a loose cluster structure in the teacher */
        for (int a = 0; a < FD_; a++) g_t[i * FD_ + a] = g_t[a] + 0.2f * g_t[i * FD_ + a];
}

static void test_fd_losses(void) {
    fd_setup(4321);
    float temps[2] = {2.0f, 0.7f};
    for (int ti = 0; ti < 2; ti++) {
        g_temp = temps[ti];
        ecr_kd *w = NULL;
        CHECK_OK(ecr_kd_create(&w));
        if (!w) return;
        double L = 0;
        float dz[KN * KV];
        CHECK_OK(ecr_kd_forward(w, g_zs, g_zt, g_tg, KN, KV, g_temp, &L, NULL));
        ecr_kd_backward(w, g_zs, g_zt, 1.0f, dz);
        ecr_kd_free(w);
        double e = tl_fd_check("kd dzs", loss_kd, g_zs, dz, KN * KV);
        fprintf(stderr, "    FD KD T %.1f: loss %.5f, worst |fd - an| / max(1, max|an|) %.1e\n", (double)g_temp, L, e);
    }
    /* feat */
    ecr_feat *fw = NULL;
    CHECK_OK(ecr_feat_create(&fw));
    float dP[FD_ * Fd] = {0}, dh[FN * Fd] = {0};
    double L = 0;
    if (fw) {
        CHECK_OK(ecr_feat_forward(fw, g_P, g_h, g_t, g_used, FN, Fd, FD_, &L, NULL));
        ecr_feat_backward(fw, g_P, g_h, 1.0f, dP, dh);
    }
    ecr_feat_free(fw);
    double e1 = tl_fd_check("feat dP", loss_feat, g_P, dP, FD_ * Fd), e2 = tl_fd_check("feat dh", loss_feat, g_h, dh, FN * Fd);
    fprintf(stderr, "    FD feat: loss %.5f, worst dP %.1e, dh %.1e\n", L, e1, e2);
    /* RKD */
    ecr_rkd *rw = NULL;
    CHECK_OK(ecr_rkd_create(&rw));
    memset(dP, 0, sizeof dP);
    memset(dh, 0, sizeof dh);
    double dist = 0, angle = 0;
    if (rw) {
        CHECK_OK(ecr_rkd_forward(rw, g_P, g_h, g_t, g_used, FN, Fd, FD_, &L, &dist, &angle, NULL));
        ecr_rkd_backward(rw, g_P, g_h, 1.0f, dP, dh);
    }
    ecr_rkd_free(rw);
    CHECK(dist > 0 && angle > 0);
    e1 = tl_fd_check("rkd dP", loss_rkd, g_P, dP, FD_ * Fd);
    e2 = tl_fd_check("rkd dh", loss_rkd, g_h, dh, FN * Fd);
    fprintf(stderr, "    FD RKD: loss %.5f (distance %.5f, angle %.5f), worst dP %.1e, dh %.1e\n", L, dist, angle, e1, e2);
}

/* ---- edge cases ------------------------------------------------------------------------------- */

static void test_kd_edges(void) {
    fd_setup(77);
    ecr_kd *w = NULL;
    CHECK_OK(ecr_kd_create(&w));
    if (!w) return;
    double L = 1;
    int64_t nu = -1;
    float dz[KN * KV], zt[KN * KV];
    /* no slot with a target: 0 and a zero gradient */
    int32_t none[KN] = {-1, -1, -1, -1, -1, -1};
    CHECK_OK(ecr_kd_forward(w, g_zs, g_zt, none, KN, KV, 2.0f, &L, &nu));
    ecr_kd_backward(w, g_zs, g_zt, 1.0f, dz);
    CHECK(L == 0 && nu == 0 && tl_max_abs(dz, KN * KV) == 0.0);
    /* equal logits: KL 0, gradient 0 (to rounding) */
    CHECK_OK(ecr_kd_forward(w, g_zs, g_zs, g_tg, KN, KV, 2.0f, &L, &nu));
    ecr_kd_backward(w, g_zs, g_zs, 1.0f, dz);
    CHECK(fabs(L) < 1e-12 && nu == KN - 1 && tl_max_abs(dz, KN * KV) < 1e-7);
    /* the in-place backward over the teacher's logits equals a separate buffer, bit for bit */
    memcpy(zt, g_zt, sizeof zt);
    CHECK_OK(ecr_kd_forward(w, g_zs, zt, g_tg, KN, KV, 2.0f, &L, &nu));
    ecr_kd_backward(w, g_zs, zt, 0.5f, dz);
    ecr_kd_backward(w, g_zs, zt, 0.5f, zt);
    CHECK(!memcmp(dz, zt, sizeof dz));
    /* the slot without a target gets 0 */
    CHECK(tl_max_abs(dz + KV, KV) == 0.0);
    /* threads */
    int th = ecr_get_threads();
    double L1 = 0, L2 = 0;
    float d1[KN * KV], d2[KN * KV];
    ecr_set_threads(1);
    CHECK_OK(ecr_kd_forward(w, g_zs, g_zt, g_tg, KN, KV, 2.0f, &L1, NULL));
    ecr_kd_backward(w, g_zs, g_zt, 1.0f, d1);
    ecr_set_threads(2);
    CHECK_OK(ecr_kd_forward(w, g_zs, g_zt, g_tg, KN, KV, 2.0f, &L2, NULL));
    ecr_kd_backward(w, g_zs, g_zt, 1.0f, d2);
    CHECK(L1 == L2 && !memcmp(d1, d2, sizeof d1));
    ecr_set_threads(th);
    CHECK_STATUS(ecr_kd_forward(w, g_zs, g_zt, g_tg, KN, KV, 0.0f, &L, &nu), ECR_E_INVALID);
    ecr_kd_free(w);
    ecr_kd_free(NULL);
}

/* RKD loss and gradients of (P, h, t, used). */
static double rkd_run(const float *P, const float *h, const float *t, const unsigned char *used, int n,
                      int d, int D, float *dP, float *dh, int *m) {
    ecr_rkd *w = NULL;
    double L = NAN;
    CHECK_OK(ecr_rkd_create(&w));
    if (w) {
        CHECK_OK(ecr_rkd_forward(w, P, h, t, used, n, d, D, &L, NULL, NULL, m));
        ecr_rkd_backward(w, P, h, 1.0f, dP, dh);
    }
    ecr_rkd_free(w);
    return L;
}

static void test_proj_edges(void) {
    fd_setup(78);
    float dP[FD_ * Fd], dh[FN * Fd];
    unsigned char none[FN] = {0}, one[FN] = {0};
    one[4] = 1;
    int m = -1;
    /* every text left out, or one text: 0, no gradient */
    for (int k = 0; k < 2; k++) {
        memset(dP, 0, sizeof dP);
        memset(dh, 0, sizeof dh);
        double L = rkd_run(g_P, g_h, g_t, k ? one : none, FN, Fd, FD_, dP, dh, &m);
        CHECK(L == 0 && m == k && tl_max_abs(dP, FD_ * Fd) == 0.0 && tl_max_abs(dh, FN * Fd) == 0.0);
    }
    ecr_feat *fw = NULL;
    CHECK_OK(ecr_feat_create(&fw));
    double L = 1;
    int nu = -1;
    if (fw) {
        memset(dP, 0, sizeof dP);
        CHECK_OK(ecr_feat_forward(fw, g_P, g_h, g_t, none, FN, Fd, FD_, &L, &nu));
        ecr_feat_backward(fw, g_P, g_h, 1.0f, dP, NULL);
        CHECK(L == 0 && nu == 0 && tl_max_abs(dP, FD_ * Fd) == 0.0);
        /* the teacher row itself as the student's direction: cos 1, loss 0 (D = d, P = I) */
        enum { n = 4, d = 3 };
        float I[d * d] = {1, 0, 0, 0, 1, 0, 0, 0, 1}, h[n * d], t[n * d];
        tl_fill_normal(h, n * d, 1.0, 5);
        for (int i = 0; i < n * d; i++) t[i] = 3.0f * h[i];
        CHECK_OK(ecr_feat_forward(fw, I, h, t, NULL, n, d, d, &L, &nu));
        CHECK(fabs(L) < 1e-12 && nu == n);
    }
    ecr_feat_free(fw);

    /* a student equal to its teacher (P = I, t = 2 h): RKD 0, no gradient */
    {
        enum { n = 7, d = 4 };
        float I[d * d] = {0}, h[n * d], t[n * d], gP[d * d] = {0}, gh[n * d] = {0};
        for (int a = 0; a < d; a++) I[a * d + a] = 1;
        tl_fill_normal(h, n * d, 1.0, 6);
        for (int i = 0; i < n * d; i++) t[i] = 2.0f * h[i];
        L = rkd_run(I, h, t, NULL, n, d, d, gP, gh, &m);
        CHECK(fabs(L) < 1e-12 && m == n && tl_max_abs(gP, d * d) < 1e-7 && tl_max_abs(gh, n * d) < 1e-7);
    }
    /* invariance: P scaled by 3 and the teacher rows by 0.1 give the same loss */
    float P3[FD_ * Fd], t01[FN * FD_];
    for (int i = 0; i < FD_ * Fd; i++) P3[i] = 3.0f * g_P[i];
    for (int i = 0; i < FN * FD_; i++) t01[i] = 0.1f * g_t[i];
    memset(dP, 0, sizeof dP);
    memset(dh, 0, sizeof dh);
    double L0 = rkd_run(g_P, g_h, g_t, g_used, FN, Fd, FD_, dP, dh, &m);
    double L3 = rkd_run(P3, g_h, t01, g_used, FN, Fd, FD_, dP, dh, &m);
    CHECK_CLOSE(L3, L0, 1e-6 * L0);
    /* coincident rows (a text twice in a step, a teacher duplicate): finite, and the rest
     * still learns */
    float h2[FN * Fd], t2[FN * FD_];
    memcpy(h2, g_h, sizeof h2);
    memcpy(t2, g_t, sizeof t2);
    memcpy(h2 + 5 * Fd, h2 + 1 * Fd, Fd * sizeof(float));
    memcpy(t2 + 6 * FD_, t2 + 0 * FD_, FD_ * sizeof(float));
    memset(dP, 0, sizeof dP);
    memset(dh, 0, sizeof dh);
    L = rkd_run(g_P, h2, t2, g_used, FN, Fd, FD_, dP, dh, &m);
    CHECK(isfinite(L) && L > 0 && all_finite(dP, FD_ * Fd) && all_finite(dh, FN * Fd) && tl_max_abs(dP, FD_ * Fd) > 0);
    /* threads: the same bits with 1 and 2 threads (RKD and feat) */
    int th = ecr_get_threads();
    float p1[FD_ * Fd] = {0}, p2[FD_ * Fd] = {0}, h1[FN * Fd] = {0}, hh2[FN * Fd] = {0};
    ecr_set_threads(1);
    double La = rkd_run(g_P, g_h, g_t, g_used, FN, Fd, FD_, p1, h1, &m);
    ecr_set_threads(2);
    double Lb = rkd_run(g_P, g_h, g_t, g_used, FN, Fd, FD_, p2, hh2, &m);
    CHECK(La == Lb && !memcmp(p1, p2, sizeof p1) && !memcmp(h1, hh2, sizeof h1));
    CHECK_OK(ecr_feat_create(&fw));
    if (fw) {
        memset(p1, 0, sizeof p1), memset(p2, 0, sizeof p2);
        ecr_set_threads(1);
        CHECK_OK(ecr_feat_forward(fw, g_P, g_h, g_t, g_used, FN, Fd, FD_, &La, NULL));
        ecr_feat_backward(fw, g_P, g_h, 1.0f, p1, NULL);
        ecr_set_threads(2);
        CHECK_OK(ecr_feat_forward(fw, g_P, g_h, g_t, g_used, FN, Fd, FD_, &Lb, NULL));
        ecr_feat_backward(fw, g_P, g_h, 1.0f, p2, NULL);
        CHECK(La == Lb && !memcmp(p1, p2, sizeof p1));
    }
    ecr_set_threads(th);
    ecr_feat_free(fw);
    ecr_feat_free(NULL);
    ecr_rkd_free(NULL);
}

/* RKD on a realistic step (130 texts, D 64) stays exact across thread counts; the angle
 * term is O(m^3). */
static void test_rkd_large(void) {
    enum { n = 130, d = 24, D = 64 };
    float *P = malloc(sizeof(float) * D * d), *h = malloc(sizeof(float) * n * d), *t = malloc(sizeof(float) * n * D);
    float *g1 = calloc((size_t)n * d, sizeof(float)), *g2 = calloc((size_t)n * d, sizeof(float));
    tl_fill_normal(P, (size_t)D * d, 0.3, 1);
    tl_fill_normal(h, (size_t)n * d, 1.0, 2);
    tl_fill_normal(t, (size_t)n * D, 1.0, 3);
    int th = ecr_get_threads(), m = 0;
    ecr_set_threads(1);
    double L1 = rkd_run(P, h, t, NULL, n, d, D, NULL, g1, &m);
    ecr_set_threads(2);
    double L2 = rkd_run(P, h, t, NULL, n, d, D, NULL, g2, &m);
    ecr_set_threads(th);
    CHECK(m == n && isfinite(L1) && L1 > 0 && L1 == L2 && !memcmp(g1, g2, sizeof(float) * n * d));
    free(P);
    free(h);
    free(t);
    free(g1);
    free(g2);
}

/* ---- the whole objective through a tiny model ---------------------------------------------------- */

static ecr_model *e2e_m;
static ecr_objective *e2e_ob;
static tl_batch e2e_b;
static ecr_data e2e_d;

static double e2e_loss(void) {
    ecr_objective_terms t;
    if (ecr_objective_forward(e2e_ob, e2e_m, &e2e_b.b, &e2e_d, &t) != ECR_OK) return NAN;
    return t.total;
}

/* Central difference of the total wrt *x with the float steps actually taken. */
static double central(float *x, float h) {
    float v = *x, xp = v + h, xm = v - h;
    *x = xp;
    double lp = e2e_loss();
    *x = xm;
    double lm = e2e_loss();
    *x = v;
    return (lp - lm) / ((double)xp - (double)xm);
}

/* Gradient of the objective `oo` (zeroed first) into g [np]. */
static void objective_grad(const ecr_objective_opts *oo, float *g, ecr_objective_terms *t) {
    ecr_objective *ob = NULL;
    CHECK_OK(ecr_objective_create(oo, e2e_m, &ob));
    if (!ob) return;
    CHECK_OK(ecr_objective_forward(ob, e2e_m, &e2e_b.b, &e2e_d, t));
    ecr_model_zero_grad(e2e_m);
    CHECK_OK(ecr_objective_backward(ob, e2e_m, &e2e_b.b));
    memcpy(g, ecr_model_grads(e2e_m), ecr_model_num_params(e2e_m) * sizeof *g);
    ecr_objective_free(ob);
}

static void test_objective_fd(void) {
    enum { V = 48, d = 16, D = 6, K = 5 };
    ecr_config c;
    ecr_config_preset("tiny", &c);
    c.vocab_size = V, c.dim = d, c.n_layers = 2, c.n_heads = 2, c.hidden_dim = 32, c.max_seq_len = 16;
    c.ecr_dim = D;
    CHECK_OK(ecr_model_create(&c, 3, &e2e_m));
    /* the KD teacher: wider, one layer, with a projection of its own (never used) */
    ecr_config tc = c;
    tc.dim = 24, tc.n_layers = 1, tc.n_heads = 3, tc.hidden_dim = 40, tc.ecr_dim = 5;
    ecr_model *teacher = NULL;
    CHECK_OK(ecr_model_create(&tc, 4, &teacher));
    if (!e2e_m || !teacher) { ecr_model_free(e2e_m); ecr_model_free(teacher); return; }
    tl_scramble(e2e_m, 50);
    tl_scramble(teacher, 90);
    float *p = ecr_model_params(e2e_m);
    /* 6 texts in 2 rows of 12 slots; text 4 has no tokens (no pooled row) */
    int lens[] = {3, 2, 4, -1, 2, 0, 3};
    tl_make_batch(&e2e_b, 2, 12, lens, 7, V, 21);
    CHECK(e2e_b.b.n_texts == 6);
    int32_t group[6] = {0, 0, 1, -1, 0, 1};
    memset(&e2e_d, 0, sizeof e2e_d);
    e2e_d.n_texts = 6;
    e2e_d.group = group;
    float A[K * D];
    uint16_t codes[6] = {0, 3, 1, 4, 2, 1};
    tl_fill_normal(A, K * D, 1.0, 77);
    for (int k = 0; k < K; k++) {
        double s = 0;
        for (int a = 0; a < D; a++) s += (double)A[k * D + a] * A[k * D + a];
        for (int a = 0; a < D; a++) A[k * D + a] = (float)(A[k * D + a] / sqrt(s));
    }
    ecr_anchors an;
    memset(&an, 0, sizeof an);
    an.k = K, an.dim = D, an.rows = 6, an.anchors = A, an.codes = codes, an.tau = 0.2f;
    /* teacher vectors: 7 rows (one more than the texts), D dims; a cluster {0, 2, 5} */
    float temb[7 * D];
    tl_fill_normal(temb, 7 * D, 1.0, 88);
    for (int a = 0; a < D; a++) temb[2 * D + a] = temb[a] + 0.1f * temb[2 * D + a], temb[5 * D + a] = temb[a] - 0.1f * temb[5 * D + a];

    ecr_objective_opts oo = {0};
    oo.contrastive_weight = 0.7f, oo.contrastive_tau = 0.2f;
    oo.anchors = &an, oo.ecr_weight = 0.5f, oo.ecr_tau = 0.2f;
    oo.kd_teacher = teacher, oo.kd_alpha = 0.4f, oo.kd_temp = 2.0f;
    oo.feat_emb = temb, oo.feat_rows = 7, oo.feat_dim = D, oo.feat_weight = 0.6f;
    oo.rkd_emb = temb, oo.rkd_rows = 7, oo.rkd_dim = D, oo.rkd_weight = 0.05f;
    CHECK_OK(ecr_objective_create(&oo, e2e_m, &e2e_ob));
    if (!e2e_ob) { ecr_model_free(e2e_m); ecr_model_free(teacher); return; }
    ecr_objective_terms t;
    CHECK_OK(ecr_objective_forward(e2e_ob, e2e_m, &e2e_b.b, &e2e_d, &t));
    CHECK(t.n_contrastive == 4 && t.n_ecr == 5 && t.n_feat == 5 && t.n_rkd == 5 && t.n_targets == 20);
    CHECK(t.contrastive > 0 && t.ecr > 0 && t.kd > 0 && t.feat > 0 && t.rkd > 0);
    CHECK_CLOSE(t.rkd, 25 * t.rkd_dist + 50 * t.rkd_angle, 1e-12);
    double want = (1 - (double)0.4f) * t.lm + (double)0.7f * t.contrastive + 0.5 * t.ecr + (double)0.4f * t.kd +
                  (double)0.6f * t.feat + (double)0.05f * t.rkd;
    CHECK_CLOSE(t.total, want, 1e-12);
    fprintf(stderr, "    objective terms: lm %.4f contrastive %.4f ecr %.4f kd %.4f feat %.4f rkd %.4f total %.4f\n",
            t.lm, t.contrastive, t.ecr, t.kd, t.feat, t.rkd, t.total);
    ecr_model_zero_grad(e2e_m);
    ecr_model_zero_grad(teacher);
    CHECK_OK(ecr_objective_backward(e2e_ob, e2e_m, &e2e_b.b));
    CHECK_STATUS(ecr_objective_backward(e2e_ob, e2e_m, &e2e_b.b), ECR_E_INVALID);
    size_t np = ecr_model_num_params(e2e_m);
    float *g = malloc(np * sizeof *g), *g2 = malloc(np * sizeof *g2);
    memcpy(g, ecr_model_grads(e2e_m), np * sizeof *g);
    CHECK(tl_max_abs(ecr_model_grads(teacher), ecr_model_num_params(teacher)) == 0.0);
    /* each baseline term matters: dropping it changes the gradient */
    for (int drop = 0; drop < 3; drop++) {
        ecr_objective_opts o2 = oo;
        if (drop == 0) o2.kd_teacher = NULL;
        if (drop == 1) o2.feat_emb = NULL;
        if (drop == 2) o2.rkd_emb = NULL;
        ecr_objective_terms t2;
        objective_grad(&o2, g2, &t2);
        double diff = 0;
        for (size_t i = 0; i < np; i++) diff = tl_nanmax(diff, fabs((double)g[i] - g2[i]));
        CHECK_MSG(diff > 1e-4, "dropping term %d changes the gradient by %.3g only", drop, diff);
    }
    ecr_rng r;
    ecr_rng_seed(&r, 5);
    double worst = 0, worst_plain = 0;
    for (size_t ti = 0; ti < ecr_model_num_tensors(e2e_m); ti++) {
        const ecr_param_info *t2 = ecr_model_tensor(e2e_m, ti);
        size_t idx[5], best = 0;
        for (size_t j = 0; j < t2->numel; j++)
            if (fabsf(g[t2->offset + j]) > fabsf(g[t2->offset + best])) best = j;
        for (int k = 0; k < 4; k++) idx[k] = (size_t)(ecr_rng_u64(&r) % t2->numel);
        idx[4] = best;
        for (int k = 0; k < 5; k++) {
            size_t i = t2->offset + idx[k];
            double fd1 = central(p + i, 1e-2f), fd2 = central(p + i, 5e-3f);
            double fd = (4.0 * fd2 - fd1) / 3.0, an2 = g[i], tol = 3e-4 + 2e-2 * fabs(an2);
            worst = tl_nanmax(worst, fabs(fd - an2) / tol);
            worst_plain = tl_nanmax(worst_plain, fabs(fd1 - an2) / tol);
            CHECK_MSG(fabs(fd - an2) <= tol, "%s[%zu]: fd %.7g (h 1e-2: %.7g, 5e-3: %.7g) analytic %.7g", t2->name,
                      idx[k], fd, fd1, fd2, an2);
        }
    }
    fprintf(stderr, "    objective FD (LM + InfoNCE + ECR + KD + feat + RKD): worst err/tolerance %.3f "
                    "(plain central difference at h 1e-2: %.3f)\n", worst, worst_plain);
    ecr_objective_free(e2e_ob);
    e2e_ob = NULL;

    /* KD alone with alpha = 1: the LM term drops out, the gradient is the KD term's */
    ecr_objective_opts ok = {0};
    ok.kd_teacher = teacher, ok.kd_alpha = 1.0f, ok.kd_temp = 1.0f;
    objective_grad(&ok, g2, &t);
    CHECK_CLOSE(t.total, t.kd, 1e-12);
    CHECK(tl_max_abs(g2, np) > 1e-4);

    /* refusals: a teacher of another vocabulary; teacher vectors of another dim; alpha > 1 */
    ecr_objective *ob = NULL;
    ecr_config vc = tc;
    vc.vocab_size = V + 1;
    ecr_model *other = NULL;
    CHECK_OK(ecr_model_create(&vc, 4, &other));
    ok.kd_teacher = other;
    CHECK_STATUS(ecr_objective_create(&ok, e2e_m, &ob), ECR_E_INVALID);
    CHECK_MSG(strstr(ecr_last_error(), "49") && strstr(ecr_last_error(), "48"), "message: %s", ecr_last_error());
    ok.kd_teacher = teacher, ok.kd_alpha = 1.5f;
    CHECK_STATUS(ecr_objective_create(&ok, e2e_m, &ob), ECR_E_INVALID);
    ecr_objective_opts of = {0};
    of.feat_emb = temb, of.feat_rows = 7, of.feat_dim = D + 1, of.feat_weight = 1;
    CHECK_STATUS(ecr_objective_create(&of, e2e_m, &ob), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "projection") != NULL);
    /* a batch text outside the teacher rows is refused at the forward */
    of.feat_dim = D, of.feat_rows = 3;
    CHECK_OK(ecr_objective_create(&of, e2e_m, &ob));
    if (ob) {
        CHECK_STATUS(ecr_objective_forward(ob, e2e_m, &e2e_b.b, &e2e_d, &t), ECR_E_INVALID);
        CHECK(strstr(ecr_last_error(), "teacher vectors") != NULL);
    }
    ecr_objective_free(ob);
    ecr_model_free(other);
    free(g);
    free(g2);
    ecr_model_free(teacher);
    ecr_model_free(e2e_m);
    e2e_m = NULL;
}

int main(void) {
    RUN(test_reference);
    RUN(test_fd_losses);
    RUN(test_kd_edges);
    RUN(test_proj_edges);
    RUN(test_rkd_large);
    RUN(test_objective_fd);
    return test_finish("test_baselines");
}
