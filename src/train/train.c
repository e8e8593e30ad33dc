/* train.c — the trainer: options, setup, the training loop and its validation passes (see
 * "Training" in ecr.h). Checkpoints and resume are in checkpoint.c, the LM evaluation in
 * eval/lm_eval.c.
 *
 * One step: pack a batch, forward (the model and the objective's extra terms, see
 * losses.h), backward (gradients accumulate from zero), global gradient norm, stop on a
 * non-finite loss or norm, clip, AdamW with the scheduled lr, log. Every piece of state that decides the next step (parameters, AdamW moments, the
 * step, the data cursor) is in the checkpoint, so a resumed run repeats the numbers of an
 * uninterrupted one. */
#define _POSIX_C_SOURCE 200809L
#include "ecr.h"
#include "trainer.h"
#include "comm.h"
#include "term.h"
#include "rng.h"
#include "batcher_internal.h"
#include "runlog.h"
#include "model_internal.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


void ecr_train_opts_default(ecr_train_opts *o) {
    memset(o, 0, sizeof *o);
    ecr_config_preset("tiny", &o->config);
    o->config.vocab_size = 0;
    o->epochs = 1.0;
    o->tokens_per_step = 4096;
    o->lr = 1e-3f;
    o->min_lr = -1.0f;
    o->warmup = -1;
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->grad_clip = 1.0f;
    o->seed = 1;
    o->log_every = 10;
    o->objective = ECR_TRAIN_LM;
    o->contrastive_weight = 1.0f;
    o->contrastive_tau = 0.05f;
    o->group_size = 2;
    o->ecr_weight = 0.05f;
    o->ecr_tau = 0.0f;
    o->kd_alpha = 0.5f;
    o->kd_temp = 2.0f;
    o->feat_weight = 1.0f;
    o->rkd_weight = 1.0f;
    o->rel_weight = 1.0f;
    o->con_tau = 0.1f;
    o->orth_weight = 1.0f;
    o->mres_weight = 0.05f;
    o->mid_layer = 1;
}

ecr_status ecr_train_objective_parse(const char *name, ecr_train_objective *out) {
    if (name && !strcmp(name, "lm")) *out = ECR_TRAIN_LM;
    else if (name && !strcmp(name, "lm+contrastive")) *out = ECR_TRAIN_LM_CONTRASTIVE;
    else return ecr_fail(ECR_E_INVALID, "objective '%s': expected lm or lm+contrastive", name ? name : "");
    return ECR_OK;
}

const char *ecr_train_objective_name(ecr_train_objective obj) {
    return obj == ECR_TRAIN_LM_CONTRASTIVE ? "lm+contrastive" : "lm";
}


static void trainer_free(trainer *t) {
    ecr_data_free(t->data);
    ecr_data_free(t->valid);
    ecr_batcher_free(t->batcher);
    ecr_model_free(t->model);
    ecr_adamw_free(t->opt);
    ecr_anchors_free(t->anchors);
    for (int r = 0; r < t->n_mres; r++) ecr_anchors_free(t->mres[r]);
    ecr_objective_free(t->obj);
    ecr_model_free(t->kd_teacher);
    if (t->rkd_emb != t->feat_emb) free(t->rkd_emb);
    free(t->feat_emb);
    free(t->tok_path);
    free(t->state_path);
    free(t->log_path);
    free(t->model_path);
    if (t->log) fclose(t->log);
    ecr_dir_unlock(t->lock_fd);
}

/* ---- setup ---------------------------------------------------------------------------- */

/* Writes out_dir/tokenizer.json from --tokenizer or the data's embedded copy, checking it
 * against the data's tokenizer_hash. */
