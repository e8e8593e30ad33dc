/* matmul_bf16.c — bf16 matrix products: oneDNN where the CPU has bf16 matrix units, a
 * reference path elsewhere, and the precision a run uses.
 *
 * A bf16 product takes both inputs in bf16 (fp32 values rounded to nearest even, 8
 * significant bits) and accumulates and writes fp32. Each product of two bf16 values is
 * exact in fp32 (16 significant bits), so every engine computes the same sum of the same
 * terms and differs from another only in the order of the fp32 additions.
 *
 * Engines, tried in this order:
 *   onednn     oneDNN's matmul primitive (libdnnl, built with ECR_HAVE_DNNL). On CPUs with
 *              AMX-BF16 it picks the `brg:avx512_core_amx_bf16` kernels, with AVX512-BF16
 *              `brg:avx512_core_bf16`. oneDNN requests the AMX tile permission
 *              (arch_prctl ARCH_REQ_XCOMP_PERM) itself.
 *   reference  widens both inputs to fp32 and calls ecr_sgemm (OpenBLAS): the same numbers
 *              up to summation order, at fp32 speed or below. It exists so the bf16 path is
 *              tested on every machine; runs use it only when ECR_BF16_EMULATE=1 is set.
 *
 * Primitives are cached by shape, transposition, strides and beta (a process-wide table
 * behind a mutex), so a training step creates none after its first. */
#include "ecr.h"
#include "matmul.h"
#include "ops.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef ECR_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

/* ---- fp32 <-> bf16, many at a time ---------------------------------------------------- */

/* Round to nearest even on the bit pattern; NaN stays a quiet NaN with its sign and top
 * payload bits (ecr_f32_to_bf16's rules, written so gcc vectorises the loop). */
void ecr_bf16_from_f32(uint16_t *dst, const float *src, size_t n) {
    ECR_OMP(parallel for schedule(static) if (n > 65536))
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &src[i], sizeof b);
        uint32_t r = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
        uint32_t q = (b >> 16) | 0x40u;
        dst[i] = (uint16_t)((b & 0x7FFFFFFFu) > 0x7F800000u ? q : r);
    }
}

void ecr_bf16_to_f32_n(float *dst, const uint16_t *src, size_t n) {
    ECR_OMP(parallel for schedule(static) if (n > 65536))
    for (size_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &b, sizeof b);
    }
}

/* ---- the CPU ------------------------------------------------------------------------- */

/* 1 when the CPU reports AMX-BF16 (CPUID.7.0:EDX[22]) or AVX512-BF16 (CPUID.7.1:EAX[5])
 * and the OS saves the AVX-512 state (XCR0 bits 5-7). */
static int cpu_has_bf16(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6u) != 0xE6u) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    int amx = (d >> 22) & 1u;
    unsigned a1 = 0, b1, c1, d1;
    if (a >= 1) __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1);
    return amx || ((a1 >> 5) & 1u);
}

static char g_bf16_impl[64];    /* oneDNN's bf16 kernels, e.g. brg:avx512_core_amx_bf16 */

/* ---- oneDNN ---------------------------------------------------------------------------- */

#ifdef ECR_HAVE_DNNL
typedef struct onednn_key {
    int dt, ta, tb, M, N, K, lda, ldb, ldc, accumulate;
    float beta;
} onednn_key;

enum { CACHE_SIZE = 128 };
static struct {
    onednn_key key;
    dnnl_primitive_t prim;
    char impl[64];
} g_cache[CACHE_SIZE];
static int g_cache_n, g_cache_next;
static dnnl_engine_t g_engine;
static dnnl_stream_t g_stream;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_dnnl_ok;           /* engine and stream exist                        */
static int g_bf16_ok;           /* a bf16 matmul primitive can be created         */

static void onednn_init(void) {
    if (dnnl_engine_create(&g_engine, dnnl_cpu, 0) != dnnl_success) return;
    if (dnnl_stream_create(&g_stream, g_engine, dnnl_stream_default_flags) != dnnl_success) {
        dnnl_engine_destroy(g_engine);
        return;
    }
    g_dnnl_ok = 1;
}

/* Creates the primitive for `k`, or NULL when oneDNN has no implementation for it. */
static dnnl_primitive_t onednn_make(const onednn_key *k, char *impl, size_t impl_len) {
    dnnl_data_type_t dt = k->dt == ECR_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {k->M, k->K}, db = {k->K, k->N}, dc = {k->M, k->N};
    dnnl_dims_t sa = {k->ta ? 1 : k->lda, k->ta ? k->lda : 1};
    dnnl_dims_t sb = {k->tb ? 1 : k->ldb, k->tb ? k->ldb : 1};
    dnnl_dims_t sc = {k->ldc, 1};
    if (dnnl_memory_desc_init_by_strides(&a, 2, da, dt, sa) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&b, 2, db, dt, sb) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&c, 2, dc, dnnl_f32, sc) != dnnl_success)
        return NULL;
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) != dnnl_success) return NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    int ok = dnnl_primitive_attr_create(&attr) == dnnl_success;
    if (ok && k->accumulate) {
        ok = dnnl_post_ops_create(&po) == dnnl_success &&
             dnnl_post_ops_append_sum(po, k->beta) == dnnl_success &&
             dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
    }
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    if (ok && dnnl_primitive_desc_create(&pd, &md, attr, g_engine, NULL) == dnnl_success) {
        const char *s = NULL;
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) == dnnl_success && s)
            snprintf(impl, impl_len, "%s", s);
        if (dnnl_primitive_create(&p, pd) != dnnl_success) p = NULL;
        dnnl_primitive_desc_destroy(pd);
    }
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return p;
}

