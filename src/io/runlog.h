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
/* One validation record; eff_rank / eff_rank_u are left out when not finite. */
void ecr_log_write_valid(FILE *fp, int64_t step, double loss, double bpb, int64_t tokens,
                         double eff_rank, double eff_rank_u);

#endif
