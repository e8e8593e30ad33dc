/* term_hooks.c — each objective term's side of the trainer, one block per term, in the order
 * of the term table (src/method/terms.c): the input files it reads and checks (setup), what
 * it hands the objective, what it writes into model.safetensors' metadata, its line at the
 * start of a run, and the hash of its inputs that a resumed run must match. train.c and
 * checkpoint.c loop over this table (contract: trainer.h).
 *
 * A new term that uses inputs the trainer already reads (the anchors, teacher vectors, the
 * teacher model) needs a row here only for what it writes beyond its options; a new kind of
 * input needs its setup here and a field in the trainer (trainer.h). */
#define _POSIX_C_SOURCE 200809L
#include "trainer.h"
#include "model_internal.h"
#include "util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define META(key, ...)                                                                   \
    do {                                                                                 \
        snprintf(m->v[m->k], sizeof m->v[0], __VA_ARGS__);                              \
        m->key_val[m->n++] = key;                                                        \
        m->key_val[m->n++] = m->v[m->k++];                                               \
    } while (0)
#define META_STR(key, s) (m->key_val[m->n++] = key, m->key_val[m->n++] = (s))

/* ---- contrastive: InfoNCE over groups of texts (objective lm+contrastive) ------------------- */

static int contrastive_on(const trainer *t) { return t->o.objective == ECR_TRAIN_LM_CONTRASTIVE; }

static ecr_status contrastive_setup(trainer *t) {
    const ecr_train_opts *o = &t->o;
    if (!contrastive_on(t)) return ECR_OK;
    if (!(o->contrastive_weight >= 0) || !isfinite(o->contrastive_weight) || !(o->contrastive_tau > 0) ||
        !isfinite(o->contrastive_tau))
        return ecr_fail(ECR_E_INVALID, "train: contrastive weight %g / temperature %g out of range",
                        (double)o->contrastive_weight, (double)o->contrastive_tau);
    if (o->group_size < 2 || o->group_size > ECR_MAX_WINDOW)
        return ecr_fail(ECR_E_INVALID, "train: group size %d is outside [2, %d]", o->group_size, ECR_MAX_WINDOW);
    if (t->B < o->group_size)
        return ecr_fail(ECR_E_INVALID, "train: a step of %d rows (tokens_per_step / seq_len) cannot hold a "
                        "group of %d texts; raise tokens_per_step or lower the group size", t->B,
                        o->group_size);
    return ECR_OK;
}

static void contrastive_objective(const trainer *t, ecr_objective_opts *oo) {
    if (!contrastive_on(t)) return;
    oo->contrastive_weight = t->o.contrastive_weight;
    oo->contrastive_tau = t->o.contrastive_tau;
}

static void contrastive_meta(const trainer *t, ecr_tr_meta *m) {
    const ecr_train_opts *o = &t->o;
    if (!contrastive_on(t)) return;
    META("objective", "%s", ecr_train_objective_name(o->objective));
    META("contrastive_weight", "%.9g", o->contrastive_weight);
    META("contrastive_tau", "%.9g", o->contrastive_tau);
    META("group_size", "%d", o->group_size);
}

static void contrastive_describe(const trainer *t, FILE *fp) {
    const ecr_train_opts *o = &t->o;
    if (contrastive_on(t))
        fprintf(fp, "train: objective lm + %g x InfoNCE (tau %g) over groups of %d texts per step\n",
                (double)o->contrastive_weight, (double)o->contrastive_tau, o->group_size);
}

/* ---- ecr: the anchors and the training texts' codes ------------------------------------------ */

/* Loads the anchors (--anchors): codes for exactly the training texts; the model's ecr_dim
 * becomes the anchors' dim and ecr_tau defaults to the file's tau. */