/* The cached primitive for `k` (created on first use), or NULL. Holds g_lock. */
static dnnl_primitive_t onednn_get(const onednn_key *k) {
    for (int i = 0; i < g_cache_n; i++)
        if (!memcmp(&g_cache[i].key, k, sizeof *k)) return g_cache[i].prim;
    char impl[64] = "";
    dnnl_primitive_t p = onednn_make(k, impl, sizeof impl);
    if (!p) return NULL;
    int slot = g_cache_n < CACHE_SIZE ? g_cache_n++ : (g_cache_next++ % CACHE_SIZE);
    if (g_cache[slot].prim) dnnl_primitive_destroy(g_cache[slot].prim);
    g_cache[slot].key = *k;
    g_cache[slot].prim = p;
    snprintf(g_cache[slot].impl, sizeof g_cache[slot].impl, "%s", impl);
    return p;
}

/* Runs C = op(A) op(B) (+ beta C) through oneDNN; 0 when oneDNN cannot. */
static int onednn_gemm(int dt, int ta, int tb, int M, int N, int K, const void *A, int lda,
                       const void *B, int ldb, float beta, float *C, int ldc) {
    pthread_once(&g_once, onednn_init);
    if (!g_dnnl_ok) return 0;
    onednn_key k;
    memset(&k, 0, sizeof k); /* padding bytes take part in memcmp */
    k = (onednn_key){dt, ta, tb, M, N, K, lda, ldb, ldc, beta != 0.0f, beta != 0.0f ? beta : 0.0f};
    pthread_mutex_lock(&g_lock);
    dnnl_primitive_t p = onednn_get(&k);
    int ok = 0;
    if (p) {
        const_dnnl_primitive_desc_t pd = NULL;
        dnnl_primitive_get_primitive_desc(p, &pd);
        const dnnl_memory_desc_t *ma = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *mb = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *mc = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        dnnl_memory_t xa = NULL, xb = NULL, xc = NULL;
        if (dnnl_memory_create(&xa, ma, g_engine, (void *)A) == dnnl_success &&
            dnnl_memory_create(&xb, mb, g_engine, (void *)B) == dnnl_success &&
            dnnl_memory_create(&xc, mc, g_engine, C) == dnnl_success) {
            dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, xa}, {DNNL_ARG_WEIGHTS, xb}, {DNNL_ARG_DST, xc}};
            ok = dnnl_primitive_execute(p, g_stream, 3, args) == dnnl_success &&
                 dnnl_stream_wait(g_stream) == dnnl_success;
        }
        if (xa) dnnl_memory_destroy(xa);
        if (xb) dnnl_memory_destroy(xb);
        if (xc) dnnl_memory_destroy(xc);
    }
    pthread_mutex_unlock(&g_lock);
    return ok;
}

/* Whether oneDNN makes a bf16 matmul here, and with which kernels. */
static void probe_bf16(void) {
    pthread_once(&g_once, onednn_init);
    if (!g_dnnl_ok) return;
    onednn_key k;
    memset(&k, 0, sizeof k);
    k = (onednn_key){ECR_BF16, 0, 1, 256, 256, 256, 256, 256, 256, 0, 0.0f};
    pthread_mutex_lock(&g_lock);
    dnnl_primitive_t p = onednn_make(&k, g_bf16_impl, sizeof g_bf16_impl);
    g_bf16_ok = p != NULL;
    if (p) dnnl_primitive_destroy(p);   /* a probe: the cache makes the ones used */
    pthread_mutex_unlock(&g_lock);
}
#endif

/* ---- the engines ------------------------------------------------------------------------- */

static pthread_once_t g_probe_once = PTHREAD_ONCE_INIT;
static int g_hw;                /* bf16 hardware and oneDNN bf16 kernels: auto picks bf16 */
static int g_onednn;            /* oneDNN makes bf16 primitives (with or without hardware) */
static int g_emulate;           /* ECR_BF16_EMULATE=1: bf16 allowed on the reference path  */
static char g_engine_desc[224];
static char g_why[128];         /* why oneDNN makes no bf16 primitive here           */

