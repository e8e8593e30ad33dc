/* cmd_train.c — `ecr train`: flags -> ecr_train_opts -> ecr_train. */
#include "cli.h"

#include <cJSON.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
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
    "  --threads N            threads (default: all cores)\n"
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
    "When training ends, MODEL_DIR/run.json records the run: preset, tag, method (none, kd,\n"
    "feat, rkd, ecr or a '+' combination such as ecr+kd), seed and the flags that shaped it.\n"
    "\n"
    "Objective:\n"
    "  --objective lm|lm+contrastive\n"
    "                         lm (default): next-token loss. lm+contrastive (the teacher):\n"
    "                         plus a symmetric in-batch InfoNCE between the pooled, normalised\n"
    "                         embeddings of texts of the same group (translations); each step\n"
    "                         holds whole groups, and an epoch is one pass over the groups\n"
    "  --contrastive-weight W weight of the InfoNCE term (default 1.0)\n"
    "  --contrastive-tau T    its temperature (default 0.05)\n"
    "  --group-size G         texts per group in a step, distinct languages first (default 2)\n"
    "  --anchors FILE         add the ECR regulariser with these anchors (ecr anchors); their\n"
    "                         codes must cover the training data's texts. Adds the projection\n"
    "                         ecr.proj.weight [D, dim] to the model. No teacher is read.\n"
    "  --ecr-weight L         ECR weight lambda (default 0.05)\n"
    "  --ecr-tau T            ECR temperature (default: the anchors file's, normally 0.05)\n"
    "  --ecr-soft             soft targets from the anchors' top-M codes (ecr anchors --soft M)\n"
    "\n"
    "Baselines (each combines with the others, with --anchors and with either objective):\n"
    "  --kd DIR               logit distillation from the teacher model in DIR (same tokenizer;\n"
    "                         its max_seq_len at least --seq-len): a teacher forward pass on\n"
    "                         every batch; loss (1 - alpha) lm + alpha T^2 KL(teacher || student)\n"
    "                         of the softened next-token distributions, mean over target tokens\n"
    "  --kd-alpha A           alpha, 0 to 1 (default 0.5)\n"
    "  --kd-temp T            temperature T (default 2)\n"
    "  --feat FILE            feature matching: adds w mean (1 - cos(P h, t)) with t the text's\n"
    "                         row of FILE (.npy, one row per training text, e.g. ecr embed of\n"
    "                         a teacher); adds the projection ecr.proj.weight [D, dim], D = the\n"
    "                         file's columns\n"
    "  --feat-weight W        w (default 1.0)\n"
    "  --rkd FILE             relational KD (Park et al. 2019) between u = P h / |P h| and the\n"
    "                         normalised rows of FILE over the texts of each step: 25 x distance\n"
    "                         + 50 x angle loss (smooth-L1); FILE as for --feat\n"
    "  --rkd-weight W         weight of the RKD term (default 1.0)\n"
    "  --anchors, --feat and --rkd share the one projection: their dims must agree.\n"
    "  log.jsonl then carries \"kd\", \"feat\", \"rkd\" (unweighted) and \"total\" per step.\n"
    "\n"
    "Exit status: 0 done, 1 runtime failure (e.g. a NaN loss), 2 bad usage or bad input.\n";

/* The method of a run, from its regularisers: "none", or the '+'-joined names of the terms
 * on, in the order kd, feat, rkd, ecr ("ecr+kd" is spelled as in DESIGN). */