static ecr_status reg_setup(trainer *t) {
    ecr_train_opts *o = &t->o;
    if (!o->anchors_path) {
        if (o->ecr_soft) return ecr_fail(ECR_E_INVALID, "train: soft ECR codes need an anchors file");
        return ECR_OK;
    }
    ecr_status st = ecr_anchors_load(o->anchors_path, &t->anchors);
    if (st) return st;
    const ecr_anchors *a = t->anchors;
    if ((uint64_t)a->rows != (uint64_t)t->data->n_texts)
        return ecr_fail(ECR_E_INVALID, "%s: codes for %lld texts, but %s holds %zu texts (anchors must be "
                        "made from embeddings of the training data, one row per text)", o->anchors_path,
                        (long long)a->rows, o->data_path, t->data->n_texts);
    if (o->ecr_soft && a->soft < 1)
        return ecr_fail(ECR_E_INVALID, "%s: no soft codes in the file (make them with ecr anchors --soft M)",
                        o->anchors_path);
    if (o->config.ecr_dim != 0 && o->config.ecr_dim != a->dim)
        return ecr_fail(ECR_E_INVALID, "%s: anchors of dim %d, but ecr_dim is set to %d", o->anchors_path,
                        a->dim, o->config.ecr_dim);
    o->config.ecr_dim = a->dim;
    if (!(o->ecr_tau > 0)) o->ecr_tau = a->tau;
    if (!(o->ecr_weight >= 0) || !isfinite(o->ecr_weight) || !isfinite(o->ecr_tau))
        return ecr_fail(ECR_E_INVALID, "train: ECR weight %g / temperature %g out of range",
                        (double)o->ecr_weight, (double)o->ecr_tau);
    if (!(o->ecr_warmup >= 0 && o->ecr_warmup <= 1) || !(o->ecr_decay >= 0 && o->ecr_decay <= 1))
        return ecr_fail(ECR_E_INVALID, "train: ECR warm-up %g / decay %g outside [0, 1]", (double)o->ecr_warmup,
                        (double)o->ecr_decay);
    /* identity of the anchors for the resume check: hashes of every array, hashed */
    char parts[4][17], all[4 * 17];
    size_t M = (size_t)a->soft;
    ecr_hash_hex(a->anchors, (size_t)a->k * a->dim * sizeof *a->anchors, parts[0]);
    ecr_hash_hex(a->codes, (size_t)a->rows * sizeof *a->codes, parts[1]);
    ecr_hash_hex(a->soft_idx ? (const void *)a->soft_idx : "", a->soft_idx ? (size_t)a->rows * M * sizeof *a->soft_idx : 0, parts[2]);
    ecr_hash_hex(a->soft_sim ? (const void *)a->soft_sim : "", a->soft_sim ? (size_t)a->rows * M * sizeof *a->soft_sim : 0, parts[3]);
    snprintf(all, sizeof all, "%s%s%s%s", parts[0], parts[1], parts[2], parts[3]);
    ecr_hash_hex(all, strlen(all), t->anchors_hash);
    return ECR_OK;
}


static void reg_objective(const trainer *t, ecr_objective_opts *oo) {
    oo->anchors = t->anchors;
    oo->ecr_weight = t->o.ecr_weight;
    oo->ecr_tau = t->o.ecr_tau;
    oo->ecr_soft = t->o.ecr_soft;
}

static void reg_meta(const trainer *t, ecr_tr_meta *m) {
    const ecr_train_opts *o = &t->o;
    const ecr_anchors *a = t->anchors;
    if (!a) return;
    META("ecr_anchors_k", "%d", a->k);
    META("ecr_anchors_dim", "%d", a->dim);
    META("ecr_tau", "%.9g", o->ecr_tau);
    META("ecr_weight", "%.9g", o->ecr_weight);
    META("ecr_soft", "%d", o->ecr_soft ? a->soft : 0);
    META("ecr_anchors_source_hash", "%s", a->source_hash);
    META("ecr_anchors_hash", "%s", t->anchors_hash);
    if (o->ecr_warmup > 0) META("ecr_warmup", "%.9g", o->ecr_warmup);
    if (o->ecr_decay > 0) META("ecr_decay", "%.9g", o->ecr_decay);
    META_STR("ecr_anchors_source", a->source ? a->source : "");
}

