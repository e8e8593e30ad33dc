/* test_losses.c — the InfoNCE and ECR losses (src/method/loss_infonce.c, src/method/loss_ecr.c) and the step objective.
 *
 *  - PyTorch reference (tests/fixtures/losses_ref.safetensors, written by
 *    tools/torch_ref_losses.py in float64): InfoNCE loss and dL/dh for two cases
 *    (tau 0.05 and 0.3, multi-positive groups, a singleton group, a text without a group);
 *    ECR hard and soft loss, dL/dP, dL/dh for two cases (tau 0.05 and 0.3, one text left
 *    out) and the target matrix Pi. Tolerances: losses 1e-6 relative; gradients and Pi
 *    1e-5 relative to the largest magnitude of each tensor (both sides compute in double
 *    from the same float32 inputs; measured ~1e-7);
 *  - finite differences on the loss functions alone (every element of h and P, three-point
 *    derivative through the float neighbours actually used, step 1e-4, losses in double):
 *    |fd - an| <= 1e-5 * max(1, max |an|) per tensor;
 *  - edge cases: no positives, zero rows, every text left out, soft codes with M = 1 equal
 *    -log q, invalid codes refused, K above the Pi cache against a direct double
 *    computation, thread-count independence, accumulation (two backwards of scale 1/2);
 *  - the whole objective through a tiny model: L = L_LM + w InfoNCE + lambda ECR (and, in two
 *    more configurations, + w_rel rel + w_con con on u and on h + w_orth orth, with lambda on its warm-up
 *    ramp at progress 1/4, so lambda / 2 in forward and backward alike), central
 *    differences wrt sampled elements of every tensor (ecr.proj included), tolerance
 *    |fd - an| <= 3e-4 + 2e-2 |an| (fp32 model, h = 1e-2 on weights of scale ~0.3, as in
 *    test_model.c), with the LM-only gradient also checked to differ (the terms matter). */
#include "test.h"
#include "testlib.h"
#include "losses.h"
#include "rng.h"

#include <string.h>

#define FIXTURE "tests/fixtures/losses_ref.safetensors"

/* ---- fixture access -------------------------------------------------------------------------- */

static const ecr_tensor_view *fx(const ecr_st_file *f, const char *name, ecr_dtype dt) {
    const ecr_tensor_view *v = ecr_st_find(f, name);
    CHECK_MSG(v && v->dtype == dt, "fixture tensor '%s' missing or not %s", name, ecr_dtype_name(dt));
    return v && v->dtype == dt ? v : NULL;
}

/* ---- PyTorch reference ----------------------------------------------------------------------- */

static void reference_nce(const ecr_st_file *f, int c) {
    char name[64];
    snprintf(name, sizeof name, "nce_%d_tau", c);
    float tau = (float)tl_meta_num(f, name);
    snprintf(name, sizeof name, "nce.%d.h", c);
    const ecr_tensor_view *h = fx(f, name, ECR_F32);
    snprintf(name, sizeof name, "nce.%d.group", c);
    const ecr_tensor_view *g = fx(f, name, ECR_I32);
    snprintf(name, sizeof name, "nce.%d.loss", c);
    const ecr_tensor_view *L = fx(f, name, ECR_F32);
    snprintf(name, sizeof name, "nce.%d.dh", c);
    const ecr_tensor_view *dh = fx(f, name, ECR_F32);
    if (!h || !g || !L || !dh) return;
    int n = (int)h->shape[0], d = (int)h->shape[1];
    ecr_infonce *w = NULL;
    CHECK_OK(ecr_infonce_create(&w));
    double loss = 0;
    int na = 0;
    CHECK_OK(ecr_infonce_forward(w, h->data, g->data, n, d, tau, &loss, &na));
    float *mine = calloc((size_t)n * d, sizeof *mine);
    ecr_infonce_backward(w, 1.0f, mine);
    double ref = ((const float *)L->data)[0];
    CHECK_CLOSE(loss, ref, 1e-6 * fabs(ref));
    double e = tl_rel_err(mine, dh->data, (size_t)n * d);
    fprintf(stderr, "    InfoNCE case %d (tau %.2f, %d anchors of %d): loss %.6f (torch %.6f), dh rel err %.1e\n",
            c, (double)tau, na, n, loss, ref, e);
    CHECK(e < 1e-5);
    /* the texts without a positive: case 0 has a singleton group and a text without one */
    if (c == 0) CHECK(na == n - 2);
    free(mine);
    ecr_infonce_free(w);
}

