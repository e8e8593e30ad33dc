/* checkpoint.c — what a checkpoint holds and how a run resumes from it: model.safetensors
 * with the run's metadata, train_state.safetensors (the weights, AdamW moments, step, RNG,
 * data cursor, the options a resume must share), and the log cut back to the checkpoint's
 * step.
 *
 * Commit protocol. A checkpoint is committed by one rename: that of train_state.safetensors,
 * which holds everything a resume needs (the weights included). Before it, the log is
 * flushed and fsynced (every record up to the checkpoint is durable) and the model files
 * are replaced (each atomically). A kill at any instant therefore leaves either the previous
 * state file or the new one, each complete; a kill between the model's rename and the
 * state's leaves model.safetensors one checkpoint ahead, which the resume rewrites from the
 * state's weights. */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"
#include "comm.h"
#include "runlog.h"
#include "util.h"
#include "model_internal.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The options a resumed run must share with the run it continues, as a JSON object of
 * strings (fixed key order). Caller frees. */
char *ecr_tr_options_json(const trainer *t) {
    const ecr_train_opts *o = &t->o;
    const ecr_config *c = &o->config;
    char v[64];
    cJSON *j = cJSON_CreateObject();
#define PUT(key, ...) do { snprintf(v, sizeof v, __VA_ARGS__); cJSON_AddStringToObject(j, key, v); } while (0)
    PUT("vocab_size", "%d", c->vocab_size);
    PUT("dim", "%d", c->dim);
    PUT("n_layers", "%d", c->n_layers);
    PUT("n_heads", "%d", c->n_heads);
    PUT("hidden_dim", "%d", c->hidden_dim);
    PUT("max_seq_len", "%d", c->max_seq_len);
    PUT("rope_theta", "%.9g", c->rope_theta);
    PUT("norm_eps", "%.9g", c->norm_eps);
    PUT("tied", "%d", c->tied);
    PUT("ecr_dim", "%d", c->ecr_dim);
    PUT("batch_rows", "%d", t->B);
    PUT("seq_len", "%d", t->T);
    PUT("lr", "%.9g", o->lr);
    PUT("min_lr", "%.9g", o->min_lr);
    PUT("warmup", "%lld", (long long)o->warmup);
    PUT("weight_decay", "%.9g", o->weight_decay);
    PUT("beta1", "%.9g", o->beta1);
    PUT("beta2", "%.9g", o->beta2);
    PUT("eps", "%.9g", o->eps);
    PUT("grad_clip", "%.9g", o->grad_clip);
    PUT("seed", "%llu", (unsigned long long)o->seed);
    PUT("data_texts", "%zu", t->data->n_texts);
    PUT("data_tokens", "%zu", t->data->n_tokens);
    PUT("steps", "%lld", (long long)t->total);
    /* like the objective's keys below, only when not the default: fp32 runs keep their keys */
    if (o->precision == ECR_PRECISION_BF16) PUT("precision", "%s", ecr_precision_name(o->precision));
    /* each term that is on (terms.c): what its input files hash to, then its numeric
     * options; absent when off, so runs of the plain LM objective keep the keys they had */
    for (int i = 0; ecr_train_term(i); i++) {
        const ecr_term_info *term = ecr_train_term(i);
        if (!ecr_train_term_on(term, o)) continue;
        const ecr_tr_term *h = ecr_tr_term_hooks(term);
        if (h && h->hash_key) PUT(h->hash_key, "%s", (const char *)t + h->hash);
        if (term->on == ECR_TERM_ON_OBJECTIVE) PUT("objective", "%s", ecr_train_objective_name(o->objective));
        for (int k = 0; k < term->n_opts; k++) {
            const ecr_term_opt *p = &term->opts[k];
            const void *field = (const char *)o + p->offset;
            if (p->kind == ECR_TERM_PATH || (p->kind == ECR_TERM_FLOAT && p->zero_unset && *(const float *)field == 0))
                continue;
            ecr_tr_opt_number(p, o, v, sizeof v);
            cJSON_AddStringToObject(j, p->key, v);
        }
    }
#undef PUT
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* ---- the JSONL log -------------------------------------------------------------------- */

/* Keeps the records of steps <= `step`, in order, atomically (a torn last line goes too),
 * reading one line at a time. No log yet is fine; a log that cannot be read is an error:
 * appending after records that were not dropped would leave stale steps in it. */
ecr_status ecr_tr_log_truncate(const char *path, int64_t step) {
    if (!ecr_file_exists(path)) return ECR_OK;
    ecr_log_reader *r = NULL;
    ecr_atomic_file af;
    memset(&af, 0, sizeof af);
    ecr_status st = ecr_log_open(path, &r);
    if (!st) st = ecr_atomic_open(&af, path);
    ecr_log_record rec;
    int more = 1;
    while (!st && more && !(st = ecr_log_next(r, &rec, &more)) && more) {
        if (!(rec.step <= (double)step)) continue; /* later steps, and records without a step */
        if (fwrite(rec.text, 1, rec.len, af.fp) != rec.len || fputc('\n', af.fp) == EOF)
            st = ecr_fail(ECR_E_IO, "%s: write failed: %s", path, strerror(errno));
    }
    ecr_log_close(r);
    if (st) {
        ecr_atomic_abort(&af);
        return st;
    }
    return ecr_atomic_commit(&af);
}

double ecr_tr_elapsed(const trainer *t) { return t->elapsed0 + (ecr_now() - t->t_start); }

/* ---- checkpoints ---------------------------------------------------------------------- */

/* model.safetensors metadata: the step and what each term was trained with (its hook in
 * term_hooks.c; see the Training section of ecr.h). */
static void model_meta(const trainer *t, const char *step_s, ecr_tr_meta *m) {
    m->n = m->k = 0;
    m->key_val[m->n++] = "ecr_step";
    m->key_val[m->n++] = step_s;
    for (int i = 0; ecr_train_term(i); i++) {
        const ecr_term_info *term = ecr_train_term(i);
        const ecr_tr_term *h = ecr_tr_term_hooks(term);
        if (h) {
            h->meta(t, m);
            continue;
        }
        for (int k = 0; ecr_train_term_on(term, &t->o) && k < term->n_opts; k++) { /* its options */
            const ecr_term_opt *p = &term->opts[k];
            const void *field = (const char *)&t->o + p->offset;
            if (m->k == (int)(sizeof m->v / sizeof m->v[0]) || m->n + 3 > (int)(sizeof m->key_val / sizeof m->key_val[0])) break;
            const char *path = p->kind == ECR_TERM_PATH ? *(const char *const *)field : NULL;
            if (p->kind != ECR_TERM_PATH) ecr_tr_opt_number(p, &t->o, m->v[m->k], sizeof m->v[0]);
            m->key_val[m->n++] = p->key;
            m->key_val[m->n++] = p->kind == ECR_TERM_PATH ? (path ? path : "") : m->v[m->k++];
        }
    }
    m->key_val[m->n] = NULL;
}

/* Makes every log record written so far durable: flushed, then fsynced. */
static ecr_status log_sync(trainer *t) {
    if (!t->log) return ECR_OK;
    if (fflush(t->log) != 0 || ferror(t->log) || fsync(fileno(t->log)) != 0)
        return ecr_fail(ECR_E_IO, "%s: write failed: %s", t->log_path, strerror(errno));
    return ECR_OK;
}

ecr_status ecr_tr_save_checkpoint(trainer *t) {
    char step_s[32], tokens_s[32], elapsed_s[32], hash[17];
    if (t->rank > 0) { /* rank 0 writes */
        t->last_ckpt = t->step;
        return ECR_OK;
    }
    ecr_status st = log_sync(t);
    if (st) return st;
    snprintf(step_s, sizeof step_s, "%lld", (long long)t->step);
    snprintf(tokens_s, sizeof tokens_s, "%lld", (long long)t->tokens);
    snprintf(elapsed_s, sizeof elapsed_s, "%.3f", ecr_tr_elapsed(t));
    ecr_tr_meta meta;
    model_meta(t, step_s, &meta);
    if ((st = ecr_model_save(t->model, t->o.out_dir, NULL, meta.key_val))) return st;
    char *opts = ecr_tr_options_json(t);
    if (!opts) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", t->state_path);
    ecr_hash_hex(opts, strlen(opts), hash);
    size_t np = ecr_model_num_params(t->model), nc = ecr_batcher_cursor_len(t->batcher);
    int64_t *cursor = malloc(nc * sizeof *cursor);
    int64_t step_v[1] = {t->step}, rng_v[1] = {(int64_t)t->rng};
    int64_t sh_p[1] = {(int64_t)np}, sh_1[1] = {1}, sh_c[1] = {(int64_t)nc};
    ecr_st_writer *w = NULL;
    if (!cursor) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", t->state_path);
    else ecr_batcher_get_cursor(t->batcher, cursor);
    if (!st) st = ecr_st_writer_create(&w);
    if (!st) st = ecr_st_writer_add(w, "params", ECR_F32, 1, sh_p, ecr_model_params_ro(t->model));
    if (!st) st = ecr_st_writer_add(w, "adam.m", ECR_F32, 1, sh_p, ecr_adamw_m(t->opt));
    if (!st) st = ecr_st_writer_add(w, "adam.v", ECR_F32, 1, sh_p, ecr_adamw_v(t->opt));
    if (!st) st = ecr_st_writer_add(w, "step", ECR_I64, 1, sh_1, step_v);
    if (!st) st = ecr_st_writer_add(w, "rng", ECR_I64, 1, sh_1, rng_v);
    if (!st) st = ecr_st_writer_add(w, "data_cursor", ECR_I64, 1, sh_c, cursor);
    if (!st) st = ecr_st_writer_meta(w, "format", STATE_FORMAT);
    if (!st) st = ecr_st_writer_meta(w, "step", step_s);
    if (!st) st = ecr_st_writer_meta(w, "tokens", tokens_s);
    if (!st) st = ecr_st_writer_meta(w, "elapsed_s", elapsed_s);
    char procs[16];
    snprintf(procs, sizeof procs, "%d", t->world);
    if (!st) st = ecr_st_writer_meta(w, "processes", procs); /* informative: a resume may use another N */
    if (!st) st = ecr_st_writer_meta(w, "options", opts);
    if (!st) st = ecr_st_writer_meta(w, "options_hash", hash);
    if (!st) st = ecr_st_writer_write(w, t->state_path);
    ecr_st_writer_free(w);
    free(cursor);
    free(opts);
    if (!st) t->last_ckpt = t->step;
    return st;
}

/* The first option the checkpoint had and the current run has not (a term dropped), else the
 * first whose value differs between the saved and the current JSON, or OK. */
static ecr_status check_options(const trainer *t, const char *saved) {
    char *now = ecr_tr_options_json(t);
    cJSON *a = cJSON_Parse(saved), *b = now ? cJSON_Parse(now) : NULL;
    ecr_status st = ECR_OK;
    if (!a || !b) st = ecr_fail(ECR_E_INVALID, "%s: metadata 'options' is not JSON", t->state_path);
    for (const cJSON *y = a ? a->child : NULL; !st && y; y = y->next) /* options dropped now */
        if (!cJSON_GetObjectItemCaseSensitive(b, y->string))
            st = ecr_fail(ECR_E_INVALID,
                          "%s: option '%s' was %s in the checkpoint, now off (resume needs the same options)",
                          t->state_path, y->string, cJSON_IsString(y) ? y->valuestring : "set");
    for (const cJSON *x = b ? b->child : NULL; !st && x; x = x->next) {
        if (!strcmp(x->string, "steps")) continue; /* --steps may change on resume */
        const cJSON *y = cJSON_GetObjectItemCaseSensitive(a, x->string);
        const char *ys = cJSON_IsString(y) ? y->valuestring : "(missing)";
        if (strcmp(ys, x->valuestring) != 0)
            st = ecr_fail(ECR_E_INVALID,
                          "%s: option '%s' was %s in the checkpoint, now %s (resume needs the same options)",
                          t->state_path, x->string, ys, x->valuestring);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(now);
    return st;
}

/* The data of 1-D tensor `name` of n elements (the error names the file and tensor). */
static ecr_status state_tensor(const ecr_st_file *f, const char *name, ecr_dtype dt, int64_t n,
                               const void **data) {
    int64_t sh[1] = {n};
    const ecr_tensor_view *v = NULL;
    ecr_status st = ecr_st_get(f, name, dt, 1, sh, &v);
    if (st) return st;
    *data = v->data;
    return ECR_OK;
}

/* After the state is loaded: the model files must hold the state's step. A state of the
 * first format has no weights of its own, so a mismatch there cannot be repaired; with the
 * weights in the state, model files left one checkpoint ahead by a kill between the two
 * renames are rewritten now, so that the folder is consistent before training goes on. */
static ecr_status model_matches_state(trainer *t, int v1) {
    int64_t ms = ecr_tr_model_file_step(t->model_path);
    if (ms == t->step) return ECR_OK;
    if (v1)
        return ecr_fail(ECR_E_INVALID, "%s: holds step %lld but %s holds step %lld (interrupted checkpoint)",
                        t->model_path, (long long)ms, t->state_path, (long long)t->step);
    char step_s[32];
    snprintf(step_s, sizeof step_s, "%lld", (long long)t->step);
    ecr_tr_meta meta;
    model_meta(t, step_s, &meta);
    return ecr_model_save(t->model, t->o.out_dir, NULL, meta.key_val);
}

/* Loads train_state.safetensors into the trainer (model already loaded from the folder; its
 * weights are replaced by the state's). */
static ecr_status load_state(trainer *t);

/* Rank 0's resumed state to the other ranks: the weights, the AdamW moments, the step, the
 * PRNG, the token count, the elapsed time and the data cursor (one process: nothing). */
static ecr_status share_state(trainer *t) {
    if (t->world == 1) return ECR_OK;
    const ecr_comm *c = t->o.comm;
    size_t np = ecr_model_num_params(t->model), nc = ecr_batcher_cursor_len(t->batcher);
    int64_t head[4] = {t->step, (int64_t)t->rng, t->tokens, 0};
    memcpy(&head[3], &t->elapsed0, sizeof head[3]);
    int64_t *cur = malloc(nc * sizeof *cur);
    if (!cur) return ecr_fail(ECR_E_NOMEM, "resume: out of memory");
    if (t->rank == 0) ecr_batcher_get_cursor(t->batcher, cur);
    ecr_status st = ecr_comm_bcast(c, ecr_model_params(t->model), np * sizeof(float), 0, &t->comm_s);
    if (!st) st = ecr_comm_bcast(c, ecr_adamw_m(t->opt), np * sizeof(float), 0, &t->comm_s);
    if (!st) st = ecr_comm_bcast(c, ecr_adamw_v(t->opt), np * sizeof(float), 0, &t->comm_s);
    if (!st) st = ecr_comm_bcast(c, head, sizeof head, 0, &t->comm_s);
    if (!st) st = ecr_comm_bcast(c, cur, nc * sizeof *cur, 0, &t->comm_s);
    if (!st && t->rank > 0) {
        t->step = head[0];
        t->rng = (uint64_t)head[1];
        t->tokens = head[2];
        memcpy(&t->elapsed0, &head[3], sizeof t->elapsed0);
        ecr_adamw_set_steps(t->opt, t->step);
        st = ecr_batcher_set_cursor(t->batcher, cur, nc);
    }
    free(cur);
    return st;
}

ecr_status ecr_tr_load_state(trainer *t) {
    if (t->rank > 0) return share_state(t);
    ecr_status st = load_state(t);
    return st ? st : share_state(t);
}

/* Rank 0's side of ecr_tr_load_state: the file into the trainer. */
static ecr_status load_state(trainer *t) {
    ecr_st_file *f = NULL;
    const char *path = t->state_path;
    ecr_status st = ecr_st_open(path, &f);
    if (st) return st;
    const char *fmt = ecr_st_meta(f, "format"), *opts = ecr_st_meta(f, "options");
    int v1 = fmt && !strcmp(fmt, STATE_FORMAT_V1);
    if (!fmt || (strcmp(fmt, STATE_FORMAT) != 0 && !v1))
        st = ecr_fail(ECR_E_INVALID, "%s: metadata 'format' is '%s', expected '%s'", path,
                      fmt ? fmt : "(none)", STATE_FORMAT);
    if (!st && !opts) st = ecr_fail(ECR_E_INVALID, "%s: metadata 'options' missing", path);
    if (!st) st = check_options(t, opts);
    size_t np = ecr_model_num_params(t->model), nc = ecr_batcher_cursor_len(t->batcher);
    const void *params = NULL, *m = NULL, *v = NULL, *step = NULL, *rng = NULL, *cur = NULL;
    if (!st && !v1) st = state_tensor(f, "params", ECR_F32, (int64_t)np, &params);
    if (!st) st = state_tensor(f, "adam.m", ECR_F32, (int64_t)np, &m);
    if (!st) st = state_tensor(f, "adam.v", ECR_F32, (int64_t)np, &v);
    if (!st) st = state_tensor(f, "step", ECR_I64, 1, &step);
    if (!st) st = state_tensor(f, "rng", ECR_I64, 1, &rng);
    if (!st) st = state_tensor(f, "data_cursor", ECR_I64, (int64_t)nc, &cur);
    if (!st) {
        if (params) memcpy(ecr_model_params(t->model), params, np * sizeof(float));
        memcpy(ecr_adamw_m(t->opt), m, np * sizeof(float));
        memcpy(ecr_adamw_v(t->opt), v, np * sizeof(float));
        memcpy(&t->step, step, sizeof t->step);
        ecr_adamw_set_steps(t->opt, t->step);
        int64_t r;
        memcpy(&r, rng, sizeof r);
        t->rng = (uint64_t)r;
        int64_t *c = malloc(nc * sizeof *c);
        if (!c) st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
        else {
            memcpy(c, cur, nc * sizeof *c);
            st = ecr_batcher_set_cursor(t->batcher, c, nc);
            if (st) {
                char why[512];
                snprintf(why, sizeof why, "%s", ecr_last_error());
                ecr_fail(st, "%s: %s", path, why);
            }
            free(c);
        }
    }
    if (!st && t->step < 0) st = ecr_fail(ECR_E_INVALID, "%s: tensor 'step' is negative", path);
    const char *tok = ecr_st_meta(f, "tokens"), *el = ecr_st_meta(f, "elapsed_s"), *np_s = ecr_st_meta(f, "processes");
    int saved_np = np_s ? atoi(np_s) : 1;
    if (!st && saved_np != t->world && !t->o.quiet)
        fprintf(stderr, "train: the checkpoint was written by a run of %d process%s, this one has %d: the same "
                        "optimisation goes on (the numbers agree with an uninterrupted run up to summation order)\n",
                saved_np, saved_np == 1 ? "" : "es", t->world);
    if (!st) {
        t->tokens = tok ? strtoll(tok, NULL, 10) : 0;
        t->elapsed0 = el ? strtod(el, NULL) : 0.0;
    }
    ecr_st_close(f);
    if (!st) st = model_matches_state(t, v1);
    return st;
}

/* The step recorded in model.safetensors' metadata (-1 if absent). */
int64_t ecr_tr_model_file_step(const char *path) {
    ecr_st_file *f = NULL;
    if (ecr_st_open(path, &f)) return -1;
    const char *s = ecr_st_meta(f, "ecr_step");
    int64_t step = s ? strtoll(s, NULL, 10) : -1;
    ecr_st_close(f);
    return step;
}