static void reg_describe(const trainer *t, FILE *fp) {
    const ecr_train_opts *o = &t->o;
    if (!t->anchors) return;
    char ramp[96] = "";
    if (o->ecr_warmup > 0 || o->ecr_decay > 0)
        snprintf(ramp, sizeof ramp, ", lambda ramps up over %g and down over %g of the run", (double)o->ecr_warmup,
                 (double)o->ecr_decay);
    fprintf(fp, "train: ECR %g x KL to %d anchors of dim %d (tau %g, %s codes%s) from %s\n", (double)o->ecr_weight,
            t->anchors->k, t->anchors->dim, (double)o->ecr_tau, o->ecr_soft ? "soft" : "hard", ramp, o->anchors_path);
}

/* ---- kd: the teacher model ----------------------------------------------------------------- */

/* --kd: the teacher model; same vocabulary and tokenizer as the data, rows of T slots. */
static ecr_status kd_setup(trainer *t) {
    ecr_train_opts *o = &t->o;
    if (!o->kd_teacher) return ECR_OK;
    if (!(o->kd_alpha >= 0 && o->kd_alpha <= 1) || !(o->kd_temp > 0) || !isfinite(o->kd_temp))
        return ecr_fail(ECR_E_INVALID, "train: KD alpha %g (0 to 1) / temperature %g (> 0) out of range",
                        (double)o->kd_alpha, (double)o->kd_temp);
    ecr_status st = ecr_model_load(o->kd_teacher, &t->kd_teacher);
    if (st) return st;
    const ecr_config *c = ecr_model_config(t->kd_teacher);
    if (c->vocab_size != t->data->vocab_size)
        return ecr_fail(ECR_E_INVALID, "%s: the teacher's vocabulary has %d tokens, but %s has %d (KD needs the "
                        "same tokenizer)", o->kd_teacher, c->vocab_size, o->data_path, t->data->vocab_size);
    if (c->max_seq_len < t->T)
        return ecr_fail(ECR_E_INVALID, "%s: the teacher's max_seq_len is %d, shorter than the rows of %d slots "
                        "(lower --seq-len)", o->kd_teacher, c->max_seq_len, t->T);
    /* the same tokenizer, when both say which */
    const char *want = ecr_st_meta(t->data->file, "tokenizer_hash");
    char *tok_path = ecr_path_join(o->kd_teacher, "tokenizer.json");
    if (!tok_path) return ecr_fail(ECR_E_NOMEM, "out of memory");
    if (want && ecr_file_exists(tok_path)) {
        char *text = NULL, hash[17];
        size_t len = 0;
        st = ecr_read_file(tok_path, &text, &len);
        if (!st) {
            ecr_hash_hex(text, len, hash);
            if (strcmp(hash, want) != 0)
                st = ecr_fail(ECR_E_INVALID, "%s: the teacher's tokenizer (hash %s) is not the one %s was prepared "
                              "with (hash %s)", tok_path, hash, o->data_path, want);
        }
        free(text);
    }
    free(tok_path);
    if (st) return st;
    ecr_hash_hex(ecr_model_params_ro(t->kd_teacher), ecr_model_num_params(t->kd_teacher) * sizeof(float), t->kd_hash);
    return ecr_model_set_precision(t->kd_teacher, o->precision);
}

static void kd_objective(const trainer *t, ecr_objective_opts *oo) {
    oo->kd_teacher = t->kd_teacher;
    oo->kd_alpha = t->o.kd_alpha;
    oo->kd_temp = t->o.kd_temp;
}

static void kd_meta(const trainer *t, ecr_tr_meta *m) {
    const ecr_train_opts *o = &t->o;
    if (!t->kd_teacher) return;
    META("kd_teacher_hash", "%s", t->kd_hash);
    META("kd_alpha", "%.9g", o->kd_alpha);
    META("kd_temp", "%.9g", o->kd_temp);
    META_STR("kd_teacher", o->kd_teacher);
}