static void reference_ecr(const ecr_st_file *f, int c) {
    char name[64];
    snprintf(name, sizeof name, "ecr_%d_tau", c);
    float tau = (float)tl_meta_num(f, name);
#define FX(var, field, dt) snprintf(name, sizeof name, "ecr.%d." field, c); \
    const ecr_tensor_view *var = fx(f, name, dt)
    FX(P, "P", ECR_F32);
    FX(h, "h", ECR_F32);
    FX(A, "A", ECR_F32);
    FX(code, "code", ECR_I32);
    FX(sidx, "soft_idx", ECR_I32);
    FX(ssim, "soft_sim", ECR_F32);
    FX(Pi, "Pi", ECR_F32);
    if (!P || !h || !A || !code || !sidx || !ssim || !Pi) return;
    int n = (int)h->shape[0], d = (int)h->shape[1], D = (int)P->shape[0], K = (int)A->shape[0];
    int M = (int)sidx->shape[1];
    uint16_t *idx16 = malloc((size_t)n * M * sizeof *idx16);
    for (int i = 0; i < n * M; i++) idx16[i] = (uint16_t)((const int32_t *)sidx->data)[i];
    ecr_reg *w = NULL;
    CHECK_OK(ecr_reg_create(A->data, K, D, tau, &w));
    if (!w) { free(idx16); return; }
    /* the target matrix */
    double *row = malloc((size_t)K * sizeof *row);
    float *rowf = malloc((size_t)K * K * sizeof *rowf);
    for (int r = 0; r < K; r++) {
        ecr_reg_target_row(w, r, row);
        for (int k = 0; k < K; k++) rowf[r * K + k] = (float)row[k];
    }
    CHECK(tl_rel_err(rowf, Pi->data, (size_t)K * K) < 1e-5);
    for (int soft = 0; soft <= 1; soft++) {
        const char *kind = soft ? "soft" : "hard";
        snprintf(name, sizeof name, "ecr.%d.%s.loss", c, kind);
        const ecr_tensor_view *Lr = fx(f, name, ECR_F32);
        snprintf(name, sizeof name, "ecr.%d.%s.dP", c, kind);
        const ecr_tensor_view *dPr = fx(f, name, ECR_F32);
        snprintf(name, sizeof name, "ecr.%d.%s.dh", c, kind);
        const ecr_tensor_view *dhr = fx(f, name, ECR_F32);
        if (!Lr || !dPr || !dhr) continue;
        double loss = 0;
        int used = 0;
        CHECK_OK(ecr_reg_forward(w, P->data, h->data, n, d, code->data, soft ? idx16 : NULL,
                                 soft ? ssim->data : NULL, M, &loss, &used));
        float *dP = calloc((size_t)D * d, sizeof *dP), *dh = calloc((size_t)n * d, sizeof *dh);
        ecr_reg_backward(w, P->data, h->data, 1.0f, dP, dh);
        double ref = ((const float *)Lr->data)[0];
        double eP = tl_rel_err(dP, dPr->data, (size_t)D * d), eh = tl_rel_err(dh, dhr->data, (size_t)n * d);
        fprintf(stderr, "    ECR case %d %s (tau %.2f, K %d, %d of %d texts): loss %.6f (torch %.6f), "
                        "dP rel err %.1e, dh rel err %.1e\n",
                c, kind, (double)tau, K, used, n, loss, ref, eP, eh);
        CHECK_CLOSE(loss, ref, 1e-6 * fabs(ref));
        CHECK(used == n - 1);
        CHECK(eP < 1e-5 && eh < 1e-5);
        /* the left-out text (row 2) gets no gradient */
        CHECK(tl_max_abs(dh + 2 * d, (size_t)d) == 0.0);
        free(dP);
        free(dh);
    }
#undef FX
    free(row);
    free(rowf);
    free(idx16);
    ecr_reg_free(w);
}