static ecr_status setup_tokenizer(trainer *t) {
    const char *meta_hash = ecr_st_meta(t->data->file, "tokenizer_hash");
    char *text = NULL;
    size_t len = 0;
    if (t->o.tokenizer_path) {
        ecr_status rst = ecr_read_file(t->o.tokenizer_path, &text, &len);
        if (rst) return rst;
        char hash[17];
        ecr_hash_hex(text, len, hash);
        if (meta_hash && strcmp(hash, meta_hash) != 0) {
            free(text);
            return ecr_fail(ECR_E_INVALID, "%s: not the tokenizer %s was prepared with (hash %s, data says %s)",
                            t->o.tokenizer_path, t->o.data_path, hash, meta_hash);
        }
    } else if (t->data->tokenizer_json) {
        len = strlen(t->data->tokenizer_json);
        text = malloc(len + 1);
        if (!text) return ecr_fail(ECR_E_NOMEM, "out of memory");
        memcpy(text, t->data->tokenizer_json, len + 1);
    } else {
        return ecr_fail(ECR_E_INVALID, "%s: metadata 'tokenizer.json' missing; pass --tokenizer",
                        t->o.data_path);
    }
    ecr_status st = ecr_write_file(t->tok_path, text, len);
    free(text);
    if (st) return st;
    /* the ids the batcher needs come from the tokenizer itself */
    ecr_tokenizer *tok = NULL;
    st = ecr_tokenizer_load(t->tok_path, &tok);
    if (st) return st;
    if (ecr_tokenizer_vocab_size(tok) != t->data->vocab_size)
        st = ecr_fail(ECR_E_INVALID, "%s: vocabulary of %d tokens, but %s says %d", t->tok_path,
                      ecr_tokenizer_vocab_size(tok), t->o.data_path, t->data->vocab_size);
    ecr_tokenizer_free(tok);
    return st;
}

/* The setup hook of every term of the table (term_hooks.c) with `late` as given, in table
 * order. */
static ecr_status setup_terms(trainer *t, int late) {
    ecr_status st = ECR_OK;
    for (int i = 0; !st && ecr_train_term(i); i++) {
        const ecr_tr_term *h = ecr_tr_term_hooks(ecr_train_term(i));
        if (h && h->late == late) st = h->setup(t);
    }
    return st;
}

static ecr_status resolve_options(trainer *t, const ecr_train_opts *in) {
    ecr_train_opts *o = &t->o;
    *o = *in;
    if (!o->data_path) return ecr_fail(ECR_E_INVALID, "train: no training data given");
    if (!o->out_dir) return ecr_fail(ECR_E_INVALID, "train: no output folder given");
    if (o->config.vocab_size != 0 && o->config.vocab_size != t->data->vocab_size)
        return ecr_fail(ECR_E_INVALID, "%s: the data's vocabulary has %d tokens, but vocab_size is set to %d",
                        o->data_path, t->data->vocab_size, o->config.vocab_size);
    o->config.vocab_size = t->data->vocab_size;
    ecr_precision want = o->precision;
    ecr_status st = ecr_precision_resolve(want, &o->precision);
    if (st) return st;
    t->precision_auto = want == ECR_PRECISION_AUTO;
    if ((st = setup_terms(t, 0))) return st; /* the inputs that fix ecr_dim */
    if ((st = ecr_config_validate(&o->config))) return st;
    t->T = o->seq_len > 0 ? o->seq_len : (o->config.max_seq_len < 256 ? o->config.max_seq_len : 256);
    if (t->T < 2 || t->T > o->config.max_seq_len)
        return ecr_fail(ECR_E_INVALID, "train: seq_len %d is outside [2, max_seq_len %d]", t->T,
                        o->config.max_seq_len);
    if (o->tokens_per_step < 1) return ecr_fail(ECR_E_INVALID, "train: tokens_per_step must be positive");
    int64_t B = o->tokens_per_step / t->T;
    t->B = (int)(B < 1 ? 1 : B > 65536 ? 65536 : B);
    if (!(o->lr > 0) || !isfinite(o->lr)) return ecr_fail(ECR_E_INVALID, "train: lr must be positive");
    if (o->min_lr < 0) o->min_lr = o->lr / 10;
    if (o->steps < 0 || (o->steps == 0 && !(o->epochs > 0)))
        return ecr_fail(ECR_E_INVALID, "train: give a positive number of steps or epochs");
    if (o->log_every < 1) o->log_every = 10;
    if (o->objective != ECR_TRAIN_LM && o->objective != ECR_TRAIN_LM_CONTRASTIVE)
        return ecr_fail(ECR_E_INVALID, "train: unknown objective %d", (int)o->objective);
    if ((st = setup_terms(t, 1))) return st; /* the ones that need the batch shape */
    if (t->B < t->world)
        return ecr_fail(ECR_E_INVALID, "train: a step of %d rows cannot be shared by %d processes; "
                        "raise the tokens per step to at least %d", t->B, t->world, t->world * t->T);
    if (t->rank > 0) o->quiet = 1; /* rank 0 reports */
    return ECR_OK;
}

