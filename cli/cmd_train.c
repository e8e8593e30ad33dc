/* cmd_train.c — `ecr train`: flags -> ecr_train_opts -> ecr_train. */
#include "cli.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_text =
    "usage: ecr train --data TRAIN.safetensors --model tiny|small|base --out MODEL_DIR [flags]\n"
    "                 [--objective lm|lm+contrastive] [--anchors ANCHORS.safetensors\n"
    "                 --ecr-weight 0.05 --ecr-tau 0.05 --ecr-soft]\n"
    "                 [--kd TEACHER_DIR --kd-alpha 0.5 --kd-temp 2] [--feat TEACHER.npy]\n"
    "                 [--rkd TEACHER.npy]\n"
    "\n"
    "Trains a language model on prepared data (ecr prepare) and writes a model folder:\n"
    "config.json, model.safetensors, tokenizer.json, train_state.safetensors (for --resume)\n"
    "and log.jsonl (one record per step and per validation pass).\n"
    "\n"
    "  --data FILE            prepared training data (required)\n"
    "  --valid FILE           prepared validation data: loss, bits/byte and the effective\n"
    "                         rank of the texts' embeddings, at the end and every\n"
    "                         --eval-every steps\n"
    "  --model NAME           preset: tiny (2x128), small (4x256), base (6x384) (required)\n"
    "  --set KEY=VALUE        change a config key (repeatable), e.g. --set n_layers=3;\n"
    "                         the vocabulary always comes from the data\n"
    "  --tokenizer FILE       tokenizer.json to copy into the model folder (default: the\n"
    "                         copy embedded in the prepared data)\n"
    "  --out DIR              model folder (created if missing) (required)\n"
    "  --steps N              optimizer steps (default: one epoch)\n"
    "  --epochs E             passes over the data instead of --steps (may be fractional)\n"
    "  --tokens-per-step N    token slots per step, rows x seq-len (default 4096)\n"
    "  --seq-len T            row length (default min(max_seq_len, 256))\n"
    "  --lr X                 peak learning rate (default 1e-3)\n"
    "  --min-lr X             learning rate at the end of the cosine (default lr/10)\n"
    "  --warmup N             linear warmup steps (default 2% of the steps, at most 1000)\n"
    "  --weight-decay X       AdamW weight decay on matrices (default 0.1)\n"
    "  --grad-clip X          clip the global gradient norm to X; 0 = off (default 1.0)\n"
    "  --seed S               initialisation and data order (default 1)\n"
    "  --threads N            threads (per process under mpirun; default: all cores)\n"
    CLI_PRECISION_HELP
    "                         (the KD teacher's too; a resume needs the same precision)\n"
    "  --log-every N          progress line every N steps (default 10)\n"
    "  --eval-every N         validation every N steps (default: only at the end)\n"
    "  --save-every N         checkpoint every N steps (default: only at the end)\n"
    "  --resume               continue the run in --out exactly where its checkpoint stopped\n"
    "                         (give the same flags; --steps may grow)\n"
    "  --quiet                no progress on stderr\n"
    "  --tag NAME             a label for the run, saved in run.json (ecr report groups runs\n"
    "                         by size and tag, or by size and method when there is no tag)\n"
    "\n"
    "Across processes: `mpirun -np N ecr train ...` (one machine, or several with a hostfile)\n"
    "runs one job: each process takes 1/N of the rows of every step (the step stays\n"
    "--tokens-per-step), the pooled embeddings are shared so that every term sees the whole\n"
    "step, and the gradients are summed; the numbers are one process's up to summation order.\n"
    "Every process reads --data and the other inputs at the same paths; the first one alone\n"
    "writes --out. --resume may use another N. The log records each step's seconds in\n"
    "communication (\"comm_s\").\n"
    "\n"
    "When training ends, MODEL_DIR/run.json records the run: preset, tag, method (none, kd,\n"
    "feat, rkd, ecr or a '+' combination such as ecr+kd), seed and the flags that shaped it.\n"
    "\n"
    "Objective:\n"
    "  --objective lm|lm+contrastive\n"
    "                         lm (default): next-token loss. lm+contrastive (the teacher):\n"
    "                         plus a symmetric in-batch InfoNCE between the pooled, normalised\n"
    "                         embeddings of texts of the same group (translations); each step\n"
    "                         holds whole groups, and an epoch is one pass over the groups\n"
    "%TERMS%"
    "\n"
    "Exit status: 0 done, 1 runtime failure (e.g. a NaN loss), 2 bad usage or bad input.\n";