static void test_reference(void) {
    ecr_st_file *f = NULL;
    CHECK_OK(ecr_st_open(FIXTURE, &f));
    if (!f) return;
    for (int c = 0; c < 2; c++) reference_nce(f, c);
    for (int c = 0; c < 2; c++) reference_ecr(f, c);
    ecr_st_close(f);
}

/* ---- finite differences on the losses alone ------------------------------------------------ */

/* The problem both losses are checked on. */
enum { FN = 8, FD_ = 5, FDD = 6, FK = 7, FM = 3 };
static float g_h[FN * FD_], g_P[FDD * FD_], g_A[FK * FDD], g_ssim[FN * FM];
static int32_t g_group[FN] = {0, 0, 1, 1, 1, -1, 2, 0};
static int32_t g_code[FN] = {3, 0, 6, -1, 2, 2, 5, 1};
static uint16_t g_sidx[FN * FM];
static float g_tau;
static int g_soft;

static double loss_nce(void) {
    ecr_infonce *w = NULL;
    double L = NAN;
    if (ecr_infonce_create(&w) == ECR_OK) ecr_infonce_forward(w, g_h, g_group, FN, FD_, g_tau, &L, NULL);
    ecr_infonce_free(w);
    return L;
}

static double loss_ecr(void) {
    ecr_reg *w = NULL;
    double L = NAN;
    if (ecr_reg_create(g_A, FK, FDD, g_tau, &w) == ECR_OK)
        ecr_reg_forward(w, g_P, g_h, FN, FD_, g_code, g_soft ? g_sidx : NULL, g_ssim, FM, &L, NULL);
    ecr_reg_free(w);
    return L;
}

static void fd_setup(uint64_t seed) {
    tl_fill_normal(g_h, FN * FD_, 1.0, seed);
    tl_fill_normal(g_P, FDD * FD_, 0.5, seed + 1);
    tl_fill_unit_rows(g_A, FK, FDD, seed + 2);
    ecr_rng r;
    ecr_rng_seed(&r, seed + 3);
    for (int i = 0; i < FN; i++) { /* distinct indices, decreasing similarities */
        int start = (int)(ecr_rng_u64(&r) % FK);
        for (int j = 0; j < FM; j++) {
            g_sidx[i * FM + j] = (uint16_t)((start + 2 * j) % FK);
            g_ssim[i * FM + j] = (float)(0.9 - 0.25 * j - 0.1 * ecr_rng_uniform(&r));
        }
    }
}

