/* terms.c — the objective terms as data: one row per term beyond the LM loss, in the order
 * the log, the method names and the progress lines use (contract: ecr.h, "Objective
 * terms"). A row holds the term's name, its place among methods, its options (flags,
 * run.json keys, ranges, --help) and its operations (term.h: check, create, forward,
 * backward, weight). Everything loops over this table: the objective (objective.c: which
 * terms are on, their forward and backward, the total), the trainer (log records,
 * progress lines, resume options, model metadata), `ecr train` (flags, --help, orphan
 * checks, run.json, the method name) and `ecr report` (the order of methods).
 *
 * Adding a term:
 *   1. src/method/loss_NAME.c: the loss, forward beside backward (its contract in
 *      losses.h), and its ecr_term_ops at the end of the file (term.h) with its value's
 *      field in ecr_objective_terms; declare the ops in term.h.
 *   2. Its options as fields of ecr_train_opts (defaults in ecr_train_opts_default); its
 *      operations read them through ecr_objective_opts.train, and the inputs the trainer
 *      already reads (the anchors, teacher vectors, a teacher model) through the other
 *      fields of ecr_objective_opts.
 *   3. One row below: the trainer then logs it, checks it on resume, writes its options to
 *      the model's metadata and names it at the start of a run, with no code of its own.
 *   4. Only if it reads an input of a new kind: its setup, metadata and start line as a
 *      block of src/train/term_hooks.c.
 *   5. Tests: the loss against a PyTorch float64 fixture (a generator in tools/, the
 *      fixture in tests/fixtures/) and finite differences, then the whole objective
 *      (tests/test_losses.c, test_objective_fd).
 * rel, con, orth, mres and mid (loss_rel.c, loss_con.c, loss_orth.c, loss_mres.c, loss_mid.c)
 * were added this way; mres reads files of its own, so it has a block in term_hooks.c too, and
 * mid works on an intermediate layer (term.h, ops.mid). */
#include "ecr.h"
#include "term.h"

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
     "ecr.proj.weight [D, dim] to the model, and by default the rel and\n"
     "orth terms (--rel-weight, --orth-weight). No teacher is read."},
    {"--ecr-weight", "ecr_weight", ECR_TERM_FLOAT, OPT(ecr_weight), 0, 1e6, 0, "L", "ECR weight lambda"},
    {"--ecr-tau", "ecr_tau", ECR_TERM_FLOAT, OPT(ecr_tau), 1e-6, 1e6, 1, "T",
     "ECR temperature (default: the anchors file's, normally 0.05)"},
    {"--ecr-soft", "ecr_soft", ECR_TERM_FLAG, OPT(ecr_soft), 0, 1, 0, NULL,
     "soft targets from the anchors' top-M codes (ecr anchors --soft M)"},
    {"--ecr-warmup", "ecr_warmup", ECR_TERM_FLOAT, OPT(ecr_warmup), 0, 1, 1, "F",
     "lambda ramps up linearly from 0 over the first F of the run (0 to 1)"},
    {"--ecr-decay", "ecr_decay", ECR_TERM_FLOAT, OPT(ecr_decay), 0, 1, 1, "F",
     "lambda ramps down linearly to 0 over the last F of the run"},
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

static const ecr_term_opt rel_opts[] = {
    {"--rel-weight", "rel_weight", ECR_TERM_FLOAT, OPT(rel_weight), 0, 1e6, 0, "W",
     "part of ECR, on with --anchors: relational consistency from the\n"
     "codes alone, adding W x the mean over the step's text pairs of\n"
     "(cos(u_i, u_j) - <a_ci, a_cj>)^2, a_c the anchor of code c;\n"
     "0 = off"},
    {"--rel-on-h", "rel_on_h", ECR_TERM_FLAG, OPT(rel_on_h), 0, 1, 0, NULL, "on h itself instead of u"},
};
static const ecr_term_opt con_opts[] = {
    {"--con-weight", "con_weight", ECR_TERM_FLOAT, OPT(con_weight), 0, 1e6, 0, "W",
     "code-contrastive, codes only (needs --anchors): adds W x InfoNCE\n"
     "on u over the step's texts, those that share a code as positives;\n"
     "0 = off"},
    {"--con-tau", "con_tau", ECR_TERM_FLOAT, OPT(con_tau), 1e-6, 1e6, 0, "T", "its temperature"},
    {"--con-on-h", "con_on_h", ECR_TERM_FLAG, OPT(con_on_h), 0, 1, 0, NULL, "on h itself instead of u"},
};

