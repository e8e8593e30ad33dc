/* test_codes.c — the codes-only variants of ECR (src/method/loss_rel.c, loss_con.c, loss_orth.c,
 * loss_mres.c): relational consistency (rel) and code-contrastive (con), each on the student
 * rows of the space u (x = normalize(P h), P [D, d]) and of h itself (x = normalize(h), P
 * NULL); orth; multi-resolution codes (mres, through its term operations: the fixture's sum
 * of ECR's KL over two further anchor sets, K 4 and 9, a text without tokens whose dh row
 * stays exactly 0; off without sets or without ECR). mres's finite differences run through
 * the whole objective in tests/test_losses.c.
 *
 *  - PyTorch reference (tests/fixtures/codes_ref.safetensors, written by tools/torch_ref_codes.py
 *    in float64): rel loss, dL/dP, dL/dh in space u (D 6, targets of dim 4) with a text left
 *    out, and in space h (targets of dim 5 != d, in 3 tight clusters) with two texts left out;
 *    con loss, dL/dP, dL/dh in space u (tau 0.1) and h (tau 0.5) with shared codes, a text of
 *    a unique code (no anchor) and an unused text that takes away another's only positive.
 *    Tolerances: losses 1e-6 relative; gradients 1e-5 relative to the largest magnitude of
 *    each tensor (both sides compute in double from the same float32 inputs); m and |A| exact
 *    (against the fixture's metadata and a count made here); dh rows of unused texts exactly
 *    0; in space h a dP buffer passed to the backward stays 0;
 *  - finite differences on each loss alone, in both spaces (every element of P and h; parabola
 *    through the float neighbours actually used, step 1e-4, losses in double; con at tau 0.5
 *    and 0.1): |fd - an| <= 1e-5 * max(1, max |an|) per tensor;
 *  - edge cases: rel with fewer than 2 used texts (0, no gradient); rel of a student equal to
 *    its targets (P = I, t = 2 h; h space t = 3 h): |L| < 1e-12, gradients < 1e-7; rel
 *    invariant to the scale of P (x3) and of the targets (x0.1): loss to 1e-6 relative, dh
 *    and 3 dP(3P) to 1e-5; rel and con ignore the rows of unused texts (same loss, same
 *    gradients, bit for bit); con with all codes distinct or all texts unused (0, no
 *    gradient); con equals ecr_infonce on normalize(h) grouped by code (h space, all used;
 *    loss 1e-12 relative, dh 1e-6) and ecr_infonce_forward_d on normalize(P h) with unused
 *    rows 0 and group -1 (space u; loss 1e-12 relative); con invariant to the scale of P;
 *    tau <= 0 refused; results bit-identical with 1 and 2 threads (130 texts, D 64, both
 *    losses, both spaces); the backward accumulates (two calls give twice one call, 1e-6). */
#include "test.h"
#include "testlib.h"
#include "losses.h"
#include "term.h"

#include <string.h>

#define FIXTURE "tests/fixtures/codes_ref.safetensors"

/* ---- helpers ---------------------------------------------------------------------------------- */

/* rel: one forward and a backward of scale 1 accumulated into dP, dh (dP may be NULL when P is). */
static double rel_run(const float *P, const float *h, const float *t, const unsigned char *used, int n, int d,
                      int D, int Dt, float *dP, float *dh, int *m) {
    ecr_rel *w = NULL;
    double L = NAN;
    CHECK_OK(ecr_rel_create(&w));
    if (w) {
        CHECK_OK(ecr_rel_forward(w, P, h, t, used, n, d, D, Dt, &L, m));
        ecr_rel_backward(w, P, h, 1.0f, dP, dh);
    }
    ecr_rel_free(w);
    return L;
}

/* con: the same. */
static double con_run(const float *P, const float *h, const int32_t *code, const unsigned char *used, int n,
                      int d, int D, float tau, float *dP, float *dh, int *na) {
    ecr_con *w = NULL;
    double L = NAN;
    CHECK_OK(ecr_con_create(&w));
    if (w) {
        CHECK_OK(ecr_con_forward(w, P, h, code, used, n, d, D, tau, &L, na));
        ecr_con_backward(w, P, h, 1.0f, dP, dh);
    }
    ecr_con_free(w);
    return L;
}

/* Texts that are anchors of con: used, code >= 0, and another used text of the same code. */
static int count_anchors(const int32_t *code, const unsigned char *used, int n) {
    int a = 0;
    for (int i = 0; i < n; i++) {
        int pos = 0;
        for (int j = 0; used[i] && code[i] >= 0 && j < n; j++) pos |= j != i && used[j] && code[j] == code[i];
        a += pos;
    }
    return a;
}

/* 1 when every row of dh [n, d] of an unused text is exactly 0. */
static int unused_rows_zero(const float *dh, const unsigned char *used, int n, int d) {
    int ok = 1;
    for (int i = 0; i < n; i++)
        if (!used[i]) ok &= tl_max_abs(dh + (size_t)i * d, (size_t)d) == 0.0;
    return ok;
}

