/* lm_eval.c — language-model evaluation of a model on prepared data: loss, perplexity and
 * bits per byte per language, and each text's pooled h from the same forward passes
 * (contract: ecr.h, ecr_eval_lm, ecr_eval_lm_embed). */
#include "ecr.h"
#include "batcher_internal.h"
#include "comm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double ecr_lm_loss(const ecr_lm_stats *s) { return s->tokens > 0 ? s->loss_sum / (double)s->tokens : 0.0; }
double ecr_lm_ppl(const ecr_lm_stats *s) { return s->tokens > 0 ? exp(ecr_lm_loss(s)) : 0.0; }
double ecr_lm_bpb(const ecr_lm_stats *s) {
    return s->bytes > 0 ? s->loss_sum / M_LN2 / (double)s->bytes : 0.0;
}

void ecr_lm_eval_release(ecr_lm_eval *e) {
    if (!e) return;
    free(e->per_lang);
    e->per_lang = NULL;
}

static void stats_add(ecr_lm_stats *s, double loss, int64_t tokens, int64_t bytes) {
    s->loss_sum += loss;
    s->tokens += tokens;
    s->bytes += bytes;
    s->texts++;
}

ecr_status ecr_eval_lm(ecr_model *m, const ecr_data *d, int seq_len, int64_t tokens_per_batch,
                       int quiet, ecr_lm_eval *out) {
    return ecr_eval_lm_embed(m, d, seq_len, tokens_per_batch, quiet, out, NULL, NULL);
}

/* The evaluation pass behind ecr_eval_lm; with h non-NULL it also keeps each text's pooled
 * row (one forward serves both the LM metrics and the geometry of `ecr eval`). Each text's
 * summed loss goes to loss[id] and its id to seen[] in the order the batches hold them;
 * the statistics are added in that order at the end (with a communicator, after the sum
 * that brings the other ranks' batches). */
ecr_status ecr_eval_lm_embed(ecr_model *m, const ecr_data *d, int seq_len, int64_t tokens_per_batch,
                             int quiet, ecr_lm_eval *out, float *h, const ecr_comm *comm) {
    memset(out, 0, sizeof *out);
    const ecr_config *cfg = ecr_model_config(m);
    int T = seq_len > 0 ? seq_len : cfg->max_seq_len, dim = cfg->dim;
    int world = ecr_comm_size(comm), rank = ecr_comm_rank(comm);
    if (T < 2 || T > cfg->max_seq_len)
        return ecr_fail(ECR_E_INVALID, "eval: seq_len %d is outside [2, max_seq_len %d]", T, cfg->max_seq_len);
    if (d->vocab_size > cfg->vocab_size)
        return ecr_fail(ECR_E_INVALID, "eval: the data's vocabulary (%d) is larger than the model's (%d)",
                        d->vocab_size, cfg->vocab_size);
    if (h) memset(h, 0, d->n_texts * (size_t)dim * sizeof *h);
    size_t n = d->n_texts, n_seen = 0;
    float *loss = calloc(n ? n : 1, sizeof *loss);
    int64_t *seen = malloc((n ? n : 1) * sizeof *seen);
    ecr_batcher *b = NULL;
    ecr_status st = loss && seen ? ecr_batcher_sequential(d, tokens_per_batch, T, &b)
                                 : ecr_fail(ECR_E_NOMEM, "eval: out of memory");
    out->n_langs = d->n_langs;
    out->per_lang = calloc(d->n_langs > 0 ? (size_t)d->n_langs : 1, sizeof *out->per_lang);
    if (!st && !out->per_lang) st = ecr_fail(ECR_E_NOMEM, "eval: out of memory");
    int64_t n_batches = 0;
    if (!st) st = ecr_batcher_epoch_batches(b, 0, &n_batches);
    double t0 = ecr_now();
    int end = 0;
    for (int64_t k = 0; !st && !end; k++) {
        const ecr_batch *x = NULL;
        ecr_forward_out fo;
        st = ecr_batcher_next(b, &x, &end);
        for (int i = 0; !st && i < x->n_texts && n_seen < n; i++) seen[n_seen++] = x->text_id[i];
        if (st || k % world != rank) continue; /* another rank's batch */
        st = ecr_model_forward(m, x, &fo);
        for (int i = 0; !st && i < x->n_texts; i++) {
            int64_t id = x->text_id[i];
            loss[id] = fo.text_loss[i];
            if (h) memcpy(h + (size_t)id * dim, fo.pooled + (size_t)i * dim, (size_t)dim * sizeof *h);
        }
        if (!st && !quiet && (k % 10 == 9 || end))
            fprintf(stderr, "\reval: batch %lld/%lld (%.1f s)", (long long)k + 1, (long long)n_batches,
                    ecr_now() - t0);
    }
    if (!quiet) fputc('\n', stderr);
    if (!st) st = ecr_comm_sum_f32(comm, loss, n, NULL);
    if (!st && h) st = ecr_comm_sum_f32(comm, h, n * (size_t)dim, NULL);
    for (size_t j = 0; !st && j < n_seen; j++) {
        int64_t id = seen[j];
        int64_t nt = d->offsets[id + 1] - d->offsets[id];
        int64_t targets = nt < T - 1 ? nt + 1 : T;
        int64_t bytes = d->n_bytes[id];
        if (targets < nt + 1) bytes = (int64_t)llround((double)bytes * (double)targets / (double)(nt + 1));
        stats_add(&out->overall, loss[id], targets, bytes);
        int lang = d->lang[id];
        if (lang >= 0 && lang < d->n_langs) stats_add(&out->per_lang[lang], loss[id], targets, bytes);
    }
    if (!st) {
        ecr_batcher_stats s;
        ecr_batcher_get_stats(b, &s);
        out->n_truncated = s.n_truncated;
    }
    ecr_batcher_free(b);
    free(loss);
    free(seen);
    if (st) ecr_lm_eval_release(out);
    return st;
}