/* Steps of the schedule: --steps, or the batches of `epochs` epochs (dry runs). */
static ecr_status count_steps(trainer *t) {
    if (t->o.steps > 0) {
        t->total = t->o.steps;
    } else {
        double e = t->o.epochs;
        int64_t total = 0, n = 0, full = (int64_t)floor(e);
        for (int64_t k = 0; k < full; k++) {
            ecr_status st = ecr_batcher_epoch_batches(t->batcher, k, &n);
            if (st) return st;
            total += n;
        }
        if (e > (double)full) {
            ecr_status st = ecr_batcher_epoch_batches(t->batcher, full, &n);
            if (st) return st;
            total += (int64_t)ceil((e - (double)full) * (double)n);
        }
        t->total = total > 0 ? total : 1;
    }
    if (t->o.warmup < 0) {
        int64_t w = t->total / 50;
        t->o.warmup = w > 1000 ? 1000 : w;
    }
    return ECR_OK;
}

/* The temporary files of a run of this folder killed mid-write (the lock says none is
 * running now): each file a run writes, and run.json beside them. */
static void clean_leftovers(const trainer *t) {
    const char *files[] = {t->tok_path, t->state_path, t->log_path, t->model_path};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) ecr_atomic_clean(files[i]);
    const char *more[] = {"config.json", "run.json"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        char *p = ecr_path_join(t->o.out_dir, more[i]);
        if (p) ecr_atomic_clean(p);
        free(p);
    }
}