static void test_fd_losses(void) {
    fd_setup(1234);
    float taus[2] = {0.05f, 0.3f};
    for (int ti = 0; ti < 2; ti++) {
        g_tau = taus[ti];
        /* InfoNCE */
        ecr_infonce *w = NULL;
        CHECK_OK(ecr_infonce_create(&w));
        double L = 0;
        float dh[FN * FD_] = {0};
        CHECK_OK(ecr_infonce_forward(w, g_h, g_group, FN, FD_, g_tau, &L, NULL));
        ecr_infonce_backward(w, 1.0f, dh);
        ecr_infonce_free(w);
        double e1 = tl_fd_check("infonce dh", loss_nce, g_h, dh, FN * FD_);
        /* ECR hard and soft */
        double e2 = 0, e3 = 0;
        for (g_soft = 0; g_soft <= 1; g_soft++) {
            ecr_reg *r = NULL;
            CHECK_OK(ecr_reg_create(g_A, FK, FDD, g_tau, &r));
            if (!r) continue;
            float dP[FDD * FD_] = {0}, dh2[FN * FD_] = {0};
            CHECK_OK(ecr_reg_forward(r, g_P, g_h, FN, FD_, g_code, g_soft ? g_sidx : NULL, g_ssim, FM, &L, NULL));
            ecr_reg_backward(r, g_P, g_h, 1.0f, dP, dh2);
            ecr_reg_free(r);
            e2 = tl_nanmax(e2, tl_fd_check(g_soft ? "ecr soft dP" : "ecr hard dP", loss_ecr, g_P, dP, FDD * FD_));
            e3 = tl_nanmax(e3, tl_fd_check(g_soft ? "ecr soft dh" : "ecr hard dh", loss_ecr, g_h, dh2, FN * FD_));
        }
        g_soft = 0;
        fprintf(stderr, "    FD tau %.2f: worst |fd - an| / max(1, max|an|): InfoNCE dh %.1e, ECR dP %.1e, dh %.1e\n",
                (double)g_tau, e1, e2, e3);
    }
}

/* ---- edge cases ------------------------------------------------------------------------------- */