/* ---- PyTorch reference ----------------------------------------------------------------------- */

/* Case c of kind "rel" or "con": space from metadata <kind>_<c>_space ("u": P, dP stored; "h":
 * neither, P = NULL and a dummy dP that must stay 0). */
static void reference(const ecr_st_file *f, const char *kind, int c) {
    int is_con = !strcmp(kind, "con");
    char key[32];
    snprintf(key, sizeof key, "%s_%d_space", kind, c);
    const char *sp = ecr_st_meta(f, key);
    CHECK_MSG(sp && (!strcmp(sp, "u") || !strcmp(sp, "h")), "fixture metadata '%s' missing or not u / h", key);
    if (!sp) return;
    int in_u = !strcmp(sp, "u");
    snprintf(key, sizeof key, is_con ? "%s_%d_n_anchor" : "%s_%d_n_used", kind, c);
    int want_count = (int)tl_meta_num(f, key);
    float tau = 0;
    if (is_con) {
        snprintf(key, sizeof key, "%s_%d_tau", kind, c);
        tau = (float)tl_meta_num(f, key);
    }
    const ecr_tensor_view *P = in_u ? tl_fx(f, kind, c, "P", ECR_F32) : NULL;
    const ecr_tensor_view *dPr = in_u ? tl_fx(f, kind, c, "dP", ECR_F32) : NULL;
    const ecr_tensor_view *h = tl_fx(f, kind, c, "h", ECR_F32), *u = tl_fx(f, kind, c, "used", ECR_I32);
    const ecr_tensor_view *t = is_con ? NULL : tl_fx(f, kind, c, "t", ECR_F32);
    const ecr_tensor_view *code = is_con ? tl_fx(f, kind, c, "code", ECR_I32) : NULL;
    const ecr_tensor_view *L = tl_fx(f, kind, c, "loss", ECR_F32), *dhr = tl_fx(f, kind, c, "dh", ECR_F32);
    if ((in_u && (!P || !dPr)) || !h || !u || !L || !dhr || (is_con ? !code : !t)) return;
    int n = (int)h->shape[0], d = (int)h->shape[1], D = in_u ? (int)P->shape[0] : d;
    int Dt = is_con ? 0 : (int)t->shape[1];
    unsigned char *used = tl_fx_flags(u);
    float *dP = calloc((size_t)D * d, sizeof *dP), *dh = calloc((size_t)n * d, sizeof *dh);
    const float *Pd = in_u ? P->data : NULL;
    int count = -1;
    double loss = is_con ? con_run(Pd, h->data, code->data, used, n, d, D, tau, dP, dh, &count)
                         : rel_run(Pd, h->data, t->data, used, n, d, D, Dt, dP, dh, &count);
    double eP = in_u ? tl_rel_err(dP, dPr->data, (size_t)D * d) : tl_max_abs(dP, (size_t)D * d);
    double eh = tl_rel_err(dh, dhr->data, (size_t)n * d);
    int want = 0;
    if (is_con) {
        want = count_anchors(code->data, used, n);
    } else {
        for (int i = 0; i < n; i++) want += used[i];
    }
    char extra[32];
    if (is_con) snprintf(extra, sizeof extra, "tau %.2f", (double)tau);
    else snprintf(extra, sizeof extra, "target dim %d", Dt);
    fprintf(stderr, "    %s case %d (space %s, %s, %d %s of %d texts, d %d, D %d): loss %.6f (torch %.6f), "
                    "%s %.1e, dh rel err %.1e\n", kind, c, sp, extra, count, is_con ? "anchors" : "used", n, d, D,
            loss, tl_fx1(L), in_u ? "dP rel err" : "dummy dP max", eP, eh);
    CHECK_CLOSE(loss, tl_fx1(L), 1e-6 * fabs(tl_fx1(L)));
    CHECK(tl_fx1(L) > 0);
    if (in_u) CHECK(eP < 1e-5);
    else CHECK(eP == 0.0);
    CHECK(eh < 1e-5);
    CHECK_MSG(count == want && want == want_count && want > 1 && want < n, "count %d, here %d, fixture %d",
              count, want, want_count);
    CHECK(unused_rows_zero(dh, used, n, d));
    free(used);
    free(dP);
    free(dh);
}

static void reference_orth(const ecr_st_file *f, int c) {
    const ecr_tensor_view *P = tl_fx(f, "orth", c, "P", ECR_F32), *L = tl_fx(f, "orth", c, "loss", ECR_F32);
    const ecr_tensor_view *dPr = tl_fx(f, "orth", c, "dP", ECR_F32);
    if (!P || !L || !dPr) return;
    int D = (int)P->shape[0], d = (int)P->shape[1];
    float *dP = calloc((size_t)D * d, sizeof *dP);
    ecr_orth *w = NULL;
    double loss = NAN;
    CHECK_OK(ecr_orth_create(&w));
    if (w) {
        CHECK_OK(ecr_orth_forward(w, P->data, D, d, &loss));
        ecr_orth_backward(w, P->data, 1.0f, dP);
    }
    ecr_orth_free(w);
    double e = tl_rel_err(dP, dPr->data, (size_t)D * d);
    fprintf(stderr, "    orth case %d (D %d, d %d): loss %.6f (torch %.6f), dP rel err %.1e\n", c, D, d, loss,
            tl_fx1(L), e);
    CHECK_CLOSE(loss, tl_fx1(L), 1e-6 * fabs(tl_fx1(L)));
    CHECK(e < 1e-5);
    free(dP);
}

