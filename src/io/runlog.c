/* runlog.c — log.jsonl, the training log: its one writer (the trainer's step and validation
 * records) and its one reader (the trainer's resume, ecr eval --log, ecr report), with the
 * reading rule of ecr.h stated once, here. */
#define _POSIX_C_SOURCE 200809L
#include "ecr.h"
#include "runlog.h"
#include "util.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- writing ------------------------------------------------------------------------------ */

void ecr_log_write_step(FILE *fp, const ecr_log_step *s) {
    fprintf(fp, "{\"step\":%lld,\"loss\":%.7g%s,\"lr\":%.7g,\"grad_norm\":%.7g,\"clipped\":%s,"
                "\"tokens\":%lld,\"tokens_per_s\":%.1f,\"elapsed_s\":%.3f,\"precision\":\"%s\"}\n",
            (long long)s->step, s->loss, s->terms_json ? s->terms_json : "", s->lr, s->grad_norm,
            s->clipped ? "true" : "false", (long long)s->tokens, s->tokens_per_s, s->elapsed_s,
            s->precision);
}

void ecr_log_write_valid(FILE *fp, int64_t step, double loss, double bpb, int64_t tokens,
                         const ecr_valid_geo geo[2]) {
    fprintf(fp, "{\"step\":%lld,\"val_loss\":%.7g,\"val_bpb\":%.7g,\"val_tokens\":%lld", (long long)step,
            loss, bpb, (long long)tokens);
    /* the order of the keys keeps the records of runs from before P@1 byte-identical */
    const double v[6] = {geo[0].eff_rank, geo[1].eff_rank, geo[0].p1, geo[1].p1, geo[0].transfer, geo[1].transfer};
    const char *key[6] = {"val_eff_rank", "val_eff_rank_u", "val_p1", "val_p1_u", "val_transfer", "val_transfer_u"};
    for (int i = 0; i < 6; i++)
        if (isfinite(v[i])) fprintf(fp, ",\"%s\":%.7g", key[i], v[i]);
    fputs("}\n", fp);
}

/* ---- reading ------------------------------------------------------------------------------ */

struct ecr_log_reader {
    char *path;
    FILE *fp;
    char *buf;                /* the current line (ecr_read_line's buffer) */
    size_t cap;
    long line;
    long torn;                /* line number of a last line cut short, 0 if none */
};

ecr_status ecr_log_open(const char *path, ecr_log_reader **out) {
    *out = NULL;
    ecr_log_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    }
    if (!(r->fp = fopen(path, "rb"))) {
        ecr_status st = ecr_fail(ECR_E_IO, "%s: cannot open: %s", path, strerror(errno));
        ecr_log_close(r);
        return st;
    }
    *out = r;
    return ECR_OK;
}

void ecr_log_close(ecr_log_reader *r) {
    if (!r) return;
    if (r->fp) fclose(r->fp);
    free(r->buf);
    free(r->path);
    free(r);
}

long ecr_log_torn(const ecr_log_reader *r) { return r->torn; }

/* A number field, NaN when absent or not a number. */
static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* Fills *rec from the parsed object o. */
static void fill(ecr_log_record *rec, const cJSON *o) {
    rec->step = num(o, "step");
    rec->loss = num(o, "loss");
    rec->grad_norm = num(o, "grad_norm");
    rec->elapsed_s = num(o, "elapsed_s");
    rec->val_loss = num(o, "val_loss");
    rec->val_bpb = num(o, "val_bpb");
    rec->val_eff_rank = num(o, "val_eff_rank");
    rec->val_eff_rank_u = num(o, "val_eff_rank_u");
    rec->val_p1 = num(o, "val_p1");
    rec->val_p1_u = num(o, "val_p1_u");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "clipped");
    rec->clipped = cJSON_IsBool(c) ? cJSON_IsTrue(c) : -1;
    rec->is_step = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "loss"));
    rec->is_valid = cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "val_loss"));
}

ecr_status ecr_log_next(ecr_log_reader *r, ecr_log_record *rec, int *more) {
    memset(rec, 0, sizeof *rec);
    *more = 0;
    for (;;) {
        errno = 0;
        long n = ecr_read_line(r->fp, &r->buf, &r->cap, ECR_MAX_LINE);
        if (n == 0) return ECR_OK; /* end of file */
        if (n == -1) return ecr_fail(ECR_E_IO, "%s: read error: %s", r->path, strerror(errno));
        if (n == -2)
            return ecr_fail(ECR_E_INVALID, "%s:%ld: line longer than %zu MiB", r->path, r->line + 1, ECR_MAX_LINE >> 20);
        if (n == -3) return ecr_fail(ECR_E_NOMEM, "%s:%ld: out of memory", r->path, r->line + 1);
        r->line++;
        size_t len = (size_t)n;
        int complete = len > 0 && r->buf[len - 1] == '\n';
        while (len > 0 && strchr("\n\r \t", r->buf[len - 1])) len--;
        if (!complete) { /* the last line, cut short by a kill: never trusted, even if it parses */
            if (len > 0) r->torn = r->line;
            return ECR_OK;
        }
        if (len == 0) continue; /* blank line */
        if (memchr(r->buf, '\0', len)) return ecr_fail(ECR_E_INVALID, "%s:%ld: NUL byte in the line", r->path, r->line);
        r->buf[len] = '\0';
        cJSON *o = cJSON_ParseWithLength(r->buf, len);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return ecr_fail(ECR_E_INVALID, "%s:%ld: not a JSON object", r->path, r->line);
        }
        fill(rec, o);
        cJSON_Delete(o);
        if (!isnan(rec->step) && !(rec->step >= 0 && rec->step <= 9007199254740992.0 && rec->step == floor(rec->step)))
            return ecr_fail(ECR_E_INVALID, "%s:%ld: field 'step' is not a step number (an integer, 0 to 2^53)",
                            r->path, r->line);
        rec->line = r->line;
        rec->text = r->buf;
        rec->len = len;
        *more = 1;
        return ECR_OK;
    }
}
