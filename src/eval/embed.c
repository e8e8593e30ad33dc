/* embed.c — text embeddings of prepared data: the pooled hidden state h of every text, or
 * u through the model's ECR projection (see "Embeddings" in ecr.h). The forward without
 * the LM head (ecr_model_encode) does the work; texts are packed in file order. Raw texts
 * become prepared data in memory first (ecr_data_from_texts), so both paths are one. */
#include "ecr.h"
#include "losses.h"
#include "ops.h"
#include "batcher_internal.h"
#include "model_internal.h"
#include "comm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ecr_embed_opts_default(ecr_embed_opts *o) {
    memset(o, 0, sizeof *o);
    o->tokens_per_batch = 1024; /* 4 rows of 256: as fast as 4096 per text, a third of the memory */
}

ecr_status ecr_model_project(ecr_model *m, const float *h, int64_t n, float *u) {
    const ecr_param_info *t = ecr_model_find_tensor(m, "ecr.proj.weight");
    if (!t) return ecr_fail(ECR_E_INVALID, "project: the model has no ECR projection (ecr_dim 0)");
    const float *P = ecr_model_params_ro(m) + t->offset; /* [D, d] */
    int D = (int)t->shape[0], d = (int)t->shape[1];
    /* z = h P^T in chunks (one sgemm each, the same product as in training), then each row
     * normalised in double precision, in place. */
    const int64_t chunk = 65536;
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        int rows = (int)(n - i0 < chunk ? n - i0 : chunk);
        float *z = u + (size_t)i0 * D;
        ecr_linear_forward(z, h + (size_t)i0 * d, P, rows, d, D, 0.0f);
        ecr_unit_rows(z, rows, D, ECR_NORM_EPS, z);
    }
    return ECR_OK;
}

/* h of every text into out [n_texts, dim], by text_id. With a communicator, batch k runs
 * on rank k % size, the others' rows stay 0 here, and the sum over the ranks fills them. */
static ecr_status embed_pooled(ecr_model *m, const ecr_data *d, const ecr_embed_opts *o, int T, float *out) {
    int dim = ecr_model_config(m)->dim, world = ecr_comm_size(o->comm), rank = ecr_comm_rank(o->comm);
    ecr_batcher *b = NULL;
    ecr_status st = ecr_batcher_sequential(d, o->tokens_per_batch, T, &b);
    if (st) return st;
    if (world > 1) memset(out, 0, d->n_texts * (size_t)dim * sizeof *out);
    double t0 = ecr_now(), last = t0;
    int64_t done = 0, k = 0;
    int end = 0;
    while (!st && !end) {
        const ecr_batch *x = NULL;
        const float *pooled = NULL;
        st = ecr_batcher_next(b, &x, &end);
        if (st || k++ % world != rank) { /* another rank's batch */
            if (!st) done += x->n_texts;
            continue;
        }
        st = ecr_model_encode(m, x, &pooled);
        for (int i = 0; !st && i < x->n_texts; i++)
            memcpy(out + (size_t)x->text_id[i] * dim, pooled + (size_t)i * dim, (size_t)dim * sizeof *out);
        if (!st) done += x->n_texts;
        double now = ecr_now();
        if (!st && !o->quiet && (now - last > 1.0 || end)) {
            fprintf(stderr, "\rembed: %lld/%zu texts (%.0f texts/s)", (long long)done, d->n_texts,
                    (double)done / (now - t0 + 1e-9));
            last = now;
        }
    }
    if (!o->quiet) fputc('\n', stderr);
    ecr_batcher_free(b);
    if (!st) st = ecr_comm_sum_f32(o->comm, out, d->n_texts * (size_t)dim, NULL);
    return st;
}

ecr_status ecr_embed(ecr_model *m, const ecr_data *d, const ecr_embed_opts *o, float **out,
                     int64_t *cols, int *projected) {
    *out = NULL;
    const ecr_config *cfg = ecr_model_config(m);
    int T = o->seq_len > 0 ? o->seq_len : cfg->max_seq_len;
    if (T < 2 || T > cfg->max_seq_len)
        return ecr_fail(ECR_E_INVALID, "embed: seq_len %d is outside [2, max_seq_len %d]", T, cfg->max_seq_len);
    if (o->tokens_per_batch < 1)
        return ecr_fail(ECR_E_INVALID, "embed: tokens_per_batch must be positive");
    if (d->vocab_size > cfg->vocab_size)
        return ecr_fail(ECR_E_INVALID, "embed: the data's vocabulary (%d) is larger than the model's (%d)",
                        d->vocab_size, cfg->vocab_size);
    const ecr_param_info *proj = ecr_model_find_tensor(m, "ecr.proj.weight");
    int use_proj = proj && !o->raw;
    size_t n = d->n_texts, dim = (size_t)cfg->dim, D = use_proj ? (size_t)proj->shape[0] : 0;
    float *h = malloc((n ? n : 1) * dim * sizeof *h);
    if (!h) return ecr_fail(ECR_E_NOMEM, "embed: out of memory for %zu x %zu floats", n, dim);
    ecr_status st = n ? embed_pooled(m, d, o, T, h) : ECR_OK;
    if (!st && use_proj) {
        float *u = malloc((n ? n : 1) * D * sizeof *u);
        if (!u) st = ecr_fail(ECR_E_NOMEM, "embed: out of memory for %zu x %zu floats", n, D);
        if (!st) st = ecr_model_project(m, h, (int64_t)n, u);
        free(h);
        h = u;
    }
    if (st) {
        free(h);
        return st;
    }
    *out = h;
    *cols = use_proj ? (int64_t)D : (int64_t)dim;
    if (projected) *projected = use_proj;
    return ECR_OK;
}

ecr_status ecr_embed_texts(ecr_model *m, const ecr_tokenizer *tok, const char *const *texts,
                           const size_t *lens, size_t n, const ecr_embed_opts *o, float **out,
                           int64_t *cols, int *projected) {
    *out = NULL;
    ecr_data *d = NULL;
    ecr_status st = ecr_data_from_texts(tok, texts, lens, n, &d);
    if (!st) st = ecr_embed(m, d, o, out, cols, projected);
    ecr_data_free(d);
    return st;
}