/* mres (loss_mres.c) through its term operations: two further anchor sets with their own
 * codes, a text without tokens; the fixture's "mres.*" tensors (no case index). */
static const ecr_tensor_view *fx_mres(const ecr_st_file *f, const char *field, ecr_dtype dt) {
    char name[64];
    snprintf(name, sizeof name, "mres.%s", field);
    const ecr_tensor_view *v = ecr_st_find(f, name);
    CHECK_MSG(v && v->dtype == dt, "fixture tensor '%s' missing or not %s", name, ecr_dtype_name(dt));
    return v && v->dtype == dt ? v : NULL;
}

static void reference_mres(const ecr_st_file *f) {
    const ecr_tensor_view *P = fx_mres(f, "P", ECR_F32), *h = fx_mres(f, "h", ECR_F32);
    const ecr_tensor_view *u = fx_mres(f, "used", ECR_I32), *L = fx_mres(f, "loss", ECR_F32);
    const ecr_tensor_view *dPr = fx_mres(f, "dP", ECR_F32), *dhr = fx_mres(f, "dh", ECR_F32);
    const ecr_tensor_view *A[2] = {fx_mres(f, "A0", ECR_F32), fx_mres(f, "A1", ECR_F32)};
    const ecr_tensor_view *C[2] = {fx_mres(f, "code0", ECR_I32), fx_mres(f, "code1", ECR_I32)};
    if (!P || !h || !u || !L || !dPr || !dhr || !A[0] || !A[1] || !C[0] || !C[1]) return;
    int D = (int)P->shape[0], d = (int)P->shape[1], n = (int)h->shape[0];
    CHECK(n <= 16);
    if (n > 16) return;
    float tau = (float)tl_meta_num(f, "mres_tau");
    uint16_t codes[2][16];
    ecr_anchors an[2];
    for (int r = 0; r < 2; r++) {
        memset(&an[r], 0, sizeof an[r]);
        an[r].k = (int)A[r]->shape[0], an[r].dim = D, an[r].rows = n, an[r].tau = tau;
        an[r].anchors = (float *)(uintptr_t)A[r]->data, an[r].codes = codes[r];
        for (int i = 0; i < n; i++) codes[r][i] = (uint16_t)((const int32_t *)C[r]->data)[i];
    }
    ecr_anchors main_an = an[0]; /* ECR's own anchors: mres reads only their dim and rows */
    ecr_train_opts tr;
    ecr_train_opts_default(&tr);
    tr.mres_weight = 1.0f;
    ecr_objective_opts oo = {0};
    oo.anchors = &main_an, oo.ecr_tau = tau, oo.mres[0] = &an[0], oo.mres[1] = &an[1], oo.n_mres = 2;
    oo.train = &tr;
    int64_t ids[16];
    for (int i = 0; i < n; i++) ids[i] = i;
    ecr_batch b;
    memset(&b, 0, sizeof b);
    b.n_texts = n, b.text_id = ids;
    unsigned char *has = tl_fx_flags(u);
    ecr_term_step x = {0};
    x.o = &oo, x.b = &b, x.has_tokens = has, x.h = h->data, x.P = P->data, x.n = n, x.d = d, x.D = D;
    const ecr_term_ops *ops = &ecr_term_ops_mres;
    CHECK(ops->on(&oo) && ops->weight(&oo, 0.5) == 1.0f);
    float *dP = calloc((size_t)D * d, sizeof *dP), *dh = calloc((size_t)n * d, sizeof *dh);
    ecr_objective_terms t;
    memset(&t, 0, sizeof t);
    void *state = NULL;
    CHECK_OK(ops->create(&oo, NULL, &state));
    if (state && dP && dh) {
        CHECK_OK(ops->forward(state, &x, &t));
        ops->backward(state, &x, 1.0f, dP, dh);
    }
    ops->destroy(state);
    double eP = tl_rel_err(dP, dPr->data, (size_t)D * d), eh = tl_rel_err(dh, dhr->data, (size_t)n * d);
    fprintf(stderr, "    mres (K %d and %d, tau %g): loss %.6f (torch %.6f), dP rel err %.1e, dh %.1e\n", an[0].k,
            an[1].k, (double)tau, t.mres, tl_fx1(L), eP, eh);
    CHECK_CLOSE(t.mres, tl_fx1(L), 1e-6 * fabs(tl_fx1(L)));
    CHECK(eP < 1e-5 && eh < 1e-5);
    for (int i = 0; i < n; i++)
        if (!has[i]) CHECK(tl_max_abs(dh + (size_t)i * d, (size_t)d) == 0.0);
    oo.n_mres = 0; /* no further set: off */
    CHECK(!ops->on(&oo));
    oo.n_mres = 2, oo.anchors = NULL; /* without ECR: off */
    CHECK(!ops->on(&oo));
    free(has);
    free(dP);
    free(dh);
}