static ecr_status setup(trainer *t, const ecr_train_opts *in) {
    t->rank = ecr_comm_rank(in->comm);
    t->world = ecr_comm_size(in->comm);
    ecr_status st = ecr_data_open(in->data_path, &t->data);
    if (st) return st;
    if ((st = resolve_options(t, in))) return st;
    if (t->o.valid_path) {
        if ((st = ecr_data_open(t->o.valid_path, &t->valid))) return st;
        if (t->valid->vocab_size > t->o.config.vocab_size)
            return ecr_fail(ECR_E_INVALID, "%s: vocabulary of %d tokens, the training data has %d",
                            t->o.valid_path, t->valid->vocab_size, t->o.config.vocab_size);
    }
    if (t->rank == 0 && (st = ecr_make_dirs(t->o.out_dir))) return st;
    if (t->rank == 0 && (st = ecr_dir_lock(t->o.out_dir, "train", &t->lock_fd))) return st;
    t->tok_path = ecr_path_join(t->o.out_dir, "tokenizer.json");
    t->state_path = ecr_path_join(t->o.out_dir, "train_state.safetensors");
    t->log_path = ecr_path_join(t->o.out_dir, "log.jsonl");
    t->model_path = ecr_path_join(t->o.out_dir, "model.safetensors");
    if (!t->tok_path || !t->state_path || !t->log_path || !t->model_path)
        return ecr_fail(ECR_E_NOMEM, "out of memory");
    if (t->rank == 0) clean_leftovers(t);
    ecr_batcher_opts bo;
    ecr_batcher_opts_default(&bo);
    bo.B = t->B;
    bo.T = t->T;
    bo.seed = t->o.seed;
    if (t->o.objective == ECR_TRAIN_LM_CONTRASTIVE) { /* whole groups per step */
        bo.sampler = ecr_sampler_groups;
        bo.sampler_ctx = &t->o.group_size;
        bo.group_units = 1;
    }
    if ((st = ecr_batcher_create(t->data, &bo, &t->batcher))) {
        char why[512];
        snprintf(why, sizeof why, "%s", ecr_last_error());
        return ecr_fail(st, "%s: %s", t->o.data_path, why);
    }
    if ((st = count_steps(t))) return st;
    t->last_ckpt = -1;
    t->last_eval = -1;
    t->rng = ecr_splitmix64_stream(t->o.seed, ECR_STREAM_TRAINER);
    if (t->rank > 0) { /* rank 0 reads and writes the folder; a resume sends its state */
        if ((st = ecr_model_create(&t->o.config, t->o.seed, &t->model))) return st;
    } else if (t->o.resume) {
        if (!ecr_file_exists(t->state_path))
            return ecr_fail(ECR_E_INVALID, "%s: no checkpoint to resume from", t->state_path);
        if ((st = ecr_model_load(t->o.out_dir, &t->model))) return st;
    } else {
        if (ecr_file_exists(t->state_path))
            return ecr_fail(ECR_E_INVALID,
                            "%s: the folder already holds a training run; pass --resume or another --out",
                            t->state_path);
        if ((st = setup_tokenizer(t))) return st;
        if ((st = ecr_model_create(&t->o.config, t->o.seed, &t->model))) return st;
    }
    if ((st = ecr_model_set_precision(t->model, t->o.precision))) return st;
    ecr_adamw_opts ao;
    ecr_adamw_opts_default(&ao);
    ao.beta1 = t->o.beta1;
    ao.beta2 = t->o.beta2;
    ao.eps = t->o.eps;
    ao.weight_decay = t->o.weight_decay;
    if ((st = ecr_adamw_create(t->model, &ao, &t->opt))) return st;
    if (ecr_adamw_size(t->opt) != ecr_model_num_params(t->model))
        return ecr_fail(ECR_E_RUNTIME, "train: optimizer state does not match the model");
    ecr_objective_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.train = &t->o; /* the terms without a hook read their options there */
    oo.comm = t->o.comm;
    for (int i = 0; ecr_train_term(i); i++) {
        const ecr_tr_term *h = ecr_tr_term_hooks(ecr_train_term(i));
        if (h) h->objective(t, &oo);
    }
    if ((st = ecr_objective_create(&oo, t->model, &t->obj))) return st;
    if (t->o.resume) {
        if ((st = ecr_tr_load_state(t))) return st;
        t->last_ckpt = t->step;
        if (t->rank == 0 && (st = ecr_tr_log_truncate(t->log_path, t->step))) return st;
    }
    if (t->rank > 0) return ECR_OK; /* no log */
    t->log = fopen(t->log_path, t->o.resume ? "ab" : "wb");
    if (!t->log) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", t->log_path, strerror(errno));
    return ECR_OK;
}

/* ---- the loop -------------------------------------------------------------------------- */

static void fmt_duration(double s, char *buf, size_t n) {
    if (s < 0 || !isfinite(s)) s = 0;
    long x = (long)(s + 0.5);
    if (x >= 3600) snprintf(buf, n, "%ldh%02ldm", x / 3600, (x / 60) % 60);
    else if (x >= 60) snprintf(buf, n, "%ldm%02lds", x / 60, x % 60);
    else snprintf(buf, n, "%lds", x);
}

/* The validation geometry of one space x [n, dim]: effective rank, and, when the data has
 * English and translation groups (labels), cross-lingual P@1 (label transfer) as `ecr eval`
 * computes them. Entries it cannot compute stay NaN. */
static ecr_status valid_space(const ecr_data *d, const float *x, int64_t n, int dim, int en, ecr_valid_geo *g) {
    ecr_status st = ecr_metric_effective_rank(x, n, dim, &g->eff_rank);
    if (!st && en >= 0)
        st = ecr_metric_retrieval_p1(x, n, dim, d->lang, d->group, d->n_langs, en, NULL, &g->p1);
    if (!st && en >= 0 && d->n_labels > 0)
        st = ecr_metric_label_transfer(x, n, dim, d->lang, d->label, d->n_langs, d->n_labels, en, ECR_KNN_K,
                                       NULL, &g->transfer);
    return st;
}

/* Geometry of the validation embeddings h [n, dim] and, when the model has an ECR
 * projection, of u = P h / |P h| (geo[1] stays NaN without one). */
