/* runlog.h — the log.jsonl writer (internal; runlog.c; the records and the reader are in
 * ecr.h). */
#ifndef ECR_RUNLOG_H
#define ECR_RUNLOG_H
#include "ecr.h"

/* One step record. */
typedef struct ecr_log_step {
    int64_t step, tokens;
    double loss, lr, grad_norm, tokens_per_s, elapsed_s;
    int clipped;
    const char *terms_json;   /* the objective's terms, ",\"ecr\":...,\"total\":..." or "" */
    const char *precision;    /* "fp32" / "bf16" */
} ecr_log_step;
void ecr_log_write_step(FILE *fp, const ecr_log_step *s);
/* The geometry a validation pass measures in one space (NaN = not measured). */
typedef struct ecr_valid_geo {
    double eff_rank, p1, transfer;
} ecr_valid_geo;
/* One validation record {"step","val_loss","val_bpb","val_tokens", then for h
 * "val_eff_rank","val_p1","val_transfer" and for u (geo[1]) the same with "_u"}; a
 * measure that is not finite is left out. */
void ecr_log_write_valid(FILE *fp, int64_t step, double loss, double bpb, int64_t tokens,
                         const ecr_valid_geo geo[2]);

#endif