static void test_reference(void) {
    ecr_st_file *f = NULL;
    CHECK_OK(ecr_st_open(FIXTURE, &f));
    if (!f) return;
    for (int c = 0; c < 2; c++) reference(f, "rel", c);
    for (int c = 0; c < 2; c++) reference(f, "con", c);
    for (int c = 0; c < 2; c++) reference_orth(f, c);
    reference_mres(f);
    ecr_st_close(f);
}

/* ---- finite differences on the losses alone ------------------------------------------------ */

enum { FN = 9, Fd = 5, FD_ = 6, FDt = 4 };
static float g_P[FD_ * Fd], g_h[FN * Fd], g_t[FN * FDt];
static const float *g_Pp;   /* g_P (space u) or NULL (space h) */
static int g_D;             /* FD_ (space u) or Fd (space h)  */
static float g_tau;
/* code 0: texts 0 and 5 (2 is unused); code 1: 1, 4, 8; code 2: 3 alone (7 unused); code 3: 6 */
static int32_t g_code[FN] = {0, 1, 0, 2, 1, 0, 3, 2, 1};
static unsigned char g_used[FN] = {1, 1, 0, 1, 1, 1, 1, 0, 1};
enum { G_USED = 7, G_ANCHORS = 5 };

static double loss_rel(void) {
    ecr_rel *w = NULL;
    double L = NAN;
    if (ecr_rel_create(&w) == ECR_OK) ecr_rel_forward(w, g_Pp, g_h, g_t, g_used, FN, Fd, g_D, FDt, &L, NULL);
    ecr_rel_free(w);
    return L;
}

static double loss_con(void) {
    ecr_con *w = NULL;
    double L = NAN;
    if (ecr_con_create(&w) == ECR_OK) ecr_con_forward(w, g_Pp, g_h, g_code, g_used, FN, Fd, g_D, g_tau, &L, NULL);
    ecr_con_free(w);
    return L;
}

static double loss_orth(void) {
    ecr_orth *w = NULL;
    double L = NAN;
    if (ecr_orth_create(&w) == ECR_OK) ecr_orth_forward(w, g_P, FD_, Fd, &L);
    ecr_orth_free(w);
    return L;
}

/* Random P, h, t; the targets of texts of one code cluster around the first of them. */
static void fd_setup(uint64_t seed) {
    tl_fill_normal(g_P, FD_ * Fd, 0.5, seed);
    tl_fill_normal(g_h, FN * Fd, 1.0, seed + 1);
    tl_fill_normal(g_t, FN * FDt, 1.0, seed + 2);
    for (int i = 1; i < FN; i++) {
        int j = 0;
        while (g_code[j] != g_code[i]) j++;
        if (j == i) continue;
        for (int a = 0; a < FDt; a++) g_t[i * FDt + a] = g_t[j * FDt + a] + 0.2f * g_t[i * FDt + a];
    }
}

/* Selects the space: 0 = u (P), 1 = h (no P). */
static void fd_space(int in_h) {
    g_Pp = in_h ? NULL : g_P;
    g_D = in_h ? Fd : FD_;
}

/* orth: finite differences; an isometry (orthonormal columns) gives 0 and no gradient; the
 * result does not depend on the thread count; the backward accumulates. */
static void test_orth(void) {
    fd_setup(99);
    ecr_orth *w = NULL;
    CHECK_OK(ecr_orth_create(&w));
    if (!w) return;
    float dP[FD_ * Fd] = {0}, dP2[FD_ * Fd] = {0};
    double L = NAN, L1 = NAN;
    CHECK_OK(ecr_orth_forward(w, g_P, FD_, Fd, &L));
    ecr_orth_backward(w, g_P, 1.0f, dP);
    double e = tl_fd_check("orth dP", loss_orth, g_P, dP, FD_ * Fd);
    fprintf(stderr, "    FD orth: loss %.5f, worst |fd - an| / max(1, max|an|) %.1e\n", L, e);
    CHECK(L > 0);
    ecr_orth_backward(w, g_P, 1.0f, dP2);
    ecr_orth_backward(w, g_P, 1.0f, dP2);
    double acc = 0;
    for (int i = 0; i < FD_ * Fd; i++) acc = tl_nanmax(acc, fabs(dP2[i] - 2.0 * dP[i]));
    CHECK(acc <= 1e-6 * tl_max_abs(dP, FD_ * Fd));
    ecr_set_threads(1);
    CHECK_OK(ecr_orth_forward(w, g_P, FD_, Fd, &L1));
    ecr_set_threads(2);
    CHECK(L1 == L);
    /* columns of the identity: P^T P = I exactly */
    float I[FD_ * Fd] = {0}, dI[FD_ * Fd] = {0};
    for (int a = 0; a < Fd; a++) I[a * Fd + a] = 1.0f;
    CHECK_OK(ecr_orth_forward(w, I, FD_, Fd, &L));
    ecr_orth_backward(w, I, 1.0f, dI);
    CHECK(L == 0 && tl_max_abs(dI, FD_ * Fd) == 0.0);
    CHECK_STATUS(ecr_orth_forward(w, g_P, 0, Fd, &L), ECR_E_INVALID);
    ecr_orth_free(w);
}