static ecr_status valid_geometry(trainer *t, const float *h, int64_t n, ecr_valid_geo geo[2]) {
    const ecr_data *d = t->valid;
    int dim = ecr_model_config(t->model)->dim, en = -1;
    for (int l = 0; l < d->n_langs; l++)
        if (!strcmp(d->langs[l], "en")) en = l;
    if (!d->lang || !d->group) en = -1;
    ecr_status st = valid_space(d, h, n, dim, en, &geo[0]);
    const ecr_param_info *proj = ecr_model_find_tensor(t->model, "ecr.proj.weight");
    if (st || !proj) return st;
    int D = (int)proj->shape[0];
    float *u = malloc((size_t)n * D * sizeof *u);
    if (!u) return ecr_fail(ECR_E_NOMEM, "validation: out of memory for %lld x %d floats", (long long)n, D);
    st = ecr_model_project(t->model, h, n, u);
    if (!st) st = valid_space(d, u, n, D, en, &geo[1]);
    free(u);
    return st;
}

/* One validation pass: loss, bits/byte and the geometry of the text embeddings, as one log
 * record (ecr_log_write_valid). */
static ecr_status validate(trainer *t) {
    if (!t->valid || t->last_eval == t->step || t->rank > 0) return ECR_OK;
    int64_t n = (int64_t)t->valid->n_texts;
    int dim = ecr_model_config(t->model)->dim;
    float *h = malloc((size_t)(n ? n : 1) * dim * sizeof *h);
    if (!h) return ecr_fail(ECR_E_NOMEM, "validation: out of memory for %lld x %d floats", (long long)n, dim);
    ecr_lm_eval ev;
    ecr_status st = ecr_eval_lm_embed(t->model, t->valid, t->T, (int64_t)t->B * t->T, 1, &ev, h, NULL);
    if (st) {
        free(h);
        return st;
    }
    ecr_valid_geo geo[2] = {{NAN, NAN, NAN}, {NAN, NAN, NAN}};
    if (n >= 2) st = valid_geometry(t, h, n, geo);
    free(h);
    if (st) {
        ecr_lm_eval_release(&ev);
        return st;
    }
    double loss = ecr_lm_loss(&ev.overall), bpb = ecr_lm_bpb(&ev.overall);
    ecr_log_write_valid(t->log, t->step, loss, bpb, ev.overall.tokens, geo);
    if (fflush(t->log) != 0 || ferror(t->log)) {
        ecr_lm_eval_release(&ev);
        return ecr_fail(ECR_E_IO, "%s: write failed: %s", t->log_path, strerror(errno));
    }
    if (!t->o.quiet) {
        fprintf(stderr, "train: step %lld validation loss %.4f, %.4f bits/byte (%lld tokens), eff. rank %.1f",
                (long long)t->step, loss, bpb, (long long)ev.overall.tokens, geo[0].eff_rank);
        if (isfinite(geo[0].p1)) fprintf(stderr, ", P@1 %.3f", geo[0].p1);
        if (isfinite(geo[1].p1)) fprintf(stderr, " (u %.3f)", geo[1].p1);
        fprintf(stderr, "\n");
    }
    ecr_lm_eval_release(&ev);
    t->last_eval = t->step;
    return ECR_OK;
}

static ecr_status nonfinite(const trainer *t, int64_t step, const char *what, double x) {
    char kept[96];
    if (t->last_ckpt >= 0) snprintf(kept, sizeof kept, "last good checkpoint at step %lld kept", (long long)t->last_ckpt);
    else snprintf(kept, sizeof kept, "no checkpoint was written");
    return ecr_fail(ECR_E_RUNTIME, "step %lld: %s is %s; %s", (long long)step, what,
                    isnan(x) ? "NaN" : "infinite", kept);
}

