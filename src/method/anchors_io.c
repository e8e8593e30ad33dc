/* anchors_io.c — the anchors file, anchors.safetensors: save and load with every field
 * checked (contract: ecr.h, "Anchors"). */
#include "ecr.h"
#include "anchors_internal.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ecr_status ecr_anchors_save(const ecr_anchors *a, const char *path) {
    ecr_st_writer *w;
    ecr_status st = ecr_st_writer_create(&w);
    if (st) return st;
    int64_t sa[2] = {a->k, a->dim}, sc[1] = {a->rows}, sm[1] = {a->dim}, ss[2] = {a->rows, a->soft};
    char buf[64];
    if (!st) st = ecr_st_writer_add(w, "anchors", ECR_F32, 2, sa, a->anchors);
    if (!st) st = ecr_st_writer_add(w, "codes", ECR_U16, 1, sc, a->codes);
    if (!st) st = ecr_st_writer_add(w, "mean", ECR_F32, 1, sm, a->mean);
    if (!st && a->soft > 0) st = ecr_st_writer_add(w, "soft_idx", ECR_U16, 2, ss, a->soft_idx);
    if (!st && a->soft > 0) st = ecr_st_writer_add(w, "soft_sim", ECR_F32, 2, ss, a->soft_sim);
#define META(key, ...) do { if (!st) { snprintf(buf, sizeof buf, __VA_ARGS__); \
        st = ecr_st_writer_meta(w, key, buf); } } while (0)
    if (!st) st = ecr_st_writer_meta(w, "format", "ecr-anchors-1");
    META("k", "%d", a->k);
    META("dim", "%d", a->dim);
    META("rows", "%lld", (long long)a->rows);
    META("soft", "%d", a->soft);
    for (int prec = 6; prec <= 9 && !st; prec++) {   /* shortest text that reads back */
        snprintf(buf, sizeof buf, "%.*g", prec, (double)a->tau);
        if ((float)strtod(buf, NULL) == a->tau) break;
    }
    if (!st) st = ecr_st_writer_meta(w, "tau", buf);
    META("seed", "%llu", (unsigned long long)a->seed);
    META("iters", "%d", a->iters);
    META("restarts", "%d", a->restarts);
    META("objective", "%.17g", a->objective);
#undef META
    if (!st) st = ecr_st_writer_meta(w, "source", a->source ? a->source : "");
    if (!st) st = ecr_st_writer_meta(w, "source_hash", a->source_hash);
    if (!st && a->control[0]) st = ecr_st_writer_meta(w, "control", a->control);
    if (!st) st = ecr_st_writer_write(w, path);
    ecr_st_writer_free(w);
    return st;
}

/* Integer metadata `key` (required when req) into *v, within [lo, hi]. */
static ecr_status meta_int(const ecr_st_file *f, const char *path, const char *key, int req,
                           long long lo, long long hi, long long *v) {
    const char *s = ecr_st_meta(f, key);
    if (!s) {
        if (req) return ecr_fail(ECR_E_INVALID, "%s: metadata '%s': missing", path, key);
        return ECR_OK;
    }
    char *end;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || x < lo || x > hi)
        return ecr_fail(ECR_E_INVALID, "%s: metadata '%s': '%s' is not an integer in [%lld, %lld]",
                        path, key, s, lo, hi);
    *v = x;
    return ECR_OK;
}

