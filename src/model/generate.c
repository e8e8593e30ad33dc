/* generate.c — sampling text with a KV cache (see "Generation" in ecr.h). */
#include "ecr.h"
#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ecr_gen_opts_default(ecr_gen_opts *o) {
    o->max_tokens = 200;
    o->temperature = 0.8f;
    o->top_k = 40;
    o->top_p = 0.95f;
    o->seed = 1;
}

typedef struct cand {
    float logit;
    int32_t id;
} cand;

/* Descending logit, then ascending id: a total order, so sorting is deterministic. */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int32_t argmax(const float *logits, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* Samples from the candidates left after top-k and top-p. `c` is scratch of V entries. */
static int32_t sample_sorted(cand *c, int V, const ecr_gen_opts *o, uint64_t *rng) {
    for (int i = 0; i < V; i++) c[i].logit /= o->temperature;
    qsort(c, (size_t)V, sizeof *c, cand_cmp);
    int n = (o->top_k > 0 && o->top_k < V) ? o->top_k : V;
    /* softmax over the n best (c[0] holds the maximum) */
    double sum = 0, mx = c[0].logit;
    for (int i = 0; i < n; i++) {
        c[i].logit = (float)exp((double)c[i].logit - mx);
        sum += c[i].logit;
    }
    if (o->top_p > 0 && o->top_p < 1) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += c[i].logit / sum;
            if (cum >= o->top_p) { keep = i + 1; break; }
        }
        n = keep;
        sum = 0;
        for (int i = 0; i < n; i++) sum += c[i].logit;
    }
    double u = ecr_splitmix64_unit(rng) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].logit;
        if (u < acc) return c[i].id;
    }
    return c[n - 1].id; /* rounding: u landed on the total */
}

/* ecr_sample_logits with the candidates' scratch c[V] given (NULL: argmax). */
static int32_t sample(float *logits, int V, const ecr_gen_opts *o, uint64_t *rng, cand *c) {
    if (!(o->temperature > 0) || !c) return argmax(logits, V);
    for (int i = 0; i < V; i++) {
        c[i].logit = logits[i];
        c[i].id = i;
    }
    return sample_sorted(c, V, o, rng);
}

int32_t ecr_sample_logits(float *logits, int V, const ecr_gen_opts *o, uint64_t *rng) {
    cand *c = o->temperature > 0 ? malloc((size_t)V * sizeof *c) : NULL;
    int32_t id = sample(logits, V, o, rng, c); /* out of memory: argmax */
    free(c);
    return id;
}

ecr_status ecr_generate(ecr_model *m, const int32_t *prompt, size_t n_prompt, int32_t eot_id,
                        const ecr_gen_opts *o, ecr_token_fn on_token, void *ctx, size_t *n_out) {
    if (n_out) *n_out = 0;
    const ecr_config *cfg = ecr_model_config(m);
    int V = cfg->vocab_size, max_len = cfg->max_seq_len;
    if (n_prompt < 1) return ecr_fail(ECR_E_INVALID, "generate: empty prompt (start it with the EOT token)");
    if (n_prompt > (size_t)max_len)
        return ecr_fail(ECR_E_INVALID, "generate: prompt of %zu tokens is longer than the context (%d)",
                        n_prompt, max_len);
    for (size_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return ecr_fail(ECR_E_INVALID, "generate: prompt token %zu is id %d, outside the vocabulary (%d)",
                            i, prompt[i], V);
    ecr_kv_cache *kv = NULL;
    ecr_status st = ecr_kv_cache_create(m, max_len, &kv);
    if (st) return st;
    float *logits = malloc((size_t)V * sizeof *logits);
    cand *scratch = o->temperature > 0 ? malloc((size_t)V * sizeof *scratch) : NULL; /* once, not per token */
    if (!logits || (o->temperature > 0 && !scratch)) st = ecr_fail(ECR_E_NOMEM, "generate: out of memory");
    if (!st) st = ecr_model_prefill(m, kv, prompt, n_prompt, logits);
    uint64_t rng = ecr_splitmix64_stream(o->seed, ECR_STREAM_GENERATE);
    size_t fed = n_prompt, gen = 0, max_new = (size_t)(o->max_tokens > 0 ? o->max_tokens : 0);
    while (!st && gen < max_new) {
        int32_t id = sample(logits, V, o, &rng, scratch);
        if (id == eot_id) break;
        gen++;
        if (on_token && on_token(ctx, id)) break;
        if (gen == max_new || fed >= (size_t)max_len) break; /* done, or the context is full */
        st = ecr_model_step(m, kv, id, logits);
        fed++;
    }
    free(logits);
    free(scratch);
    ecr_kv_cache_free(kv);
    if (n_out) *n_out = gen;
    return st;
}