/* One optimizer step; fills the numbers it logs. */
static ecr_status train_step(trainer *t, ecr_objective_terms *terms, double *gnorm, float *lr, int *clipped) {
    const ecr_batch *b = NULL;
    int64_t step = t->step + 1;
    ecr_status st = ecr_batcher_next(t->batcher, &b, NULL);
    if (st) return st;
    ecr_model_zero_grad(t->model);
    ecr_objective_set_progress(t->obj, (double)t->step / (double)t->total); /* steps done before this one */
    if ((st = ecr_objective_forward(t->obj, t->model, b, t->data, terms))) return st;
    if (t->o.nan_at_step == step) terms->total = NAN;
    if (!isfinite(terms->total)) return nonfinite(t, step, "loss", terms->total);
    if ((st = ecr_objective_backward(t->obj, t->model, b))) return st;
    if ((st = ecr_comm_sum_f32(t->o.comm, ecr_model_grads(t->model), ecr_model_num_params(t->model), &t->comm_s)))
        return st; /* each rank's share of the step's gradient: their sum is it */
    float norm = 0;
    st = ecr_clip_grad_norm(t->model, t->o.grad_clip, &norm);
    *gnorm = norm;
    if (st == ECR_E_RUNTIME || !isfinite(norm)) return nonfinite(t, step, "gradient norm", isfinite(norm) ? NAN : norm);
    if (st) return st;
    *clipped = t->o.grad_clip > 0 && norm > t->o.grad_clip;
    *lr = ecr_lr_schedule(step - 1, t->o.warmup, t->total, t->o.lr, t->o.min_lr);
    if ((st = ecr_adamw_step(t->opt, t->model, *lr))) return st;
    t->step = step;
    t->tokens += terms->n_targets;
    return ECR_OK;
}

/* The unweighted value of term `term` in the objective's terms. */
static double term_value(const ecr_term_info *term, const ecr_objective_terms *x) {
    return *(const double *)((const char *)x + term->ops->value);
}

/* The objective's extra terms for a log record (",\"ecr\":...,\"total\":..."), or "": the
 * terms that are on, in the table's order (terms.c). */
static void extra_terms_json(const trainer *t, const ecr_objective_terms *x, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; ecr_train_term(i) && k < n; i++) {
        const ecr_term_info *term = ecr_train_term(i);
        if (ecr_train_term_on(term, &t->o))
            k += (size_t)snprintf(buf + k, n - k, ",\"%s\":%.7g", term->name, term_value(term, x));
    }
    if (k > 0 && k < n) snprintf(buf + k, n - k, ",\"total\":%.7g", x->total);
}

/* The same for a progress line ("  contrastive 1.2345  ecr 2.3456"). */
static void extra_terms_text(const trainer *t, const ecr_objective_terms *x, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; ecr_train_term(i) && k < n; i++) {
        const ecr_term_info *term = ecr_train_term(i);
        if (ecr_train_term_on(term, &t->o))
            k += (size_t)snprintf(buf + k, n - k, "  %s %.4f", term->name, term_value(term, x));
    }
}

static void print_start(const trainer *t) {
    if (t->o.quiet) return;
    const ecr_config *c = ecr_model_config(t->model);
    ecr_batcher_stats s;
    ecr_batcher_get_stats(t->batcher, &s);
    char resumed[64] = "";
    if (t->step > 0) snprintf(resumed, sizeof resumed, ", resuming after step %lld", (long long)t->step);
    fprintf(stderr, "train: %zu texts, %zu tokens; model %d layers x %d, %zu parameters; "
                    "batch %d x %d; %lld steps%s\n",
            t->data->n_texts, t->data->n_tokens, c->n_layers, c->dim, ecr_model_num_params(t->model),
            t->B, t->T, (long long)t->total, resumed);
    if (t->world > 1)
        fprintf(stderr, "train: %d processes, each %d to %d rows of each step's %d\n", t->world,
                t->B / t->world, (t->B + t->world - 1) / t->world, t->B);
    fprintf(stderr, "train: precision %s%s%s%s\n", ecr_precision_name(t->o.precision),
            t->precision_auto ? " (auto)" : "", t->o.precision == ECR_PRECISION_BF16 ? ", " : "",
            t->o.precision == ECR_PRECISION_BF16 ? ecr_bf16_engine() : "");
    if (s.n_truncated > 0)
        fprintf(stderr, "train: %lld texts are longer than %d tokens (longest %lld) and are truncated\n",
                (long long)s.n_truncated, t->T - 1, (long long)s.max_tokens);
    for (int i = 0; ecr_train_term(i); i++) {
        const ecr_term_info *term = ecr_train_term(i);
        const ecr_tr_term *h = ecr_tr_term_hooks(term);
        if (h) {
            h->describe(t, stderr);
        } else if (ecr_train_term_on(term, &t->o)) { /* a term without hooks: its options */
            char line[256];
            ecr_tr_term_options(term, &t->o, line, sizeof line);
            fprintf(stderr, "train: term %s:%s\n", term->name, line);
        }
    }
}