static void test_fd_losses(void) {
    fd_setup(4321);
    for (int in_h = 0; in_h < 2; in_h++) {
        fd_space(in_h);
        const char *sp = in_h ? "h" : "u";
        float dP[FD_ * Fd] = {0}, dh[FN * Fd] = {0};
        int m = -1;
        double L = rel_run(g_Pp, g_h, g_t, g_used, FN, Fd, g_D, FDt, in_h ? NULL : dP, dh, &m);
        CHECK(m == G_USED && L > 0 && unused_rows_zero(dh, g_used, FN, Fd));
        double e1 = in_h ? 0 : tl_fd_check("rel dP", loss_rel, g_P, dP, FD_ * Fd);
        double e2 = tl_fd_check("rel dh", loss_rel, g_h, dh, FN * Fd);
        fprintf(stderr, "    FD rel space %s: loss %.5f, worst |fd - an| / max(1, max|an|) dP %.1e, dh %.1e\n",
                sp, L, e1, e2);
        float taus[2] = {0.5f, 0.1f};
        for (int ti = 0; ti < 2; ti++) {
            g_tau = taus[ti];
            memset(dP, 0, sizeof dP);
            memset(dh, 0, sizeof dh);
            int na = -1;
            L = con_run(g_Pp, g_h, g_code, g_used, FN, Fd, g_D, g_tau, in_h ? NULL : dP, dh, &na);
            CHECK(na == G_ANCHORS && na == count_anchors(g_code, g_used, FN) && L > 0);
            e1 = in_h ? 0 : tl_fd_check("con dP", loss_con, g_P, dP, FD_ * Fd);
            e2 = tl_fd_check("con dh", loss_con, g_h, dh, FN * Fd);
            fprintf(stderr, "    FD con space %s tau %.1f: loss %.5f, worst dP %.1e, dh %.1e\n", sp,
                    (double)g_tau, L, e1, e2);
        }
    }
}

/* ---- edge cases ------------------------------------------------------------------------------- */