static void method_name(const ecr_train_opts *o, char *buf, size_t n) {
    buf[0] = 0;
    if (o->anchors_path && o->kd_teacher && !o->feat_path && !o->rkd_path) {
        snprintf(buf, n, "ecr+kd");
        return;
    }
    const char *names[4] = {"kd", "feat", "rkd", "ecr"};
    int on[4] = {o->kd_teacher != NULL, o->feat_path != NULL, o->rkd_path != NULL, o->anchors_path != NULL};
    for (int i = 0; i < 4; i++)
        if (on[i]) snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", buf[0] ? "+" : "", names[i]);
    if (!buf[0]) snprintf(buf, n, "none");
}

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
    method_name(o, method, sizeof method);
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
    if (o->anchors_path) {
        cJSON_AddStringToObject(j, "anchors", o->anchors_path);
        cJSON_AddNumberToObject(j, "ecr_weight", f7(o->ecr_weight));
        if (o->ecr_tau > 0) cJSON_AddNumberToObject(j, "ecr_tau", f7(o->ecr_tau));
        cJSON_AddBoolToObject(j, "ecr_soft", o->ecr_soft);
    }
    if (o->kd_teacher) {
        cJSON_AddStringToObject(j, "kd", o->kd_teacher);
        cJSON_AddNumberToObject(j, "kd_alpha", f7(o->kd_alpha));
        cJSON_AddNumberToObject(j, "kd_temp", f7(o->kd_temp));
    }
    if (o->feat_path) {
        cJSON_AddStringToObject(j, "feat", o->feat_path);
        cJSON_AddNumberToObject(j, "feat_weight", f7(o->feat_weight));
    }
    if (o->rkd_path) {
        cJSON_AddStringToObject(j, "rkd", o->rkd_path);
        cJSON_AddNumberToObject(j, "rkd_weight", f7(o->rkd_weight));
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

int cmd_train(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr train", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    ecr_train_opts o;
    ecr_train_opts_default(&o);
    o.data_path = cli_require(&a, "--data");
    o.valid_path = cli_str(&a, "--valid", NULL);
    o.tokenizer_path = cli_str(&a, "--tokenizer", NULL);
    o.out_dir = cli_require(&a, "--out");
    const char *preset = cli_require(&a, "--model");
    const char *sets[64];
    int n_sets = cli_multi(&a, "--set", sets, 64);
    int has_steps = cli_str(&a, "--steps", NULL) != NULL, has_epochs = cli_str(&a, "--epochs", NULL) != NULL;
    o.steps = cli_int(&a, "--steps", 0, 1, 1LL << 40);
    o.epochs = cli_float(&a, "--epochs", 1.0, 1e-9, 1e6);
    o.tokens_per_step = cli_int(&a, "--tokens-per-step", 4096, 2, 1LL << 30);
    o.seq_len = (int)cli_int(&a, "--seq-len", 0, 2, 1 << 20);
    o.lr = (float)cli_float(&a, "--lr", o.lr, 1e-12, 1e30);
    o.min_lr = (float)cli_float(&a, "--min-lr", -1.0, 0.0, 1e30);
    o.warmup = cli_int(&a, "--warmup", -1, 0, 1LL << 40);
    o.weight_decay = (float)cli_float(&a, "--weight-decay", o.weight_decay, 0.0, 1e6);
    o.grad_clip = (float)cli_float(&a, "--grad-clip", o.grad_clip, 0.0, 1e30);
    o.seed = (uint64_t)cli_int(&a, "--seed", 1, 0, 1LL << 62);
    o.threads = (int)cli_int(&a, "--threads", 0, 0, 4096);
    cli_precision(&a, &o.precision);
    o.log_every = (int)cli_int(&a, "--log-every", 10, 1, 1 << 30);
    o.eval_every = (int)cli_int(&a, "--eval-every", 0, 0, 1 << 30);
    o.save_every = (int)cli_int(&a, "--save-every", 0, 0, 1 << 30);
    o.resume = cli_flag(&a, "--resume");
    o.quiet = cli_flag(&a, "--quiet");
    const char *tag = cli_str(&a, "--tag", NULL);
    const char *objective = cli_str(&a, "--objective", "lm");
    o.contrastive_weight = (float)cli_float(&a, "--contrastive-weight", o.contrastive_weight, 0.0, 1e6);
    o.contrastive_tau = (float)cli_float(&a, "--contrastive-tau", o.contrastive_tau, 1e-6, 1e6);
    o.group_size = (int)cli_int(&a, "--group-size", o.group_size, 2, ECR_MAX_WINDOW);
    o.anchors_path = cli_str(&a, "--anchors", NULL);
    int has_ecr_flags = cli_str(&a, "--ecr-weight", NULL) || cli_str(&a, "--ecr-tau", NULL);
    o.ecr_weight = (float)cli_float(&a, "--ecr-weight", o.ecr_weight, 0.0, 1e6);
    o.ecr_tau = (float)cli_float(&a, "--ecr-tau", 0.0, 1e-6, 1e6);
    o.ecr_soft = cli_flag(&a, "--ecr-soft");
    o.kd_teacher = cli_str(&a, "--kd", NULL);
    int has_kd_flags = cli_str(&a, "--kd-alpha", NULL) || cli_str(&a, "--kd-temp", NULL);
    o.kd_alpha = (float)cli_float(&a, "--kd-alpha", o.kd_alpha, 0.0, 1.0);
    o.kd_temp = (float)cli_float(&a, "--kd-temp", o.kd_temp, 1e-3, 1e3);
    o.feat_path = cli_str(&a, "--feat", NULL);
    int has_feat_w = cli_str(&a, "--feat-weight", NULL) != NULL;
    o.feat_weight = (float)cli_float(&a, "--feat-weight", o.feat_weight, 0.0, 1e6);
    o.rkd_path = cli_str(&a, "--rkd", NULL);
    int has_rkd_w = cli_str(&a, "--rkd-weight", NULL) != NULL;
    o.rkd_weight = (float)cli_float(&a, "--rkd-weight", o.rkd_weight, 0.0, 1e6);
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
    if ((has_ecr_flags || o.ecr_soft) && !o.anchors_path) {
        fprintf(stderr, "ecr train: --ecr-weight, --ecr-tau and --ecr-soft need --anchors\n");
        return 2;
    }
    const char *orphan = has_kd_flags && !o.kd_teacher ? "--kd-alpha and --kd-temp need --kd"
                         : has_feat_w && !o.feat_path ? "--feat-weight needs --feat"
                         : has_rkd_w && !o.rkd_path   ? "--rkd-weight needs --rkd"
                                                      : NULL;
    if (orphan) {
        fprintf(stderr, "ecr train: %s\n", orphan);
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
    st = ecr_train(&o);
    if (!st) st = write_run_json(&o, preset, tag, sets, n_sets);
    return st ? cli_fail(st) : 0;
}