/* x as a double with float's 7 significant digits (0.001f, not 0.0010000000474974513). */
static double f7(float x) {
    char b[32];
    snprintf(b, sizeof b, "%.7g", x);
    return strtod(b, NULL);
}

/* MODEL_DIR/run.json: what ecr report needs to group and label a finished run. Atomic. */
static ecr_status write_run_json(const ecr_train_opts *o, const char *preset, const char *tag,
                                 const char **sets, int n_sets) {
    char method[64];
    ecr_train_method_name(o, method, sizeof method);
    cJSON *j = cJSON_CreateObject(), *s = cJSON_CreateArray();
    cJSON_AddStringToObject(j, "preset", preset);
    if (tag) cJSON_AddStringToObject(j, "tag", tag);
    else cJSON_AddNullToObject(j, "tag");
    cJSON_AddStringToObject(j, "method", method);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    if (o->steps > 0) cJSON_AddNumberToObject(j, "steps", (double)o->steps);
    else cJSON_AddNumberToObject(j, "epochs", f7((float)o->epochs));
    cJSON_AddNumberToObject(j, "tokens_per_step", (double)o->tokens_per_step);
    cJSON_AddNumberToObject(j, "lr", f7(o->lr));
    cJSON_AddStringToObject(j, "objective", ecr_train_objective_name(o->objective));
    ecr_precision prec = ECR_PRECISION_FP32;
    if (ecr_precision_resolve(o->precision, &prec) == ECR_OK) /* as ecr_train resolved it */
        cJSON_AddStringToObject(j, "precision", ecr_precision_name(prec));
    for (int i = 0; i < n_sets && s; i++) cJSON_AddItemToArray(s, cJSON_CreateString(sets[i]));
    cJSON_AddItemToObject(j, "set", s);
    cJSON_AddStringToObject(j, "data", o->data_path);
    if (o->comm) cJSON_AddNumberToObject(j, "processes", o->comm->size);
    for (int i = 0; ecr_train_term(i); i++) { /* each term that is on, with its options */
        const ecr_term_info *t = ecr_train_term(i);
        if (!ecr_train_term_on(t, o)) continue;
        for (int k = 0; k < t->n_opts; k++) {
            const ecr_term_opt *p = &t->opts[k];
            const void *field = (const char *)o + p->offset;
            if (p->kind == ECR_TERM_PATH) cJSON_AddStringToObject(j, p->key, *(const char *const *)field);
            else if (p->kind == ECR_TERM_FLAG) cJSON_AddBoolToObject(j, p->key, *(const int *)field);
            else if (p->kind == ECR_TERM_INT) cJSON_AddNumberToObject(j, p->key, *(const int *)field);
            else if (!(p->zero_unset && *(const float *)field == 0.0f))
                cJSON_AddNumberToObject(j, p->key, f7(*(const float *)field));
        }
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return ecr_fail(ECR_E_NOMEM, "run.json: out of memory");
    size_t n = strlen(text);
    char *line = realloc(text, n + 2), *path = ecr_path_join(o->out_dir, "run.json");
    ecr_status st = ECR_OK;
    if (!line || !path) {
        st = ecr_fail(ECR_E_NOMEM, "run.json: out of memory");
    } else {
        line[n] = '\n';
        st = ecr_write_file(path, line, n + 1);
    }
    free(line ? line : text);
    free(path);
    return st;
}

/* Appends printf-style text to buf [cap], truncating at its end (never past it). */
static void append(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t cap, const char *fmt, ...) {
    size_t k = strlen(buf);
    if (k + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + k, cap - k, fmt, ap);
    va_end(ap);
}

/* One option's --help line(s): "  --flag ARG" padded to 25 columns, then the help with its
 * default (from ecr_train_opts_default) added, continuation lines indented. */
static void usage_opt(char *buf, size_t cap, const ecr_term_opt *p, const ecr_train_opts *def) {
    char head[64], dflt[48] = "";
    snprintf(head, sizeof head, "%s%s%s", p->flag, p->arg ? " " : "", p->arg ? p->arg : "");
    const void *field = (const char *)def + p->offset;
    if (p->kind == ECR_TERM_FLOAT && !p->zero_unset)
        snprintf(dflt, sizeof dflt, " (default %g)", (double)*(const float *)field);
    else if (p->kind == ECR_TERM_INT)
        snprintf(dflt, sizeof dflt, " (default %d)", *(const int *)field);
    append(buf, cap, "  %-22s ", head);
    if (strlen(head) > 22) append(buf, cap, "\n%25s", "");
    for (const char *s = p->help; *s; s++)
        if (*s == '\n') append(buf, cap, "\n%25s", "");
        else append(buf, cap, "%c", *s);
    append(buf, cap, "%s\n", dflt);
}

/* The --help text: usage_text with the objective terms' options (terms.c) at %TERMS%. */
static const char *usage(void) {
    static char buf[16384];
    if (buf[0]) return buf;
    ecr_train_opts def;
    ecr_train_opts_default(&def);
    const char *mark = strstr(usage_text, "%TERMS%");
    size_t head = (size_t)(mark - usage_text);
    memcpy(buf, usage_text, head);
    buf[head] = 0;
    for (int i = 0; ecr_train_term(i); i++) {
        const ecr_term_info *t = ecr_train_term(i);
        if (i == 1) append(buf, sizeof buf, "\nObjective terms (each combines with the others and with either objective):\n");
        for (int k = 0; k < t->n_opts; k++) usage_opt(buf, sizeof buf, &t->opts[k], &def);
    }
    append(buf, sizeof buf, "%s%s",
           "  --anchors, --feat and --rkd share the one projection: their dims must agree.\n"
           "  log.jsonl then carries each term's unweighted value (\"ecr\", \"kd\", ...) and\n"
           "  \"total\" per step.\n", mark + strlen("%TERMS%"));
    return buf;
}

/* The objective terms' flags (terms.c) into o. An option given without the path that
 * switches its term on, or any option of a term given without the term it needs (terms.c
 * `needs`: --orth-weight without --anchors), is an orphan: *orphan and *needs name the first. */
static void term_flags(cli_args *a, ecr_train_opts *o, const char **orphan, const char **needs) {
    for (int i = 0; ecr_train_term(i); i++) {
        const ecr_term_info *t = ecr_train_term(i);
        const char *first = NULL;
        for (int k = 0; k < t->n_opts; k++) {
            const ecr_term_opt *p = &t->opts[k];
            void *field = (char *)o + p->offset;
            int given = p->kind == ECR_TERM_FLAG ? cli_flag(a, p->flag) : cli_str(a, p->flag, NULL) != NULL;
            if (p->kind == ECR_TERM_PATH) *(const char **)field = cli_str(a, p->flag, NULL);
            else if (p->kind == ECR_TERM_FLOAT) *(float *)field = (float)cli_float(a, p->flag, *(float *)field, p->lo, p->hi);
            else if (p->kind == ECR_TERM_INT) *(int *)field = (int)cli_int(a, p->flag, *(int *)field, (long long)p->lo, (long long)p->hi);
            else *(int *)field = given;
            if (given && !first && (k > 0 || t->needs)) first = p->flag;
        }
        const ecr_term_info *n = ecr_train_term_find(t->needs); /* the term it needs, or NULL */
        if (!first || *orphan || t->on == ECR_TERM_ON_OBJECTIVE) continue;
        if (n && !ecr_train_term_on(n, o)) *orphan = first, *needs = n->opts[0].flag;
        else if (!n && !ecr_train_term_on(t, o)) *orphan = first, *needs = t->opts[0].flag;
    }
}

int cmd_train(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr train", argc, argv, usage());
    if (a.help) { cli_args_free(&a); return 0; }
    ecr_train_opts o;
    ecr_train_opts_default(&o); /* the defaults, in one place; the flags below override them */
    o.data_path = cli_require(&a, "--data");
    o.valid_path = cli_str(&a, "--valid", NULL);
    o.tokenizer_path = cli_str(&a, "--tokenizer", NULL);
    o.out_dir = cli_require(&a, "--out");
    const char *preset = cli_require(&a, "--model");
    const char *sets[64];
    int n_sets = cli_multi(&a, "--set", sets, 64);
    int has_steps = cli_str(&a, "--steps", NULL) != NULL, has_epochs = cli_str(&a, "--epochs", NULL) != NULL;
    o.steps = cli_int(&a, "--steps", 0, 1, 1LL << 40);
    o.epochs = cli_float(&a, "--epochs", o.epochs, 1e-9, 1e6);
    o.tokens_per_step = cli_int(&a, "--tokens-per-step", o.tokens_per_step, 2, 1LL << 30);
    o.seq_len = (int)cli_int(&a, "--seq-len", o.seq_len, 2, 1 << 20);
    o.lr = (float)cli_float(&a, "--lr", o.lr, 1e-12, 1e30);
    o.min_lr = (float)cli_float(&a, "--min-lr", o.min_lr, 0.0, 1e30);
    o.warmup = cli_int(&a, "--warmup", o.warmup, 0, 1LL << 40);
    o.weight_decay = (float)cli_float(&a, "--weight-decay", o.weight_decay, 0.0, 1e6);
    o.grad_clip = (float)cli_float(&a, "--grad-clip", o.grad_clip, 0.0, 1e30);
    o.seed = (uint64_t)cli_int(&a, "--seed", (long long)o.seed, 0, 1LL << 62);
    o.threads = (int)cli_int(&a, "--threads", o.threads, 0, 4096);
    cli_precision(&a, &o.precision);
    o.log_every = (int)cli_int(&a, "--log-every", o.log_every, 1, 1 << 30);
    o.eval_every = (int)cli_int(&a, "--eval-every", o.eval_every, 0, 1 << 30);
    o.save_every = (int)cli_int(&a, "--save-every", o.save_every, 0, 1 << 30);
    o.resume = cli_flag(&a, "--resume");
    o.quiet = cli_flag(&a, "--quiet");
    const char *tag = cli_str(&a, "--tag", NULL);
    const char *objective = cli_str(&a, "--objective", "lm");
    const char *orphan = NULL, *needs = NULL;
    term_flags(&a, &o, &orphan, &needs);
    if (!cli_finish(&a)) { cli_args_free(&a); return 2; }
    cli_args_free(&a);
    if (a.npos > 0) {
        fprintf(stderr, "ecr train: unexpected argument '%s' (see --help)\n", a.pos[0]);
        return 2;
    }
    if (n_sets > 64) {
        fprintf(stderr, "ecr train: at most 64 --set flags\n");
        return 2;
    }
    if (has_steps && has_epochs) {
        fprintf(stderr, "ecr train: give --steps or --epochs, not both\n");
        return 2;
    }
    if (!has_steps) o.steps = 0;
    if (orphan) {
        fprintf(stderr, "ecr train: %s needs %s\n", orphan, needs);
        return 2;
    }
    ecr_status ost = ecr_train_objective_parse(objective, &o.objective);
    if (ost) return cli_fail(ost);
    ecr_status st = ecr_config_preset(preset, &o.config);
    if (st) return cli_fail(st);
    int vocab_set = 0;
    for (int i = 0; i < n_sets; i++) {
        if ((st = ecr_config_set(&o.config, sets[i]))) return cli_fail(st);
        if (!strncmp(sets[i], "vocab_size=", 11)) vocab_set = 1;
    }
    if (!vocab_set) o.config.vocab_size = 0; /* from the data */
    o.comm = cli_comm(); /* under mpirun: one job across the processes */
    st = ecr_train(&o);
    if (!st && cli_comm_rank() == 0) st = write_run_json(&o, preset, tag, sets, n_sets);
    return st ? cli_fail(st) : 0;
}