static void test_rel_edges(void) {
    fd_setup(78);
    float dP[FD_ * Fd], dh[FN * Fd];
    unsigned char none[FN] = {0}, one[FN] = {0};
    one[4] = 1;
    /* no used text, or one: 0, m, no gradient (both spaces) */
    for (int in_h = 0; in_h < 2; in_h++) {
        fd_space(in_h);
        for (int k = 0; k < 2; k++) {
            memset(dP, 0, sizeof dP);
            memset(dh, 0, sizeof dh);
            int m = -1;
            double L = rel_run(g_Pp, g_h, g_t, k ? one : none, FN, Fd, g_D, FDt, dP, dh, &m);
            CHECK_MSG(L == 0 && m == k && tl_max_abs(dP, FD_ * Fd) == 0.0 && tl_max_abs(dh, FN * Fd) == 0.0,
                      "space %s, %d used: loss %g, m %d", in_h ? "h" : "u", k, L, m);
        }
    }
    /* a student equal to its targets: 0, no gradient. Space u: P = I (D = d), t = 2 h; space h: t = 3 h */
    {
        enum { n = 7, d = 4 };
        float I[d * d] = {0}, h[n * d], t[n * d], gP[d * d] = {0}, gh[n * d] = {0};
        for (int a = 0; a < d; a++) I[a * d + a] = 1;
        tl_fill_normal(h, n * d, 1.0, 6);
        for (int i = 0; i < n * d; i++) t[i] = 2.0f * h[i];
        int m = -1;
        double L = rel_run(I, h, t, NULL, n, d, d, d, gP, gh, &m);
        CHECK_MSG(fabs(L) < 1e-12 && m == n && tl_max_abs(gP, d * d) < 1e-7 && tl_max_abs(gh, n * d) < 1e-7,
                  "space u: loss %g, m %d, |dP| %g, |dh| %g", L, m, tl_max_abs(gP, d * d), tl_max_abs(gh, n * d));
        for (int i = 0; i < n * d; i++) t[i] = 3.0f * h[i];
        memset(gh, 0, sizeof gh);
        L = rel_run(NULL, h, t, NULL, n, d, d, d, NULL, gh, &m);
        CHECK_MSG(fabs(L) < 1e-12 && m == n && tl_max_abs(gh, n * d) < 1e-7, "space h: loss %g, |dh| %g", L,
                  tl_max_abs(gh, n * d));
        /* and a student away from its targets is not 0 there (the check above can fail) */
        t[0] = -t[0];
        L = rel_run(NULL, h, t, NULL, n, d, d, d, NULL, gh, &m);
        CHECK(L > 1e-6);
    }
    /* invariance: P x 3 and t x 0.1 give the same loss and dh; dP scales by 1/3 */
    fd_space(0);
    float P3[FD_ * Fd], t01[FN * FDt], dP0[FD_ * Fd] = {0}, dh0[FN * Fd] = {0}, dP3[FD_ * Fd] = {0},
          dh3[FN * Fd] = {0};
    for (int i = 0; i < FD_ * Fd; i++) P3[i] = 3.0f * g_P[i];
    for (int i = 0; i < FN * FDt; i++) t01[i] = 0.1f * g_t[i];
    int m = -1;
    double L0 = rel_run(g_P, g_h, g_t, g_used, FN, Fd, FD_, FDt, dP0, dh0, &m);
    double L3 = rel_run(P3, g_h, t01, g_used, FN, Fd, FD_, FDt, dP3, dh3, &m);
    for (int i = 0; i < FD_ * Fd; i++) dP3[i] *= 3.0f;
    double eP = tl_rel_err(dP3, dP0, FD_ * Fd), eh = tl_rel_err(dh3, dh0, FN * Fd);
    fprintf(stderr, "    rel scale invariance: loss %.9f vs %.9f, 3 dP(3P) rel err %.1e, dh %.1e\n", L3, L0,
            eP, eh);
    CHECK(L0 > 0);
    CHECK_CLOSE(L3, L0, 1e-6 * L0);
    CHECK(eP < 1e-5 && eh < 1e-5);
    /* the rows (h and t) of unused texts take no part: same bits */
    float h2[FN * Fd], t2[FN * FDt], dP2[FD_ * Fd] = {0}, dh2[FN * Fd] = {0};
    memcpy(h2, g_h, sizeof h2);
    memcpy(t2, g_t, sizeof t2);
    tl_fill_normal(h2 + 2 * Fd, Fd, 5.0, 91);
    tl_fill_normal(t2 + 7 * FDt, FDt, 5.0, 92);
    double L2 = rel_run(g_P, h2, t2, g_used, FN, Fd, FD_, FDt, dP2, dh2, &m);
    CHECK(L2 == L0 && !memcmp(dP2, dP0, sizeof dP0) && !memcmp(dh2, dh0, sizeof dh0));
    /* backward accumulates: a second call doubles the gradient */
    ecr_rel *w = NULL;
    CHECK_OK(ecr_rel_create(&w));
    if (w) {
        for (int in_h = 0; in_h < 2; in_h++) {
            fd_space(in_h);
            float a1[FD_ * Fd] = {0}, b1[FN * Fd] = {0}, a2[FD_ * Fd] = {0}, b2[FN * Fd] = {0};
            double L = 0;
            CHECK_OK(ecr_rel_forward(w, g_Pp, g_h, g_t, g_used, FN, Fd, g_D, FDt, &L, NULL));
            ecr_rel_backward(w, g_Pp, g_h, 1.0f, a1, b1);
            ecr_rel_backward(w, g_Pp, g_h, 1.0f, a2, b2);
            ecr_rel_backward(w, g_Pp, g_h, 1.0f, a2, b2);
            for (int i = 0; i < FD_ * Fd; i++) a1[i] *= 2.0f;
            for (int i = 0; i < FN * Fd; i++) b1[i] *= 2.0f;
            CHECK(tl_max_abs(b1, FN * Fd) > 0 && (in_h || tl_max_abs(a1, FD_ * Fd) > 0));
            CHECK(tl_rel_err(a2, a1, FD_ * Fd) < 1e-6 && tl_rel_err(b2, b1, FN * Fd) < 1e-6);
        }
    }
    ecr_rel_free(w);
    ecr_rel_free(NULL);
}