static void kd_describe(const trainer *t, FILE *fp) {
    const ecr_train_opts *o = &t->o;
    if (!t->kd_teacher) return;
    const ecr_config *k = ecr_model_config(t->kd_teacher);
    fprintf(fp, "train: KD (1 - %g) x lm + %g x T^2 KL at T %g from the teacher %s (%d layers x %d, "
                "%zu parameters)\n", (double)o->kd_alpha, (double)o->kd_alpha, (double)o->kd_temp,
            o->kd_teacher, k->n_layers, k->dim, ecr_model_num_params(t->kd_teacher));
}

/* ---- feat and rkd: teacher vectors, one row per training text ------------------------------ */

/* Reads teacher vectors for --feat / --rkd (`flag`): one finite row per training text; the
 * columns become the projection's D, which the anchors and the other file must share. */
static ecr_status load_vectors(trainer *t, const char *path, const char *flag, float **emb, int *dim,
                               char hash[17]) {
    ecr_train_opts *o = &t->o;
    int64_t rows = 0, cols = 0;
    ecr_status st = ecr_npy_read(path, emb, &rows, &cols);
    if (st) return st;
    if ((uint64_t)rows != (uint64_t)t->data->n_texts)
        return ecr_fail(ECR_E_INVALID, "%s: %lld rows of teacher vectors, but %s holds %zu texts (%s needs one "
                        "row per training text, in file order)", path, (long long)rows, o->data_path,
                        t->data->n_texts, flag);
    if (cols < 1 || cols > 65536)
        return ecr_fail(ECR_E_INVALID, "%s: %lld columns (expected 1 to 65536)", path, (long long)cols);
    size_t n = (size_t)rows * (size_t)cols;
    for (size_t k = 0; k < n; k++)
        if (!isfinite((*emb)[k]))
            return ecr_fail(ECR_E_INVALID, "%s: row %zu column %zu is not finite", path, k / (size_t)cols,
                            k % (size_t)cols);
    *dim = (int)cols;
    ecr_hash_hex(*emb, n * sizeof **emb, hash);
    if (t->anchors && t->anchors->dim != *dim)
        return ecr_fail(ECR_E_INVALID, "%s: teacher vectors of dim %d, but the anchors %s have dim %d (--anchors "
                        "and %s share the projection, so their dims must agree)", path, *dim, o->anchors_path,
                        t->anchors->dim, flag);
    if (o->config.ecr_dim != 0 && o->config.ecr_dim != *dim)
        return ecr_fail(ECR_E_INVALID, "%s: teacher vectors of dim %d, but ecr_dim is %d%s", path, *dim,
                        o->config.ecr_dim, t->feat_emb ? " (the dim of the --feat vectors; --feat and --rkd "
                        "share the projection)" : "");
    o->config.ecr_dim = *dim;
    return ECR_OK;
}

static ecr_status feat_setup(trainer *t) {
    ecr_train_opts *o = &t->o;
    if (!o->feat_path) return ECR_OK;
    if (!(o->feat_weight >= 0) || !isfinite(o->feat_weight))
        return ecr_fail(ECR_E_INVALID, "train: feat weight %g out of range", (double)o->feat_weight);
    return load_vectors(t, o->feat_path, "--feat", &t->feat_emb, &t->feat_dim, t->feat_hash);
}

static void feat_objective(const trainer *t, ecr_objective_opts *oo) {
    oo->feat_emb = t->feat_emb;
    oo->feat_rows = (int64_t)t->data->n_texts;
    oo->feat_dim = t->feat_dim;
    oo->feat_weight = t->o.feat_weight;
}

static void feat_meta(const trainer *t, ecr_tr_meta *m) {
    if (!t->feat_emb) return;
    META("feat_hash", "%s", t->feat_hash);
    META("feat_dim", "%d", t->feat_dim);
    META("feat_weight", "%.9g", t->o.feat_weight);
    META_STR("feat_source", t->o.feat_path);
}

static void feat_describe(const trainer *t, FILE *fp) {
    if (t->feat_emb)
        fprintf(fp, "train: feat %g x mean (1 - cos(P h, t)) with teacher vectors of dim %d from %s\n",
                (double)t->o.feat_weight, t->feat_dim, t->o.feat_path);
}

