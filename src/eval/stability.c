/* stability.c — training stability from the loss and gradient-norm series of a run (contract:
 * ecr.h, "Metrics", ecr_stability_*; definitions: DESIGN.md "Metrics"), and from its
 * log.jsonl through the one log reader (src/io/runlog.c). */
#include "ecr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ecr_status ecr_stability_compute(const double *loss, const double *grad_norm, const uint8_t *clipped,
                                 int64_t n, ecr_stability *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || !loss || !grad_norm)
        return ecr_fail(ECR_E_INVALID, "stability: no steps");
    out->steps = n;
    out->first_step = 1;
    out->last_step = n;
    const int W = ECR_SPIKE_WINDOW;
    for (int64_t t = W; t < n; t++) {
        double s = 0.0, ss = 0.0;
        for (int64_t j = t - W; j < t; j++) s += loss[j];
        double mean = s / W;
        for (int64_t j = t - W; j < t; j++) ss += (loss[j] - mean) * (loss[j] - mean);
        double sd = sqrt(ss / W);
        if (loss[t] > mean + ECR_SPIKE_SIGMAS * sd) out->spikes++;
    }
    out->spikes_per_1k = 1000.0 * (double)out->spikes / (double)n;
    double s = 0.0, ss = 0.0;
    for (int64_t t = 0; t < n; t++) s += grad_norm[t];
    double mean = s / (double)n;
    for (int64_t t = 0; t < n; t++) ss += (grad_norm[t] - mean) * (grad_norm[t] - mean);
    out->grad_norm_mean = mean;
    out->grad_norm_cv = mean != 0.0 ? sqrt(ss / (double)n) / mean : NAN;
    for (int64_t t = 0; clipped && t < n; t++) out->clipped += clipped[t] != 0;
    out->clipped_share = (double)out->clipped / (double)n;
    out->final_loss = loss[n - 1];
    out->final_val_loss = NAN;
    return ECR_OK;
}

typedef struct log_arrays {
    double *loss, *gnorm;
    uint8_t *clip;
    int64_t n, cap;
} log_arrays;

static int log_push(log_arrays *a, double loss, double gnorm, int clip) {
    if (a->n == a->cap) {
        int64_t cap = a->cap ? 2 * a->cap : 1024;
        double *l = realloc(a->loss, (size_t)cap * sizeof *l);
        if (l) a->loss = l;
        double *g = realloc(a->gnorm, (size_t)cap * sizeof *g);
        if (g) a->gnorm = g;
        uint8_t *c = realloc(a->clip, (size_t)cap);
        if (c) a->clip = c;
        if (!l || !g || !c) return 0;
        a->cap = cap;
    }
    a->loss[a->n] = loss;
    a->gnorm[a->n] = gnorm;
    a->clip[a->n] = (uint8_t)clip;
    a->n++;
    return 1;
}

/* One record of the log into the arrays (step records, checked strictly: the stability
 * figures need every step's loss, gradient norm and clip flag) or the last validation loss. */
static ecr_status log_record(const char *path, const ecr_log_record *r, log_arrays *a, int64_t *first,
                             int64_t *last, double *val) {
    if (r->is_step) {
        if (!isfinite(r->step))
            return ecr_fail(ECR_E_INVALID, "%s:%ld: field 'step' missing or not a number", path, r->line);
        if (isnan(r->grad_norm))
            return ecr_fail(ECR_E_INVALID, "%s:%ld: field 'grad_norm' missing or not a number", path, r->line);
        if (r->clipped < 0)
            return ecr_fail(ECR_E_INVALID, "%s:%ld: field 'clipped' missing or not a boolean", path, r->line);
        if (a->n > 0 && r->step <= (double)*last)
            return ecr_fail(ECR_E_INVALID, "%s:%ld: step %.0f does not follow step %lld", path, r->line, r->step,
                            (long long)*last);
        if (!log_push(a, r->loss, r->grad_norm, r->clipped))
            return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
        if (a->n == 1) *first = (int64_t)r->step;
        *last = (int64_t)r->step;
    } else if (r->is_valid) {
        *val = r->val_loss;
    }
    return ECR_OK;
}

ecr_status ecr_stability_read_log(const char *path, ecr_stability *out) {
    memset(out, 0, sizeof *out);
    ecr_log_reader *rd = NULL;
    ecr_status st = ecr_log_open(path, &rd);
    if (st) return st;
    log_arrays a = {0};
    int64_t first = 0, last = 0;
    double val = NAN;
    ecr_log_record rec;
    int more = 1;
    while (!st && more && !(st = ecr_log_next(rd, &rec, &more)) && more)
        st = log_record(path, &rec, &a, &first, &last, &val);
    ecr_log_close(rd);
    if (!st && a.n == 0) st = ecr_fail(ECR_E_INVALID, "%s: no step records (objects with \"loss\")", path);
    if (!st) st = ecr_stability_compute(a.loss, a.gnorm, a.clip, a.n, out);
    if (!st) {
        out->first_step = first;
        out->last_step = last;
        out->final_val_loss = val;
    }
    free(a.loss);
    free(a.gnorm);
    free(a.clip);
    return st;
}