static void test_con_edges(void) {
    fd_setup(79);
    float dP[FD_ * Fd], dh[FN * Fd];
    int32_t distinct[FN];
    for (int i = 0; i < FN; i++) distinct[i] = 10 + i;
    unsigned char none[FN] = {0}, all[FN];
    memset(all, 1, sizeof all);
    /* all codes distinct, or no used text: 0, no anchor, no gradient (both spaces) */
    for (int in_h = 0; in_h < 2; in_h++) {
        fd_space(in_h);
        for (int k = 0; k < 2; k++) {
            memset(dP, 0, sizeof dP);
            memset(dh, 0, sizeof dh);
            int na = -1;
            double L = k ? con_run(g_Pp, g_h, g_code, none, FN, Fd, g_D, 0.2f, dP, dh, &na)
                         : con_run(g_Pp, g_h, distinct, all, FN, Fd, g_D, 0.2f, dP, dh, &na);
            CHECK_MSG(L == 0 && na == 0 && tl_max_abs(dP, FD_ * Fd) == 0.0 && tl_max_abs(dh, FN * Fd) == 0.0,
                      "space %s, %s: loss %g, anchors %d", in_h ? "h" : "u", k ? "none used" : "distinct codes",
                      L, na);
        }
    }
    /* the rows of h of unused texts take no part (x_i = 0 for them, in both spaces): same bits, and
     * no gradient on them */
    for (int in_h = 0; in_h < 2; in_h++) {
        fd_space(in_h);
        float h2[FN * Fd], p1[FD_ * Fd] = {0}, p2[FD_ * Fd] = {0}, d1[FN * Fd] = {0}, d2[FN * Fd] = {0};
        memcpy(h2, g_h, sizeof h2);
        memset(h2 + 2 * Fd, 0, Fd * sizeof(float));
        tl_fill_normal(h2 + 7 * Fd, Fd, 5.0, 93);
        int na1 = -1, na2 = -1;
        double L1 = con_run(g_Pp, g_h, g_code, g_used, FN, Fd, g_D, 0.2f, p1, d1, &na1);
        double L2 = con_run(g_Pp, h2, g_code, g_used, FN, Fd, g_D, 0.2f, p2, d2, &na2);
        CHECK_MSG(L1 == L2 && L1 > 0 && na1 == G_ANCHORS && na2 == G_ANCHORS, "space %s: loss %.17g vs %.17g",
                  in_h ? "h" : "u", L1, L2);
        CHECK_MSG(!memcmp(p1, p2, sizeof p1) && !memcmp(d1, d2, sizeof d1), "space %s: gradients differ",
                  in_h ? "h" : "u");
        CHECK_MSG(unused_rows_zero(d1, g_used, FN, Fd) && unused_rows_zero(d2, g_used, FN, Fd),
                  "space %s: |dh| of unused rows %g, %g", in_h ? "h" : "u", tl_max_abs(d1 + 2 * Fd, Fd),
                  tl_max_abs(d2 + 2 * Fd, Fd));
    }
    /* space h, every text used: the InfoNCE of ecr_infonce on h grouped by code */
    {
        float d1[FN * Fd] = {0}, d2[FN * Fd] = {0};
        int na1 = -1, na2 = -1;
        double L1 = con_run(NULL, g_h, g_code, all, FN, Fd, Fd, 0.2f, NULL, d1, &na1), L2 = NAN;
        ecr_infonce *nw = NULL;
        CHECK_OK(ecr_infonce_create(&nw));
        if (nw) {
            CHECK_OK(ecr_infonce_forward(nw, g_h, g_code, FN, Fd, 0.2f, &L2, &na2));
            ecr_infonce_backward(nw, 1.0f, d2);
        }
        ecr_infonce_free(nw);
        double e = tl_rel_err(d1, d2, FN * Fd);
        fprintf(stderr, "    con space h vs ecr_infonce: loss %.9f vs %.9f, dh rel err %.1e\n", L1, L2, e);
        CHECK(L2 > 0 && na1 == na2 && na1 == count_anchors(g_code, all, FN));
        CHECK_CLOSE(L1, L2, 1e-12 * L2);
        CHECK(e < 1e-6);
    }
    /* space u: ecr_infonce_forward_d on the rows normalize(P h), 0 for unused texts (group -1) */
    {
        double x[FN * FD_];
        int32_t group[FN];
        for (int i = 0; i < FN; i++) {
            double s = 0;
            for (int a = 0; a < FD_; a++) {
                double z = 0;
                for (int b = 0; b < Fd; b++) z += (double)g_P[a * Fd + b] * g_h[i * Fd + b];
                x[i * FD_ + a] = g_used[i] ? z : 0.0;
                s += z * z;
            }
            for (int a = 0; a < FD_; a++) x[i * FD_ + a] /= sqrt(s);
            group[i] = g_used[i] ? g_code[i] : -1;
        }
        float gP[FD_ * Fd] = {0}, gh[FN * Fd] = {0};
        int na1 = -1, na2 = -1;
        double L1 = con_run(g_P, g_h, g_code, g_used, FN, Fd, FD_, 0.2f, gP, gh, &na1), L2 = NAN;
        ecr_infonce *nw = NULL;
        CHECK_OK(ecr_infonce_create(&nw));
        if (nw) CHECK_OK(ecr_infonce_forward_d(nw, x, group, FN, FD_, 0.2f, &L2, &na2));
        ecr_infonce_free(nw);
        fprintf(stderr, "    con space u vs ecr_infonce_forward_d on normalize(P h): loss %.9f vs %.9f\n", L1, L2);
        CHECK(L2 > 0 && na1 == na2 && na1 == G_ANCHORS);
        CHECK_CLOSE(L1, L2, 1e-12 * L2);
        /* invariance to the scale of P */
        float P3[FD_ * Fd];
        for (int i = 0; i < FD_ * Fd; i++) P3[i] = 3.0f * g_P[i];
        memset(gP, 0, sizeof gP);
        memset(gh, 0, sizeof gh);
        double L3 = con_run(P3, g_h, g_code, g_used, FN, Fd, FD_, 0.2f, gP, gh, &na1);
        CHECK_CLOSE(L3, L1, 1e-6 * L1);
    }
    /* backward accumulates: a second call doubles the gradient */
    ecr_con *w = NULL;
    CHECK_OK(ecr_con_create(&w));
    if (w) {
        for (int in_h = 0; in_h < 2; in_h++) {
            fd_space(in_h);
            float a1[FD_ * Fd] = {0}, b1[FN * Fd] = {0}, a2[FD_ * Fd] = {0}, b2[FN * Fd] = {0};
            double L = 0;
            CHECK_OK(ecr_con_forward(w, g_Pp, g_h, g_code, g_used, FN, Fd, g_D, 0.2f, &L, NULL));
            ecr_con_backward(w, g_Pp, g_h, 1.0f, a1, b1);
            ecr_con_backward(w, g_Pp, g_h, 1.0f, a2, b2);
            ecr_con_backward(w, g_Pp, g_h, 1.0f, a2, b2);
            for (int i = 0; i < FD_ * Fd; i++) a1[i] *= 2.0f;
            for (int i = 0; i < FN * Fd; i++) b1[i] *= 2.0f;
            CHECK(tl_max_abs(b1, FN * Fd) > 0 && (in_h || tl_max_abs(a1, FD_ * Fd) > 0));
            CHECK(tl_rel_err(a2, a1, FD_ * Fd) < 1e-6 && tl_rel_err(b2, b1, FN * Fd) < 1e-6);
        }
        /* tau must be > 0 */
        double L = 0;
        CHECK_STATUS(ecr_con_forward(w, g_P, g_h, g_code, g_used, FN, Fd, FD_, 0.0f, &L, NULL), ECR_E_INVALID);
    }
    ecr_con_free(w);
    ecr_con_free(NULL);
}

