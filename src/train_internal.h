/* train_internal.h — helpers shared by the trainer's files (batcher.c, train.c, embed.c).
 * Not part of the public API. */
#ifndef ECR_TRAIN_INTERNAL_H
#define ECR_TRAIN_INTERNAL_H
#include "ecr.h"

/* ecr_tr_batcher_sequential: a batcher over d in data order (ecr_sampler_sequential), for
 * passes that read every text once (evaluation, embedding): rows of T tokens,
 * tokens_per_batch / T of them (at least 1, at most 65536). On success *out is the caller's
 * (ecr_batcher_free); on failure *out is NULL and the status says why. */
ecr_status ecr_tr_batcher_sequential(const ecr_data *d, int64_t tokens_per_batch, int T, ecr_batcher **out);

/* The log.jsonl writer (runlog.c; the records are described in ecr.h). One step record: */
typedef struct ecr_log_step {
    int64_t step, tokens;
    double loss, lr, grad_norm, tokens_per_s, elapsed_s;
    int clipped;
    const char *terms_json;   /* the objective's terms, ",\"ecr\":...,\"total\":..." or "" */
    const char *precision;    /* "fp32" / "bf16" */
} ecr_log_step;
void ecr_log_write_step(FILE *fp, const ecr_log_step *s);
/* One validation record; eff_rank / eff_rank_u are left out when not finite. */
void ecr_log_write_valid(FILE *fp, int64_t step, double loss, double bpb, int64_t tokens,
                         double eff_rank, double eff_rank_u);

/* The model's fp32 parameters, read-only (unlike ecr_model_params, this does not mark the
 * bf16 copy stale: for readers such as the ECR projection). Borrowed. */
const float *ecr_tr_model_params(const ecr_model *m);

#endif