static void probe(void) {
#ifdef ECR_HAVE_DNNL
    probe_bf16();
    g_onednn = g_bf16_ok;
#endif
    g_hw = g_onednn && cpu_has_bf16();
    const char *e = getenv("ECR_BF16_EMULATE");
    g_emulate = e && !strcmp(e, "1");
#ifdef ECR_HAVE_DNNL
    if (!g_dnnl_ok)
        snprintf(g_why, sizeof g_why, "oneDNN could not start");
    else if (!g_onednn)
        snprintf(g_why, sizeof g_why, "this CPU has neither AMX-BF16 nor AVX512-BF16 (oneDNN has no bf16 matmul for it)");
#else
    snprintf(g_why, sizeof g_why, "ecr was built without oneDNN (install libdnnl-dev and rebuild)");
#endif
    if (g_onednn)
        snprintf(g_engine_desc, sizeof g_engine_desc, "oneDNN %s", g_bf16_impl);
    else if (g_emulate)
        snprintf(g_engine_desc, sizeof g_engine_desc, "reference engine (ECR_BF16_EMULATE=1; %s)", g_why);
    else
        snprintf(g_engine_desc, sizeof g_engine_desc, "none: %s", g_why);
}

const char *ecr_bf16_engine(void) {
    pthread_once(&g_probe_once, probe);
    return g_engine_desc;
}

int ecr_bf16_onednn(void) {
    pthread_once(&g_probe_once, probe);
    return g_onednn;
}

/* The reference engine: both inputs widened to fp32 (op(A) as stored, with its stride),
 * then one sgemm. Returns 0 when out of memory. */
static int reference_gemm(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda,
                          const uint16_t *B, int ldb, float beta, float *C, int ldc) {
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb;
    float *a = malloc((na + nb) * sizeof(float));
    if (!a) return 0;
    float *b = a + na;
    ecr_bf16_to_f32_n(a, A, na);
    ecr_bf16_to_f32_n(b, B, nb);
    ecr_sgemm(ta, tb, M, N, K, 1.0f, a, lda, b, ldb, beta, C, ldc);
    free(a);
    return 1;
}

ecr_status ecr_gemm_bf16_reference(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda,
                                   const uint16_t *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return ECR_OK;
    if (K <= 0) {
        ecr_sgemm(0, 0, M, N, 0, 1.0f, NULL, 1, NULL, 1, beta, C, ldc);
        return ECR_OK;
    }
    if (!reference_gemm(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc))
        return ecr_fail(ECR_E_NOMEM, "bf16 product %d x %d x %d: out of memory", M, N, K);
    return ECR_OK;
}

/* oneDNN when it makes bf16 primitives here (should one fail to run, the reference engine
 * computes that product instead: the same terms, summed in another order). */
ecr_status ecr_gemm_bf16(int ta, int tb, int M, int N, int K, const uint16_t *A, int lda,
                         const uint16_t *B, int ldb, float beta, float *C, int ldc) {
    pthread_once(&g_probe_once, probe);
#ifdef ECR_HAVE_DNNL
    if (M > 0 && N > 0 && K > 0 && g_onednn && onednn_gemm(ECR_BF16, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc))
        return ECR_OK;
#endif
    return ecr_gemm_bf16_reference(ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

int ecr_sgemm_onednn(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B,
                     int ldb, float beta, float *C, int ldc) {
#ifdef ECR_HAVE_DNNL
    return onednn_gemm(ECR_F32, ta, tb, M, N, K, A, lda, B, ldb, beta, C, ldc);
#else
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb;
    (void)beta, (void)C, (void)ldc;
    return 0;
#endif
}

/* ---- precision ------------------------------------------------------------------------- */

const char *ecr_precision_name(ecr_precision p) {
    switch (p) {
    case ECR_PRECISION_AUTO: return "auto";
    case ECR_PRECISION_FP32: return "fp32";
    case ECR_PRECISION_BF16: return "bf16";
    }
    return "?";
}

ecr_status ecr_precision_parse(const char *s, ecr_precision *out) {
    for (int p = ECR_PRECISION_AUTO; p <= ECR_PRECISION_BF16; p++)
        if (s && !strcmp(s, ecr_precision_name((ecr_precision)p))) {
            *out = (ecr_precision)p;
            return ECR_OK;
        }
    return ecr_fail(ECR_E_INVALID, "precision '%s': expected auto, bf16 or fp32", s ? s : "(null)");
}

ecr_status ecr_precision_resolve(ecr_precision want, ecr_precision *got) {
    pthread_once(&g_probe_once, probe);
    if (want == ECR_PRECISION_AUTO) {
        *got = g_hw ? ECR_PRECISION_BF16 : ECR_PRECISION_FP32;
        return ECR_OK;
    }
    if (want == ECR_PRECISION_FP32) {
        *got = want;
        return ECR_OK;
    }
    if (want != ECR_PRECISION_BF16) return ecr_fail(ECR_E_INVALID, "precision %d is unknown", (int)want);
    if (!g_onednn && !g_emulate)
        return ecr_fail(ECR_E_INVALID, "--precision bf16: %s; use --precision fp32 or auto", g_why);
    *got = want;
    return ECR_OK;
}
