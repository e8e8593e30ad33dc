/* optim.c — AdamW (decoupled weight decay, as torch.optim.AdamW), the learning-rate
 * schedule, and global gradient-norm clipping (as torch.nn.utils.clip_grad_norm_).
 *
 * Update for each parameter p with gradient g at step t (1-based), per torch:
 *   p *= 1 - lr * wd                  (only tensors with the decay flag)
 *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * Elementwise and parallel; no reduction, so results do not depend on the thread count. */
#include "ecr.h"
#include "ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ecr_adamw {
    ecr_adamw_opts o;
    size_t n;
    float *m, *v;          /* [n] moments */
    int64_t steps;
    size_t n_tensors;
    size_t *off, *numel;   /* per tensor of the model's table */
    unsigned char *decay;
};

void ecr_adamw_opts_default(ecr_adamw_opts *o) {
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->weight_decay = 0.1f;
    o->decay_embeddings = 0;
}

ecr_status ecr_adamw_create(const ecr_model *model, const ecr_adamw_opts *opts, ecr_adamw **out) {
    *out = NULL;
    ecr_adamw_opts o;
    if (opts)
        o = *opts;
    else
        ecr_adamw_opts_default(&o);
    if (!(o.beta1 >= 0.0f && o.beta1 < 1.0f) || !(o.beta2 >= 0.0f && o.beta2 < 1.0f) ||
        !(o.eps > 0.0f) || !(o.weight_decay >= 0.0f) || !isfinite(o.eps) || !isfinite(o.weight_decay))
        return ecr_fail(ECR_E_INVALID, "adamw: beta1 %g, beta2 %g must be in [0, 1), eps %g > 0, "
                        "weight_decay %g >= 0", (double)o.beta1, (double)o.beta2, (double)o.eps,
                        (double)o.weight_decay);
    ecr_adamw *a = calloc(1, sizeof *a);
    if (!a) return ecr_fail(ECR_E_NOMEM, "adamw: out of memory");
    a->o = o;
    a->n = ecr_model_num_params(model);
    a->n_tensors = ecr_model_num_tensors(model);
    a->m = calloc(a->n ? a->n : 1, sizeof(float));
    a->v = calloc(a->n ? a->n : 1, sizeof(float));
    a->off = calloc(a->n_tensors, sizeof *a->off);
    a->numel = calloc(a->n_tensors, sizeof *a->numel);
    a->decay = calloc(a->n_tensors, 1);
    if (!a->m || !a->v || !a->off || !a->numel || !a->decay) {
        size_t n = a->n;
        ecr_adamw_free(a);
        return ecr_fail(ECR_E_NOMEM, "adamw: out of memory for %zu parameters", n);
    }
    for (size_t i = 0; i < a->n_tensors; i++) {
        const ecr_param_info *t = ecr_model_tensor(model, i);
        a->off[i] = t->offset;
        a->numel[i] = t->numel;
        a->decay[i] = (unsigned char)(t->decay ||
                                      (o.decay_embeddings && !strcmp(t->name, "model.embed_tokens.weight")));
    }
    *out = a;
    return ECR_OK;
}

void ecr_adamw_free(ecr_adamw *a) {
    if (!a) return;
    free(a->m);
    free(a->v);
    free(a->off);
    free(a->numel);
    free(a->decay);
    free(a);
}

ecr_status ecr_adamw_step(ecr_adamw *a, ecr_model *model, float lr) {
    if (ecr_model_num_params(model) != a->n || ecr_model_num_tensors(model) != a->n_tensors)
        return ecr_fail(ECR_E_INVALID, "adamw: optimizer was made for another model");
    if (!isfinite(lr) || lr < 0.0f) return ecr_fail(ECR_E_INVALID, "adamw: learning rate %g", (double)lr);
    a->steps++;
    double bc1 = 1.0 - pow((double)a->o.beta1, (double)a->steps);
    double bc2 = 1.0 - pow((double)a->o.beta2, (double)a->steps);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float b1 = a->o.beta1, b2 = a->o.beta2, eps = a->o.eps;
    float *P = ecr_model_params(model);
    const float *G = ecr_model_grads(model);
    for (size_t ti = 0; ti < a->n_tensors; ti++) {
        const float keep = a->decay[ti] ? 1.0f - lr * a->o.weight_decay : 1.0f;
        float *p = P + a->off[ti], *m = a->m + a->off[ti], *v = a->v + a->off[ti];
        const float *g = G + a->off[ti];
        long n = (long)a->numel[ti];
        ECR_OMP(parallel for schedule(static) if (n > 65536))
        for (long i = 0; i < n; i++) {
            float gi = g[i];
            float pi = p[i] * keep;
            float mi = m[i] * b1 + (1.0f - b1) * gi;
            float vi = v[i] * b2 + (1.0f - b2) * gi * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] = pi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
        }
    }
    return ECR_OK;
}

size_t ecr_adamw_size(const ecr_adamw *a) { return a->n; }
float *ecr_adamw_m(ecr_adamw *a) { return a->m; }
float *ecr_adamw_v(ecr_adamw *a) { return a->v; }
int64_t ecr_adamw_steps(const ecr_adamw *a) { return a->steps; }
void ecr_adamw_set_steps(ecr_adamw *a, int64_t steps) { a->steps = steps < 0 ? 0 : steps; }
const ecr_adamw_opts *ecr_adamw_options(const ecr_adamw *a) { return &a->o; }

float ecr_lr_schedule(int64_t step, int64_t warmup, int64_t total, float lr, float min_lr) {
    if (step < 0) step = 0;
    if (warmup > 0 && step < warmup) return lr * (float)(step + 1) / (float)warmup;
    int64_t span = total - warmup;
    if (span <= 0) return min_lr;
    double progress = (double)(step - warmup) / (double)span;
    if (progress > 1.0) progress = 1.0;
    return (float)(min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(3.14159265358979323846 * progress)));
}

/* Sum of squares in fixed chunks (thread-count independent), in double. */
ecr_status ecr_clip_grad_norm(ecr_model *model, float max_norm, float *norm_before) {
    enum { CHUNKS = 64 };
    float *g = ecr_model_grads(model);
    size_t n = ecr_model_num_params(model);
    double part[CHUNKS];
    size_t per = (n + CHUNKS - 1) / CHUNKS;
    ECR_OMP(parallel for schedule(static) if (n > 65536))
    for (int c = 0; c < CHUNKS; c++) {
        size_t i0 = (size_t)c * per, i1 = i0 + per < n ? i0 + per : n;
        double s = 0;
        for (size_t i = i0; i < i1; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double ss = 0;
    for (int c = 0; c < CHUNKS; c++) ss += part[c];
    float norm = (float)sqrt(ss);
    if (norm_before) *norm_before = norm;
    if (!isfinite(norm))
        return ecr_fail(ECR_E_RUNTIME, "gradient norm is not finite (%g)", (double)norm);
    if (max_norm > 0.0f) {
        float coef = max_norm / (norm + 1e-6f); /* torch.nn.utils.clip_grad_norm_ */
        if (coef < 1.0f) {
            ECR_OMP(parallel for schedule(static) if (n > 65536))
            for (size_t i = 0; i < n; i++) g[i] *= coef;
        }
    }
    return ECR_OK;
}