static ecr_status run(trainer *t) {
    int64_t end = t->total;
    if (t->o.stop_after > 0 && t->o.stop_after < end) end = t->o.stop_after;
    print_start(t);
    double window_t = ecr_now(), run_t0 = window_t;
    int64_t window_tok = 0, run_steps0 = t->step;
    ecr_status st = ECR_OK;
    while (!st && t->step < end) {
        double gnorm = 0, ts = ecr_now(), comm0 = t->comm_s + ecr_objective_comm_seconds(t->obj);
        float lr = 0;
        int clipped = 0;
        ecr_objective_terms x;
        if ((st = train_step(t, &x, &gnorm, &lr, &clipped))) break;
        double dt = ecr_now() - ts, loss = x.lm;
        int64_t nt = x.n_targets;
        char extra[360], extra_text[192];
        extra_terms_json(t, &x, extra, sizeof extra);
        extra_terms_text(t, &x, extra_text, sizeof extra_text);
        if (t->world > 1) { /* the step's seconds in collectives (this rank's wait included) */
            size_t k = strlen(extra);
            snprintf(extra + k, sizeof extra - k, ",\"comm_s\":%.6f",
                     t->comm_s + ecr_objective_comm_seconds(t->obj) - comm0);
        }
        window_tok += nt;
        ecr_log_step rec = {t->step, t->tokens, loss, lr, gnorm, dt > 0 ? (double)nt / dt : 0.0, ecr_tr_elapsed(t),
                            clipped, extra, ecr_precision_name(t->o.precision)};
        if (t->log) { /* rank 0 */
            ecr_log_write_step(t->log, &rec);
            if (fflush(t->log) != 0 || ferror(t->log)) {
                st = ecr_fail(ECR_E_IO, "%s: write failed: %s", t->log_path, strerror(errno));
                break;
            }
        }
        if (!t->o.quiet && (t->step % t->o.log_every == 0 || t->step == end)) {
            double now = ecr_now(), rate = window_tok / (now - window_t + 1e-9);
            double per_step = (now - run_t0) / (double)(t->step - run_steps0);
            char eta[32];
            fmt_duration(per_step * (double)(end - t->step), eta, sizeof eta);
            fprintf(stderr, "train: step %lld/%lld  epoch %.2f  loss %.4f%s  lr %.2e  |g| %.3f  %.0f tok/s  ETA %s\n",
                    (long long)t->step, (long long)t->total, ecr_batcher_progress(t->batcher), loss, extra_text,
                    lr, gnorm, rate, eta);
            window_t = now;
            window_tok = 0;
        }
        if (t->o.eval_every > 0 && t->step % t->o.eval_every == 0) st = validate(t);
        if (!st && t->o.save_every > 0 && t->step % t->o.save_every == 0) st = ecr_tr_save_checkpoint(t);
    }
    if (st) return st;
    if (t->step == t->total) st = validate(t);
    if (!st && t->last_ckpt != t->step) st = ecr_tr_save_checkpoint(t);
    if (!st && t->log) { /* the records are durable already (the checkpoint synced them); say if not */
        int r = fclose(t->log);
        t->log = NULL;
        if (r != 0) st = ecr_fail(ECR_E_IO, "%s: write failed: %s", t->log_path, strerror(errno));
    }
    if (!st && !t->o.quiet) {
        char el[32];
        fmt_duration(ecr_tr_elapsed(t), el, sizeof el);
        fprintf(stderr, "train: %lld steps done in %s; model in %s\n", (long long)t->step, el, t->o.out_dir);
    }
    return st;
}

ecr_status ecr_train(const ecr_train_opts *o) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.lock_fd = -1;
    t.t_start = ecr_now();
    ecr_set_threads(o->threads);
    ecr_status st = setup(&t, o);
    if (!st) st = run(&t);
    trainer_free(&t);
    return st;
}