static void test_edges(void) {
    fd_setup(99);
    ecr_infonce *w = NULL;
    CHECK_OK(ecr_infonce_create(&w));
    if (!w) return;
    double L = 1;
    int na = -1;
    /* no positives at all: zero loss, no gradient */
    int32_t lone[FN] = {0, 1, 2, 3, -1, -1, 4, 5};
    float dh[FN * FD_] = {0};
    CHECK_OK(ecr_infonce_forward(w, g_h, lone, FN, FD_, 0.05f, &L, &na));
    ecr_infonce_backward(w, 1.0f, dh);
    CHECK(L == 0 && na == 0 && tl_max_abs(dh, FN * FD_) == 0.0);
    /* a zero row (a text without tokens) stays finite; so does everything else */
    float hz[FN * FD_];
    memcpy(hz, g_h, sizeof hz);
    memset(hz + 3 * FD_, 0, FD_ * sizeof(float));
    CHECK_OK(ecr_infonce_forward(w, hz, g_group, FN, FD_, 0.05f, &L, &na));
    ecr_infonce_backward(w, 1.0f, dh);
    int finite = isfinite(L);
    for (int i = 0; i < FN * FD_; i++) finite &= isfinite(dh[i]);
    CHECK(finite);
    /* accumulation: two backwards of 1/2 equal one of 1 */
    float d1[FN * FD_] = {0}, d2[FN * FD_] = {0};
    CHECK_OK(ecr_infonce_forward(w, g_h, g_group, FN, FD_, 0.05f, &L, &na));
    ecr_infonce_backward(w, 1.0f, d1);
    ecr_infonce_backward(w, 0.5f, d2);
    ecr_infonce_backward(w, 0.5f, d2);
    CHECK(tl_rel_err(d2, d1, FN * FD_) < 1e-6);
    /* threads: the same bits with 1 and 2 threads */
    int th = ecr_get_threads();
    double L1 = 0, L2 = 0;
    float t1[FN * FD_] = {0}, t2[FN * FD_] = {0};
    ecr_set_threads(1);
    CHECK_OK(ecr_infonce_forward(w, g_h, g_group, FN, FD_, 0.05f, &L1, NULL));
    ecr_infonce_backward(w, 1.0f, t1);
    ecr_set_threads(2);
    CHECK_OK(ecr_infonce_forward(w, g_h, g_group, FN, FD_, 0.05f, &L2, NULL));
    ecr_infonce_backward(w, 1.0f, t2);
    CHECK(L1 == L2 && !memcmp(t1, t2, sizeof t1));
    ecr_infonce_free(w);

    ecr_reg *r = NULL;
    CHECK_OK(ecr_reg_create(g_A, FK, FDD, 0.05f, &r));
    if (!r) { ecr_set_threads(th); return; }
    /* every text left out */
    int32_t none[FN] = {-1, -1, -1, -1, -1, -1, -1, -1};
    int used = -1;
    float dP[FDD * FD_] = {0};
    memset(dh, 0, sizeof dh);
    CHECK_OK(ecr_reg_forward(r, g_P, g_h, FN, FD_, none, NULL, NULL, 0, &L, &used));
    ecr_reg_backward(r, g_P, g_h, 1.0f, dP, dh);
    CHECK(L == 0 && used == 0 && tl_max_abs(dP, FDD * FD_) == 0.0 && tl_max_abs(dh, FN * FD_) == 0.0);
    /* soft codes with M = 1 are one-hot targets: KL = -log q_c */
    uint16_t one_idx[FN];
    float one_sim[FN];
    for (int i = 0; i < FN; i++) one_idx[i] = (uint16_t)(i % FK), one_sim[i] = 0.5f;
    int32_t all[FN] = {0, 1, 2, 3, 4, 5, 6, 0};
    CHECK_OK(ecr_reg_forward(r, g_P, g_h, FN, FD_, all, one_idx, one_sim, 1, &L, &used));
    double want = 0;
    for (int i = 0; i < FN; i++) { /* -log softmax(A u / tau)[c] computed here */
        double z[FDD], nz = 0, l[FK], mx = -1e300, s = 0;
        for (int a = 0; a < FDD; a++) {
            z[a] = 0;
            for (int b = 0; b < FD_; b++) z[a] += (double)g_P[a * FD_ + b] * g_h[i * FD_ + b];
            nz += z[a] * z[a];
        }
        for (int k = 0; k < FK; k++) {
            l[k] = 0;
            for (int a = 0; a < FDD; a++) l[k] += (double)g_A[k * FDD + a] * z[a] / sqrt(nz) / (double)0.05f;
            mx = l[k] > mx ? l[k] : mx;
        }
        for (int k = 0; k < FK; k++) s += exp(l[k] - mx);
        want += -(l[one_idx[i]] - mx - log(s)) / FN;
    }
    CHECK_CLOSE(L, want, 1e-9 * fabs(want));
    CHECK(used == FN);
    /* codes and soft indices must be below K */
    int32_t badc[FN] = {0, 1, 2, 3, FK, 5, 6, 0};
    CHECK_STATUS(ecr_reg_forward(r, g_P, g_h, FN, FD_, badc, NULL, NULL, 0, &L, &used), ECR_E_INVALID);
    one_idx[2] = FK;
    CHECK_STATUS(ecr_reg_forward(r, g_P, g_h, FN, FD_, all, one_idx, one_sim, 1, &L, &used), ECR_E_INVALID);
    /* threads */
    float p1[FDD * FD_] = {0}, p2[FDD * FD_] = {0};
    memset(t1, 0, sizeof t1);
    memset(t2, 0, sizeof t2);
    ecr_set_threads(1);
    CHECK_OK(ecr_reg_forward(r, g_P, g_h, FN, FD_, g_code, NULL, NULL, 0, &L1, NULL));
    ecr_reg_backward(r, g_P, g_h, 1.0f, p1, t1);
    ecr_set_threads(2);
    CHECK_OK(ecr_reg_forward(r, g_P, g_h, FN, FD_, g_code, NULL, NULL, 0, &L2, NULL));
    ecr_reg_backward(r, g_P, g_h, 1.0f, p2, t2);
    CHECK(L1 == L2 && !memcmp(p1, p2, sizeof p1) && !memcmp(t1, t2, sizeof t1));
    ecr_set_threads(th);
    ecr_reg_free(r);
    CHECK_STATUS(ecr_reg_create(g_A, FK, FDD, 0.0f, &r), ECR_E_INVALID);
    CHECK(r == NULL);
    ecr_reg_free(NULL);
    ecr_infonce_free(NULL);
}