/* After feat's setup: one matrix when both name the same file. */
static ecr_status rkd_setup(trainer *t) {
    ecr_train_opts *o = &t->o;
    if (!o->rkd_path) return ECR_OK;
    if (!(o->rkd_weight >= 0) || !isfinite(o->rkd_weight))
        return ecr_fail(ECR_E_INVALID, "train: RKD weight %g out of range", (double)o->rkd_weight);
    if (t->feat_emb && !strcmp(o->rkd_path, o->feat_path)) {
        t->rkd_emb = t->feat_emb, t->rkd_dim = t->feat_dim;
        memcpy(t->rkd_hash, t->feat_hash, sizeof t->rkd_hash);
        return ECR_OK;
    }
    return load_vectors(t, o->rkd_path, "--rkd", &t->rkd_emb, &t->rkd_dim, t->rkd_hash);
}

static void rkd_objective(const trainer *t, ecr_objective_opts *oo) {
    oo->rkd_emb = t->rkd_emb;
    oo->rkd_rows = (int64_t)t->data->n_texts;
    oo->rkd_dim = t->rkd_dim;
    oo->rkd_weight = t->o.rkd_weight;
}

static void rkd_meta(const trainer *t, ecr_tr_meta *m) {
    if (!t->rkd_emb) return;
    META("rkd_hash", "%s", t->rkd_hash);
    META("rkd_dim", "%d", t->rkd_dim);
    META("rkd_weight", "%.9g", t->o.rkd_weight);
    META_STR("rkd_source", t->o.rkd_path);
}

static void rkd_describe(const trainer *t, FILE *fp) {
    if (t->rkd_emb)
        fprintf(fp, "train: RKD %g x (25 distance + 50 angle) with teacher vectors of dim %d from %s\n",
                (double)t->o.rkd_weight, t->rkd_dim, t->o.rkd_path);
}

/* ---- mres: further anchor sets, one code per text in each (multi-resolution codes) -------- */

/* After ECR's setup: each file of the comma-separated --mres-anchors, with codes for exactly
 * the training texts and the main anchors' dim. */
static ecr_status mres_setup(trainer *t) {
    ecr_train_opts *o = &t->o;
    if (!o->mres_path || !t->anchors) return ECR_OK; /* without --anchors: `ecr train` refuses it */
    if (!(o->mres_weight >= 0) || !isfinite(o->mres_weight))
        return ecr_fail(ECR_E_INVALID, "train: mres weight %g out of range", (double)o->mres_weight);
    char *list = strdup(o->mres_path), *save = NULL;
    if (!list) return ecr_fail(ECR_E_NOMEM, "out of memory");
    ecr_status st = ECR_OK;
    char all[ECR_MRES_MAX * 32 + 1] = "";
    for (char *p = strtok_r(list, ",", &save); p && !st; p = strtok_r(NULL, ",", &save)) {
        if (t->n_mres == ECR_MRES_MAX) {
            st = ecr_fail(ECR_E_INVALID, "--mres-anchors: more than %d files", ECR_MRES_MAX);
            break;
        }
        if ((st = ecr_anchors_load(p, &t->mres[t->n_mres]))) break;
        const ecr_anchors *a = t->mres[t->n_mres++];
        if ((uint64_t)a->rows != (uint64_t)t->data->n_texts)
            st = ecr_fail(ECR_E_INVALID, "%s: codes for %lld texts, but %s holds %zu texts (anchors must be made "
                          "from embeddings of the training data, one row per text)", p, (long long)a->rows,
                          o->data_path, t->data->n_texts);
        else if (a->dim != t->anchors->dim)
            st = ecr_fail(ECR_E_INVALID, "%s: anchors of dim %d, but the anchors %s have dim %d (they share the "
                          "projection)", p, a->dim, o->anchors_path, t->anchors->dim);
        char h[2][17];
        ecr_hash_hex(a->anchors, (size_t)a->k * a->dim * sizeof *a->anchors, h[0]);
        ecr_hash_hex(a->codes, (size_t)a->rows * sizeof *a->codes, h[1]);
        strcat(all, h[0]), strcat(all, h[1]);
    }
    if (!st && t->n_mres == 0) st = ecr_fail(ECR_E_INVALID, "--mres-anchors: no file given");
    free(list);
    if (!st) ecr_hash_hex(all, strlen(all), t->mres_hash);
    return st;
}