static ecr_status load_checked(const ecr_st_file *f, const char *path, ecr_anchors **out) {
    const char *fmt = ecr_st_meta(f, "format");
    if (!fmt || strcmp(fmt, "ecr-anchors-1"))
        return ecr_fail(ECR_E_INVALID, "%s: metadata 'format': %s%s%s (expected \"ecr-anchors-1\")",
                        path, fmt ? "\"" : "missing", fmt ? fmt : "", fmt ? "\"" : "");
    const ecr_tensor_view *va, *vc, *vm, *vi = NULL, *vs = NULL;
    int64_t any2[2] = {-1, -1}, any1[1] = {-1};
    ecr_status st = ecr_st_get(f, "anchors", ECR_F32, 2, any2, &va);
    if (st) return st;
    int64_t K = va->shape[0], Dm = va->shape[1];
    if (K < 1 || K > ECR_ANCHORS_MAX_K || Dm < 1)
        return ecr_fail(ECR_E_INVALID, "%s: tensor 'anchors': shape [%lld, %lld] (expected 1..%d "
                        "anchors of at least 1 dim)", path, (long long)K, (long long)Dm, ECR_ANCHORS_MAX_K);
    if ((st = ecr_st_get(f, "codes", ECR_U16, 1, any1, &vc))) return st;
    int64_t N = vc->shape[0];
    int64_t sm[1] = {Dm};
    if ((st = ecr_st_get(f, "mean", ECR_F32, 1, sm, &vm))) return st;
    int has_i = ecr_st_find(f, "soft_idx") != NULL, has_s = ecr_st_find(f, "soft_sim") != NULL;
    if (has_i != has_s)
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%s': present without '%s'", path,
                        has_i ? "soft_idx" : "soft_sim", has_i ? "soft_sim" : "soft_idx");
    int64_t M = 0;
    if (has_i) {
        int64_t si[2] = {N, -1};
        if ((st = ecr_st_get(f, "soft_idx", ECR_U16, 2, si, &vi))) return st;
        M = vi->shape[1];
        int64_t ss[2] = {N, M};
        if ((st = ecr_st_get(f, "soft_sim", ECR_F32, 2, ss, &vs))) return st;
        if (M < 1 || M > K)
            return ecr_fail(ECR_E_INVALID, "%s: tensor 'soft_idx': %lld columns (expected 1..k = %lld)",
                            path, (long long)M, (long long)K);
    }
    long long mk = 0, md = 0, mr = 0, msoft = M, seed = 0, iters = 0, restarts = 0;
    if ((st = meta_int(f, path, "k", 1, 1, ECR_ANCHORS_MAX_K, &mk))) return st;
    if ((st = meta_int(f, path, "dim", 1, 1, INT32_MAX, &md))) return st;
    if ((st = meta_int(f, path, "rows", 1, 0, INT64_MAX, &mr))) return st;
    if ((st = meta_int(f, path, "soft", 0, 0, ECR_ANCHORS_MAX_K, &msoft))) return st;
    if ((st = meta_int(f, path, "iters", 0, 0, INT32_MAX, &iters))) return st;
    if ((st = meta_int(f, path, "restarts", 0, 0, INT32_MAX, &restarts))) return st;
    if (mk != K || md != Dm || mr != N || msoft != M)
        return ecr_fail(ECR_E_INVALID, "%s: metadata k/dim/rows/soft = %lld/%lld/%lld/%lld but the "
                        "tensors hold %lld/%lld/%lld/%lld", path, mk, md, mr, msoft, (long long)K,
                        (long long)Dm, (long long)N, (long long)M);
    const char *ts = ecr_st_meta(f, "tau");
    char *end = NULL;
    double tau = ts ? strtod(ts, &end) : 0.0;
    if (!ts || end == ts || *end || !(tau > 0.0) || !isfinite(tau))
        return ecr_fail(ECR_E_INVALID, "%s: metadata 'tau': %s (expected a number > 0)", path,
                        ts ? ts : "missing");
    const char *ss = ecr_st_meta(f, "seed");
    if (ss) {
        unsigned long long sv = strtoull(ss, &end, 10);
        if (end == ss || *end || ss[0] == '-')
            return ecr_fail(ECR_E_INVALID, "%s: metadata 'seed': '%s' is not an integer", path, ss);
        seed = (long long)sv;
    }
    const char *os = ecr_st_meta(f, "objective");
    double objective = os ? strtod(os, &end) : 0.0;
    if (os && (end == os || *end))
        return ecr_fail(ECR_E_INVALID, "%s: metadata 'objective': '%s' is not a number", path, os);
    const char *hs = ecr_st_meta(f, "source_hash");
    if (hs && (strlen(hs) != 16 || strspn(hs, "0123456789abcdef") != 16))
        return ecr_fail(ECR_E_INVALID, "%s: metadata 'source_hash': '%s' is not 16 hex digits", path, hs);

    const float *an = va->data;
    for (size_t q = 0; q < va->numel; q++)
        if (!isfinite(an[q]))
            return ecr_fail(ECR_E_INVALID, "%s: tensor 'anchors': element %zu (row %lld) is not finite",
                            path, q, (long long)(q / (size_t)Dm));
    const uint16_t *cd = vc->data;
    for (int64_t i = 0; i < N; i++)
        if (cd[i] >= K)
            return ecr_fail(ECR_E_INVALID, "%s: tensor 'codes': element %lld is %u (expected < k = %lld)",
                            path, (long long)i, cd[i], (long long)K);
    if (has_i) {
        const uint16_t *si = vi->data;
        for (size_t q = 0; q < vi->numel; q++)
            if (si[q] >= K)
                return ecr_fail(ECR_E_INVALID, "%s: tensor 'soft_idx': element [%lld, %lld] is %u "
                                "(expected < k = %lld)", path, (long long)(q / (size_t)M),
                                (long long)(q % (size_t)M), si[q], (long long)K);
    }
    ecr_anchors *A = ecr_anchors_alloc((int)K, (int)Dm, N, (int)M, ecr_st_meta(f, "source"));
    if (!A) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    memcpy(A->anchors, va->data, va->nbytes);
    memcpy(A->codes, vc->data, vc->nbytes);
    memcpy(A->mean, vm->data, vm->nbytes);
    if (has_i) {
        memcpy(A->soft_idx, vi->data, vi->nbytes);
        memcpy(A->soft_sim, vs->data, vs->nbytes);
    }
    A->tau = (float)tau;
    A->seed = (uint64_t)seed;
    A->iters = (int)iters;
    A->restarts = (int)restarts;
    A->iters_done = -1;
    A->objective = objective;
    snprintf(A->source_hash, sizeof A->source_hash, "%s", hs ? hs : "");
    const char *ctl = ecr_st_meta(f, "control");
    snprintf(A->control, sizeof A->control, "%s", ctl ? ctl : "");
    *out = A;
    return ECR_OK;
}

ecr_status ecr_anchors_load(const char *path, ecr_anchors **out) {
    *out = NULL;
    ecr_st_file *f;
    ecr_status st = ecr_st_open(path, &f);
    if (st) return st;
    st = load_checked(f, path, out);
    ecr_st_close(f);
    return st;
}