static const ecr_term_opt orth_opts[] = {
    {"--orth-weight", "orth_weight", ECR_TERM_FLOAT, OPT(orth_weight), 0, 1e6, 0, "W",
     "part of ECR, on with --anchors: keeps the projection near an\n"
     "isometry, adding W ||P^T P - I||^2 / dim, so that cosines of u are\n"
     "cosines of h; 0 = off (with --rel-weight 0 too: ECR alone, method\n"
     "\"ecr\", as the main study ran it)"},
};

static const ecr_term_opt mres_opts[] = {
    {"--mres-anchors", "mres_anchors", ECR_TERM_PATH, OPT(mres_path), 0, 0, 0, "FILES",
     "multi-resolution codes (needs --anchors): further anchors files,\n"
     "comma-separated (up to 4), made by ecr anchors from the same teacher\n"
     "vectors with other --k; each adds ECR's KL for its codes through\n"
     "the same projection and tau"},
    {"--mres-weight", "mres_weight", ECR_TERM_FLOAT, OPT(mres_weight), 0, 1e6, 0, "W",
     "their weight: adds W x the sum over the files of the mean KL"},
};

static const ecr_term_opt mid_opts[] = {
    {"--mid-weight", "mid_weight", ECR_TERM_FLOAT, OPT(mid_weight), 0, 1e6, 0, "W",
     "ECR on an intermediate layer too (needs --anchors): adds W x ECR's\n"
     "KL, same codes, projection and tau, on the pooled output of block\n"
     "--mid-layer; 0 = off"},
    {"--mid-layer", "mid_layer", ECR_TERM_INT, OPT(mid_layer), 1, 1024, 0, "N",
     "that block, 1 to the model's layers - 1"},
};

#define ROW(name, rank, on, needs, opts, ops) {name, rank, on, needs, opts, (int)(sizeof opts / sizeof opts[0]), &ops}
static const ecr_term_info TERMS[] = {
    ROW("contrastive", 0, ECR_TERM_ON_OBJECTIVE, NULL, contrastive_opts, ecr_term_ops_contrastive), /* on with --objective lm+contrastive (the teacher) */
    ROW("ecr", 4, ECR_TERM_ON_PATH, NULL, ecr_opts, ecr_term_ops_ecr),
    ROW("kd", 1, ECR_TERM_ON_PATH, NULL, kd_opts, ecr_term_ops_kd),
    ROW("feat", 2, ECR_TERM_ON_PATH, NULL, feat_opts, ecr_term_ops_feat),
    ROW("rkd", 3, ECR_TERM_ON_PATH, NULL, rkd_opts, ecr_term_ops_rkd),
    ROW("rel", 5, ECR_TERM_ON_WEIGHT, "ecr", rel_opts, ecr_term_ops_rel),
    ROW("con", 6, ECR_TERM_ON_WEIGHT, NULL, con_opts, ecr_term_ops_con),
    ROW("orth", 7, ECR_TERM_ON_WEIGHT, "ecr", orth_opts, ecr_term_ops_orth),
    ROW("mres", 8, ECR_TERM_ON_PATH, "ecr", mres_opts, ecr_term_ops_mres),
    ROW("mid", 9, ECR_TERM_ON_WEIGHT, "ecr", mid_opts, ecr_term_ops_mid),
};
#undef ROW

const ecr_term_info *ecr_train_term(int i) {
    return i >= 0 && i < (int)(sizeof TERMS / sizeof TERMS[0]) ? &TERMS[i] : NULL;
}

const ecr_term_info *ecr_train_term_find(const char *name) {
    for (int i = 0; name && ecr_train_term(i); i++)
        if (!strcmp(ecr_train_term(i)->name, name)) return ecr_train_term(i);
    return NULL;
}

int ecr_train_term_on(const ecr_term_info *t, const ecr_train_opts *o) {
    const void *field = (const char *)o + t->opts[0].offset;
    if (t->needs) {
        const ecr_term_info *n = ecr_train_term_find(t->needs);
        if (!n || !ecr_train_term_on(n, o)) return 0;
    }
    switch (t->on) {
    case ECR_TERM_ON_PATH: return *(const char *const *)field != NULL;
    case ECR_TERM_ON_WEIGHT: return *(const float *)field != 0;
    default: return o->objective == ECR_TRAIN_LM_CONTRASTIVE;
    }
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
