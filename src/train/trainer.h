/* trainer.h — the trainer's state, shared by its files (internal): train.c (setup, the
 * loop, validation) and checkpoint.c (what a checkpoint holds, writing it, resuming). */
#ifndef ECR_TRAINER_H
#define ECR_TRAINER_H
#include "ecr.h"
#include "losses.h"

#include <stdio.h>

#define STATE_FORMAT "ecr-train-state-2"    /* written: holds the weights ("params") too  */
#define STATE_FORMAT_V1 "ecr-train-state-1" /* still read: weights from model.safetensors */

typedef struct trainer {
    ecr_train_opts o;         /* resolved options (config.vocab_size set, min_lr, warmup) */
    int B, T;
    int64_t total;            /* steps of the schedule                                    */
    ecr_data *data, *valid;
    ecr_batcher *batcher;
    ecr_model *model;
    ecr_adamw *opt;
    ecr_anchors *anchors;     /* ECR anchors, or NULL                                     */
    char anchors_hash[17];    /* of the anchors, codes and soft codes                     */
    ecr_anchors *mres[ECR_MRES_MAX]; /* the mres term's further anchor sets             */
    int n_mres;
    char mres_hash[17];       /* of their anchors and codes, in order                     */
    ecr_model *kd_teacher;    /* the KD teacher, or NULL                                  */
    char kd_hash[17];         /* of its fp32 parameters                                   */
    float *feat_emb, *rkd_emb; /* teacher vectors [n_texts, dim] (rkd_emb may be feat_emb) */
    int feat_dim, rkd_dim;
    char feat_hash[17], rkd_hash[17];
    ecr_objective *obj;       /* the per-step objective (LM + extra terms)                */
    int64_t step;             /* steps done                                               */
    uint64_t rng;             /* reserved for stochastic objectives; saved and restored   */
    int64_t tokens;           /* target tokens trained on so far                          */
    double elapsed0;          /* elapsed seconds before this process (resume)             */
    double t_start;
    int lock_fd;              /* ecr_dir_lock of out_dir, -1 when not held                  */
    int rank, world;          /* data parallelism (o.comm): rank 0 alone writes out_dir     */
    double comm_s;            /* seconds in the gradient sums so far                      */
    int64_t last_ckpt;        /* step of the last checkpoint on disk, -1 if none          */
    int64_t last_eval;
    int precision_auto;       /* o.precision was resolved from auto                       */
    char *tok_path, *state_path, *log_path, *model_path;
    FILE *log;
} trainer;

/* model.safetensors metadata being built: key, value, ..., NULL in key_val; values that
 * are formatted live in v. */
typedef struct ecr_tr_meta {
    const char *key_val[96];
    char v[40][40];
    int n, k;
} ecr_tr_meta;

/* A term's side of the trainer (term_hooks.c), found by the name of its row in the term
 * table. Every hook is called for every row, on or off (each checks its own options), in
 * table order. */
typedef struct ecr_tr_term {
    const char *name;
    int late;                 /* setup after the batch shape (t->B, t->T) is known        */
    /* reads and checks its inputs and options (ECR_E_INVALID naming the file or option) */
    ecr_status (*setup)(trainer *t);
    /* its fields of the objective's options */
    void (*objective)(const trainer *t, ecr_objective_opts *oo);
    /* its model.safetensors metadata (nothing when off) */
    void (*meta)(const trainer *t, ecr_tr_meta *m);
    /* its line on stderr at the start of a run (nothing when off) */
    void (*describe)(const trainer *t, FILE *fp);
    const char *hash_key;     /* its inputs' hash in the resume options, or NULL          */
    size_t hash;              /* offset of that hash (char[17]) in the trainer            */
} ecr_tr_term;

/* The hooks of a row of the term table; NULL for a term without any. */
const ecr_tr_term *ecr_tr_term_hooks(const ecr_term_info *term);

/* The value of the numeric option p (FLOAT, INT or FLAG) in o as the resume options and the
 * model metadata write it: a float "%.9g", an int "%d". */
void ecr_tr_opt_number(const ecr_term_opt *p, const ecr_train_opts *o, char *buf, size_t n);
/* " key value, key value" of the term's options in o (float %g, int %d, path), into buf. */
void ecr_tr_term_options(const ecr_term_info *term, const ecr_train_opts *o, char *buf, size_t n);

/* Seconds of training so far, this process and those before a resume. */
double ecr_tr_elapsed(const trainer *t);
/* The options a resumed run must share with the run it continues, as a JSON object of
 * strings (fixed key order; see checkpoint.c). Caller frees; NULL when out of memory. */
char *ecr_tr_options_json(const trainer *t);
/* Writes model.safetensors (with the run's metadata) and train_state.safetensors (rank 0;
 * the other ranks only note the step). */
ecr_status ecr_tr_save_checkpoint(trainer *t);
/* Loads train_state.safetensors into the trainer (model already loaded), checking that
 * the run's options match the checkpoint's (rank 0), then sends what it loaded to the
 * other ranks (ecr_tr_share_state). */
ecr_status ecr_tr_load_state(trainer *t);
/* The "ecr_step" metadata of a model.safetensors, -1 when missing or unreadable. */
int64_t ecr_tr_model_file_step(const char *path);
/* Keeps the log records of steps <= step, in order, atomically (see checkpoint.c). */
ecr_status ecr_tr_log_truncate(const char *path, int64_t step);

#endif