static void mres_objective(const trainer *t, ecr_objective_opts *oo) {
    for (int r = 0; r < t->n_mres; r++) oo->mres[r] = t->mres[r];
    oo->n_mres = t->n_mres;
}

static void mres_meta(const trainer *t, ecr_tr_meta *m) {
    if (t->n_mres == 0) return;
    size_t k = 0;
    char ks[sizeof m->v[0]] = "";
    for (int r = 0; r < t->n_mres; r++) k += (size_t)snprintf(ks + k, sizeof ks - k, "%s%d", r ? "," : "", t->mres[r]->k);
    META("mres_k", "%s", ks);
    META("mres_weight", "%.9g", t->o.mres_weight);
    META("mres_hash", "%s", t->mres_hash);
    META_STR("mres_anchors", t->o.mres_path);
}

static void mres_describe(const trainer *t, FILE *fp) {
    if (t->n_mres == 0) return;
    fprintf(fp, "train: mres %g x the sum of ECR's KL to", (double)t->o.mres_weight);
    for (int r = 0; r < t->n_mres; r++) fprintf(fp, "%s K = %d", r ? "," : "", t->mres[r]->k);
    fprintf(fp, " further anchors (same projection, tau %g) from %s\n", (double)t->o.ecr_tau, t->o.mres_path);
}

#undef META
#undef META_STR

/* ---- the table ------------------------------------------------------------------------------ */

#define HASH(field) offsetof(trainer, field)
static const ecr_tr_term HOOKS[] = {
    {"contrastive", 1, contrastive_setup, contrastive_objective, contrastive_meta, contrastive_describe, NULL, 0},
    {"ecr", 0, reg_setup, reg_objective, reg_meta, reg_describe, "ecr_anchors_hash", HASH(anchors_hash)},
    {"kd", 1, kd_setup, kd_objective, kd_meta, kd_describe, "kd_teacher_hash", HASH(kd_hash)},
    {"feat", 0, feat_setup, feat_objective, feat_meta, feat_describe, "feat_hash", HASH(feat_hash)},
    {"rkd", 0, rkd_setup, rkd_objective, rkd_meta, rkd_describe, "rkd_hash", HASH(rkd_hash)},
    {"mres", 0, mres_setup, mres_objective, mres_meta, mres_describe, "mres_hash", HASH(mres_hash)},
};
#undef HASH

const ecr_tr_term *ecr_tr_term_hooks(const ecr_term_info *term) {
    for (size_t i = 0; i < sizeof HOOKS / sizeof HOOKS[0]; i++)
        if (!strcmp(HOOKS[i].name, term->name)) return &HOOKS[i];
    return NULL;
}

void ecr_tr_opt_number(const ecr_term_opt *p, const ecr_train_opts *o, char *buf, size_t n) {
    const void *field = (const char *)o + p->offset;
    if (p->kind == ECR_TERM_FLOAT) snprintf(buf, n, "%.9g", *(const float *)field);
    else snprintf(buf, n, "%d", *(const int *)field);
}

void ecr_tr_term_options(const ecr_term_info *term, const ecr_train_opts *o, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < term->n_opts && k < n; i++) {
        const ecr_term_opt *p = &term->opts[i];
        const void *field = (const char *)o + p->offset;
        int w;
        if (p->kind == ECR_TERM_FLOAT) w = snprintf(buf + k, n - k, "%s %s %g", i ? "," : "", p->key, (double)*(const float *)field);
        else if (p->kind == ECR_TERM_PATH) w = snprintf(buf + k, n - k, "%s %s %s", i ? "," : "", p->key, *(const char *const *)field ? *(const char *const *)field : "-");
        else w = snprintf(buf + k, n - k, "%s %s %d", i ? "," : "", p->key, *(const int *)field);
        if (w < 0) break;
        k += (size_t)w;
    }
}
