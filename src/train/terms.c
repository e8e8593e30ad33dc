/* terms.c — the objective terms as data: one row per term beyond the LM loss, in the order
 * the log, the method names and the progress lines use (contract: ecr.h, "Objective
 * terms"). The trainer (log records, resume options), `ecr train` (flags, --help, orphan
 * checks, run.json, the method name) and `ecr report` (the order of methods) loop over it.
 *
 * Adding a term: its loss in src/method/loss_NAME.c (contract in losses.h), its options as
 * fields of ecr_train_opts with their defaults in ecr_train_opts_default, and one row here
 * (with its value in ecr_tr_term_value and its input files' hash in ecr_tr_term_hash); the
 * objective (objective.c: create, forward, backward), the trainer's setup (train.c: its
 * input files) and the checkpoint metadata (checkpoint.c, model_meta) then wire it in:
 * those three still name each term. */
#include "ecr.h"
#include "trainer.h"

#include <stddef.h>
#include <string.h>

#define OPT(field) offsetof(ecr_train_opts, field)

static const ecr_term_opt contrastive_opts[] = {
    {"--contrastive-weight", "contrastive_weight", ECR_TERM_FLOAT, OPT(contrastive_weight), 0, 1e6, 0,
     "W", "weight of the InfoNCE term"},
    {"--contrastive-tau", "contrastive_tau", ECR_TERM_FLOAT, OPT(contrastive_tau), 1e-6, 1e6, 0, "T",
     "its temperature"},
    {"--group-size", "group_size", ECR_TERM_INT, OPT(group_size), 2, ECR_MAX_WINDOW, 0, "G",
     "texts per group in a step, distinct languages first"},
};
static const ecr_term_opt ecr_opts[] = {
    {"--anchors", "anchors", ECR_TERM_PATH, OPT(anchors_path), 0, 0, 0, "FILE",
     "add the ECR regulariser with these anchors (ecr anchors); their\n"
     "codes must cover the training data's texts. Adds the projection\n"
     "ecr.proj.weight [D, dim] to the model. No teacher is read."},
    {"--ecr-weight", "ecr_weight", ECR_TERM_FLOAT, OPT(ecr_weight), 0, 1e6, 0, "L", "ECR weight lambda"},
    {"--ecr-tau", "ecr_tau", ECR_TERM_FLOAT, OPT(ecr_tau), 1e-6, 1e6, 1, "T",
     "ECR temperature (default: the anchors file's, normally 0.05)"},
    {"--ecr-soft", "ecr_soft", ECR_TERM_FLAG, OPT(ecr_soft), 0, 1, 0, NULL,
     "soft targets from the anchors' top-M codes (ecr anchors --soft M)"},
};
static const ecr_term_opt kd_opts[] = {
    {"--kd", "kd", ECR_TERM_PATH, OPT(kd_teacher), 0, 0, 0, "DIR",
     "logit distillation from the teacher model in DIR (same tokenizer;\n"
     "its max_seq_len at least --seq-len): a teacher forward pass on\n"
     "every batch; loss (1 - alpha) lm + alpha T^2 KL(teacher || student)\n"
     "of the softened next-token distributions, mean over target tokens"},
    {"--kd-alpha", "kd_alpha", ECR_TERM_FLOAT, OPT(kd_alpha), 0, 1, 0, "A", "alpha, 0 to 1"},
    {"--kd-temp", "kd_temp", ECR_TERM_FLOAT, OPT(kd_temp), 1e-3, 1e3, 0, "T", "temperature T"},
};
static const ecr_term_opt feat_opts[] = {
    {"--feat", "feat", ECR_TERM_PATH, OPT(feat_path), 0, 0, 0, "FILE",
     "feature matching: adds w mean (1 - cos(P h, t)) with t the text's\n"
     "row of FILE (.npy, one row per training text, e.g. ecr embed of\n"
     "a teacher); adds the projection ecr.proj.weight [D, dim], D = the\n"
     "file's columns"},
    {"--feat-weight", "feat_weight", ECR_TERM_FLOAT, OPT(feat_weight), 0, 1e6, 0, "W", "w"},
};
static const ecr_term_opt rkd_opts[] = {
    {"--rkd", "rkd", ECR_TERM_PATH, OPT(rkd_path), 0, 0, 0, "FILE",
     "relational KD (Park et al. 2019) between u = P h / |P h| and the\n"
     "normalised rows of FILE over the texts of each step: 25 x distance\n"
     "+ 50 x angle loss (smooth-L1); FILE as for --feat"},
    {"--rkd-weight", "rkd_weight", ECR_TERM_FLOAT, OPT(rkd_weight), 0, 1e6, 0, "W", "weight of the RKD term"},
};