/* K above the Pi cache: rows computed per text; the loss equals a direct double computation. */
static void test_large_k(void) {
    enum { K = ECR_REG_CACHE_K + 76, D = 4, d = 3, n = 5 };
    float *A = malloc(sizeof(float) * K * D), P[D * d], h[n * d];
    tl_fill_unit_rows(A, K, D, 7);
    tl_fill_normal(P, D * d, 0.5, 8);
    tl_fill_normal(h, n * d, 1.0, 9);
    int32_t code[n] = {0, 17, K - 1, 500, 3};
    const double tau = (double)0.1f; /* the float the loss receives */
    ecr_reg *r = NULL;
    CHECK_OK(ecr_reg_create(A, K, D, (float)tau, &r));
    double L = 0, want = 0;
    if (r) CHECK_OK(ecr_reg_forward(r, P, h, n, d, code, NULL, NULL, 0, &L, NULL));
    double *pi = malloc(sizeof(double) * K), *lq = malloc(sizeof(double) * K);
    for (int i = 0; i < n; i++) {
        double z[D], nz = 0, mx = -1e300, s = 0, m2 = -1e300, s2 = 0;
        for (int a = 0; a < D; a++) {
            z[a] = 0;
            for (int b = 0; b < d; b++) z[a] += (double)P[a * d + b] * h[i * d + b];
            nz += z[a] * z[a];
        }
        for (int k = 0; k < K; k++) {
            double sp = 0, sq = 0;
            for (int a = 0; a < D; a++) {
                sp += (double)A[code[i] * D + a] * A[k * D + a];
                sq += (double)A[k * D + a] * z[a] / sqrt(nz);
            }
            pi[k] = sp / tau, lq[k] = sq / tau;
            mx = pi[k] > mx ? pi[k] : mx;
            m2 = lq[k] > m2 ? lq[k] : m2;
        }
        for (int k = 0; k < K; k++) s += exp(pi[k] - mx), s2 += exp(lq[k] - m2);
        for (int k = 0; k < K; k++) {
            double lp = pi[k] - mx - log(s), lqk = lq[k] - m2 - log(s2);
            want += exp(lp) * (lp - lqk) / n;
        }
    }
    CHECK_CLOSE(L, want, 1e-9 * fabs(want));
    free(pi);
    free(lq);
    free(A);
    ecr_reg_free(r);
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

static void test_objective_fd(void) {
    enum { V = 48, d = 16, D = 6, K = 5, NT = 7 };
    ecr_config c;
    ecr_config_preset("tiny", &c);
    c.vocab_size = V, c.dim = d, c.n_layers = 2, c.n_heads = 2, c.hidden_dim = 32, c.max_seq_len = 16;
    c.ecr_dim = D;
    CHECK_OK(ecr_model_create(&c, 3, &e2e_m));
    if (!e2e_m) return;
    tl_scramble(e2e_m, 50); /* weights of scale ~0.3 */
    float *p = ecr_model_params(e2e_m);
    /* 6 texts in 2 rows of 12 slots; text 4 has no tokens (no pooled row) */
    int lens[] = {3, 2, 4, -1, 2, 0, 3};
    tl_make_batch(&e2e_b, 2, 12, lens, 7, V, 21);
    CHECK(e2e_b.b.n_texts == 6);
    /* data rows: groups {0, 1, 4} (4 is empty: no anchor, no positive), {2, 5}, {3} none */
    int32_t group[6] = {0, 0, 1, -1, 0, 1};
    memset(&e2e_d, 0, sizeof e2e_d);
    e2e_d.n_texts = 6;
    e2e_d.group = group;
    /* anchors: K unit rows, hard codes, soft codes with M = 2 */
    float A[K * D], ssim[6 * 2];
    uint16_t codes[6] = {0, 3, 1, 4, 2, 1}, sidx[6 * 2];
    tl_fill_unit_rows(A, K, D, 77);
    for (int i = 0; i < 6; i++) {
        sidx[2 * i] = codes[i], sidx[2 * i + 1] = (uint16_t)((codes[i] + 2) % K);
        ssim[2 * i] = 0.8f, ssim[2 * i + 1] = 0.6f - 0.05f * i;
    }
    ecr_anchors an;
    memset(&an, 0, sizeof an);
    an.k = K, an.dim = D, an.rows = 6, an.anchors = A, an.codes = codes, an.soft = 2;
    an.soft_idx = sidx, an.soft_sim = ssim, an.tau = 0.2f;
    /* a second, coarser anchor set for mres (K = 3, its own codes) */
    float A2[3 * D];
    uint16_t codes2[6] = {2, 0, 1, 1, 0, 2};
    tl_fill_unit_rows(A2, 3, D, 78);
    ecr_anchors an_m;
    memset(&an_m, 0, sizeof an_m);
    an_m.k = 3, an_m.dim = D, an_m.rows = 6, an_m.anchors = A2, an_m.codes = codes2, an_m.tau = 0.2f;
    /* configurations: hard codes; soft codes; hard codes with the codes-only terms rel and
     * con on u, orth, mres over the second set and the lambda schedule (warm-up over half the
     * run, at a quarter: lambda / 2); the same with rel and con on h */
    for (int cfg = 0; cfg < 4; cfg++) {
        int soft = cfg == 1, codes_only = cfg >= 2;
        ecr_train_opts tr;
        ecr_train_opts_default(&tr);
        tr.rel_weight = 0.3f, tr.con_weight = 0.4f, tr.con_tau = 0.3f, tr.ecr_warmup = 0.5f, tr.orth_weight = 0.2f;
        tr.rel_on_h = tr.con_on_h = cfg == 3;
        tr.mres_weight = 0.6f, tr.mid_weight = 0.45f, tr.mid_layer = 1; /* mid: block 1 of 2 */
        ecr_objective_opts oo = {0};
        oo.mres[0] = &an_m, oo.n_mres = 1;
        oo.contrastive_weight = 0.7f, oo.contrastive_tau = 0.2f;
        oo.anchors = &an, oo.ecr_weight = 0.5f, oo.ecr_tau = 0.2f, oo.ecr_soft = soft;
        if (codes_only) oo.train = &tr;
        CHECK_OK(ecr_objective_create(&oo, e2e_m, &e2e_ob));
        if (!e2e_ob) break;
        if (codes_only) ecr_objective_set_progress(e2e_ob, 0.25);
        ecr_objective_terms t;
        CHECK_OK(ecr_objective_forward(e2e_ob, e2e_m, &e2e_b.b, &e2e_d, &t));
        CHECK(t.n_contrastive == 4 && t.n_ecr == 5);
        CHECK(t.contrastive > 0 && t.ecr > 0);
        if (!codes_only) {
            CHECK_CLOSE(t.total, t.lm + (double)0.7f * t.contrastive + 0.5 * t.ecr, 1e-12);
            CHECK(t.rel == 0 && t.con == 0 && t.n_rel == 0 && t.n_con == 0 && t.mres == 0 && t.mid == 0);
        } else { /* texts 2 and 5 share code 1: the only positives of con */
            CHECK(t.n_rel == 5 && t.n_con == 2 && t.rel > 0 && t.con > 0 && t.orth > 0 && t.mres > 0 && t.mid > 0);
            CHECK_CLOSE(t.total, t.lm + (double)0.7f * t.contrastive + 0.25 * t.ecr + (double)0.3f * t.rel +
                                     (double)0.4f * t.con + (double)0.2f * t.orth + (double)0.6f * t.mres +
                                     (double)0.45f * t.mid, 1e-12);
        }
        ecr_model_zero_grad(e2e_m);
        CHECK_OK(ecr_objective_backward(e2e_ob, e2e_m, &e2e_b.b));
        CHECK_STATUS(ecr_objective_backward(e2e_ob, e2e_m, &e2e_b.b), ECR_E_INVALID);
        size_t np = ecr_model_num_params(e2e_m);
        float *g = malloc(np * sizeof *g), *glm = malloc(np * sizeof *glm);
        memcpy(g, ecr_model_grads(e2e_m), np * sizeof *g);
        /* LM-only gradient, to show the extra terms change it */
        ecr_forward_out fo;
        CHECK_OK(ecr_model_forward(e2e_m, &e2e_b.b, &fo));
        ecr_model_zero_grad(e2e_m);
        CHECK_OK(ecr_model_backward(e2e_m, &e2e_b.b, 1.0f, NULL, NULL));
        memcpy(glm, ecr_model_grads(e2e_m), np * sizeof *glm);
        double diff = 0;
        for (size_t i = 0; i < np; i++) diff = tl_nanmax(diff, fabs((double)g[i] - glm[i]));
        CHECK(diff > 1e-3);
        ecr_rng r;
        ecr_rng_seed(&r, 5 + soft);
        const float h = 1e-2f;
        double worst = 0;
        for (size_t ti = 0; ti < ecr_model_num_tensors(e2e_m); ti++) {
            const ecr_param_info *t2 = ecr_model_tensor(e2e_m, ti);
            size_t idx[5], best = 0;
            for (size_t j = 0; j < t2->numel; j++)
                if (fabsf(g[t2->offset + j]) > fabsf(g[t2->offset + best])) best = j;
            for (int k = 0; k < 4; k++) idx[k] = (size_t)(ecr_rng_u64(&r) % t2->numel);
            idx[4] = best;
            for (int k = 0; k < 5; k++) {
                size_t i = t2->offset + idx[k];
                float v = p[i];
                p[i] = v + h;
                double lp = e2e_loss();
                p[i] = v - h;
                double lm = e2e_loss();
                p[i] = v;
                double fd = (lp - lm) / (2.0 * h), an2 = g[i], tol = 3e-4 + 2e-2 * fabs(an2);
                worst = tl_nanmax(worst, fabs(fd - an2) / tol);
                CHECK_MSG(fabs(fd - an2) <= tol, "%s[%zu]: fd %.7g analytic %.7g", t2->name, idx[k], fd, an2);
            }
        }
        /* the projection's gradient comes from the ECR term alone */
        const ecr_param_info *pr = ecr_model_find_tensor(e2e_m, "ecr.proj.weight");
        CHECK(pr && tl_max_abs(g + pr->offset, pr->numel) > 1e-3 && tl_max_abs(glm + pr->offset, pr->numel) == 0.0);
        fprintf(stderr, "    objective FD (%s): worst err/tolerance %.3f\n",
                cfg == 0 ? "hard codes" : cfg == 1 ? "soft codes" : cfg == 2 ? "+ rel, con on u, orth, mres, mid, lambda ramp"
                                                                           : "+ rel, con on h, orth, mres, mid, lambda ramp", worst);
        free(g);
        free(glm);
        ecr_objective_free(e2e_ob);
        e2e_ob = NULL;
    }
    /* refusals: anchors of another dim; soft without soft codes */
    ecr_objective_opts bad = {0};
    an.dim = D + 1;
    bad.anchors = &an, bad.ecr_weight = 0.1f, bad.ecr_tau = 0.1f;
    ecr_objective *ob = NULL;
    CHECK_STATUS(ecr_objective_create(&bad, e2e_m, &ob), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "projection") != NULL);
    an.dim = D, an.soft = 0, an.soft_idx = NULL, an.soft_sim = NULL;
    bad.ecr_soft = 1;
    CHECK_STATUS(ecr_objective_create(&bad, e2e_m, &ob), ECR_E_INVALID);
    CHECK(strstr(ecr_last_error(), "soft") != NULL);
    ecr_objective_free(NULL);
    ecr_model_free(e2e_m);
    e2e_m = NULL;
}

int main(void) {
    RUN(test_reference);
    RUN(test_fd_losses);
    RUN(test_edges);
    RUN(test_large_k);
    RUN(test_objective_fd);
    return test_finish("test_losses");
}