/* Both losses, both spaces, on a realistic step (130 texts, d 24, D 64, targets of dim 32, 40
 * codes, every 9th text unused): the same bits with 1 and 2 threads. */
static void test_threads(void) {
    enum { n = 130, d = 24, D = 64, Dt = 32 };
    float *P = malloc(sizeof(float) * D * d), *h = malloc(sizeof(float) * n * d);
    float *t = malloc(sizeof(float) * n * Dt);
    float *gP[2], *gh[2];
    for (int k = 0; k < 2; k++) gP[k] = malloc(sizeof(float) * D * d), gh[k] = malloc(sizeof(float) * n * d);
    int32_t code[n];
    unsigned char used[n];
    for (int i = 0; i < n; i++) code[i] = (i * 7) % 40, used[i] = i % 9 != 4;
    tl_fill_normal(P, (size_t)D * d, 0.3, 1);
    tl_fill_normal(h, (size_t)n * d, 1.0, 2);
    tl_fill_normal(t, (size_t)n * Dt, 1.0, 3);
    int th = ecr_get_threads();
    for (int kind = 0; kind < 2; kind++)
        for (int in_h = 0; in_h < 2; in_h++) {
            const float *Pp = in_h ? NULL : P;
            int Dx = in_h ? d : D;
            double L[2];
            int cnt[2];
            for (int k = 0; k < 2; k++) {
                ecr_set_threads(k + 1);
                memset(gP[k], 0, sizeof(float) * D * d);
                memset(gh[k], 0, sizeof(float) * n * d);
                L[k] = kind ? con_run(Pp, h, code, used, n, d, Dx, 0.1f, gP[k], gh[k], &cnt[k])
                            : rel_run(Pp, h, t, used, n, d, Dx, Dt, gP[k], gh[k], &cnt[k]);
            }
            int want = kind ? count_anchors(code, used, n) : 0;
            if (!kind)
                for (int i = 0; i < n; i++) want += used[i];
            int same = !memcmp(gP[0], gP[1], sizeof(float) * D * d) && !memcmp(gh[0], gh[1], sizeof(float) * n * d);
            CHECK_MSG(cnt[0] == want && cnt[1] == want && isfinite(L[0]) && L[0] > 0 && L[0] == L[1] && same,
                      "%s space %s: loss %.17g / %.17g, count %d / %d (want %d)", kind ? "con" : "rel",
                      in_h ? "h" : "u", L[0], L[1], cnt[0], cnt[1], want);
        }
    ecr_set_threads(th);
    free(P);
    free(h);
    free(t);
    for (int k = 0; k < 2; k++) free(gP[k]), free(gh[k]);
}

int main(void) {
    RUN(test_reference);
    RUN(test_fd_losses);
    RUN(test_rel_edges);
    RUN(test_con_edges);
    RUN(test_threads);
    RUN(test_orth);
    return test_finish("test_codes");
}