#define ROW(name, rank, opts) {name, rank, opts, (int)(sizeof opts / sizeof opts[0])}
static const ecr_term_info TERMS[] = {
    ROW("contrastive", 0, contrastive_opts), /* on with --objective lm+contrastive (the teacher) */
    ROW("ecr", 4, ecr_opts),
    ROW("kd", 1, kd_opts),
    ROW("feat", 2, feat_opts),
    ROW("rkd", 3, rkd_opts),
};
#undef ROW

const ecr_term_info *ecr_train_term(int i) {
    return i >= 0 && i < (int)(sizeof TERMS / sizeof TERMS[0]) ? &TERMS[i] : NULL;
}

int ecr_train_term_on(const ecr_term_info *t, const ecr_train_opts *o) {
    if (t->opts[0].kind != ECR_TERM_PATH) return o->objective == ECR_TRAIN_LM_CONTRASTIVE;
    return *(const char *const *)((const char *)o + t->opts[0].offset) != NULL;
}

double ecr_tr_term_value(const ecr_term_info *t, const ecr_objective_terms *x) {
    const char *n = t->name;
    return !strcmp(n, "contrastive") ? x->contrastive
           : !strcmp(n, "ecr")       ? x->ecr
           : !strcmp(n, "kd")        ? x->kd
           : !strcmp(n, "feat")      ? x->feat
           : !strcmp(n, "rkd")       ? x->rkd
                                     : 0.0;
}

const char *ecr_tr_term_hash(const trainer *t, const ecr_term_info *term, const char **key) {
    const char *n = term->name;
    *key = NULL;
    if (!strcmp(n, "ecr")) return *key = "ecr_anchors_hash", t->anchors_hash;
    if (!strcmp(n, "kd")) return *key = "kd_teacher_hash", t->kd_hash;
    if (!strcmp(n, "feat")) return *key = "feat_hash", t->feat_hash;
    if (!strcmp(n, "rkd")) return *key = "rkd_hash", t->rkd_hash;
    return NULL;
}

void ecr_train_method_name(const ecr_train_opts *o, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; ecr_train_term(i); i++) {
        const ecr_term_info *t = ecr_train_term(i);
        if (t->method_rank > 0 && ecr_train_term_on(t, o) && k < n)
            k += (size_t)snprintf(buf + k, n - k, "%s%s", k ? "+" : "", t->name);
    }
    if (!buf[0]) snprintf(buf, n, "none");
}

int ecr_train_method_rank(const char *method) {
    if (!strcmp(method, "none")) return 0;
    int rank = 0, terms = 0;
    for (const char *p = method; *p;) { /* each '+'-separated part must be a term */
        size_t len = strcspn(p, "+");
        rank = 0;
        for (int i = 0; ecr_train_term(i); i++) {
            const ecr_term_info *t = ecr_train_term(i);
            if (t->method_rank > 0 && strlen(t->name) == len && !strncmp(p, t->name, len)) rank = t->method_rank;
        }
        if (!rank) return -1;
        terms++;
        p += len + (p[len] == '+');
    }
    return terms == 1 ? rank : 16 * terms; /* single terms by rank, then pairs, triples, ... */
}
