/* cli.h — internal to the ecr command-line tool: argument parsing and command entry
 * points. Only the CLI calls exit(); library code returns statuses. */
#ifndef ECR_CLI_H
#define ECR_CLI_H
#include "ecr.h"

/* Parsed `--flag value` arguments of one subcommand. Usage:
 *   cli_args a; cli_args_init(&a, "ecr prepare", argc, argv, usage_text);
 *   if (a.help) return 0;                        // --help printed usage on stdout
 *   const char *out = cli_str(&a, "--out", NULL); ...
 *   if (!cli_finish(&a)) return 2;               // unknown flag / bad value / missing
 * Positional arguments (not starting with "--") are collected in pos[]. */
typedef struct cli_args {
    const char *cmd;          /* "ecr prepare", for messages          */
    int argc;
    char **argv;
    unsigned char *used;      /* argv entries consumed by a lookup    */
    const char *pos[64];      /* positional arguments                 */
    int npos;
    int help;                 /* --help was given (usage printed)     */
    int error;                /* a lookup failed (message printed)    */
} cli_args;

void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv, const char *usage);
/* Value of `--flag value`, or `def` when absent. `required` flags: pass def = NULL and
 * call cli_require. */
const char *cli_str(cli_args *a, const char *flag, const char *def);
const char *cli_require(cli_args *a, const char *flag);
long long cli_int(cli_args *a, const char *flag, long long def, long long lo, long long hi);
double cli_float(cli_args *a, const char *flag, double def, double lo, double hi);
/* 1 if the boolean `--flag` is present. */
int cli_flag(cli_args *a, const char *flag);
/* Every `--flag value` occurrence in order (for repeatable flags like --set); returns the
 * count, values in out[] up to cap. */
int cli_multi(cli_args *a, const char *flag, const char **out, int cap);
/* Reports unknown flags and earlier errors; returns 1 when the command may proceed. */
int cli_finish(cli_args *a);
void cli_args_free(cli_args *a);

/* The --help lines of --precision, shared by train, embed, eval and generate. */
#define CLI_PRECISION_HELP \
    "  --precision P          auto (default), bf16 or fp32: the matrix products of the linear\n" \
    "                         layers and the head (bf16 inputs, fp32 sums; everything else\n" \
    "                         stays fp32). auto picks bf16 where the CPU has AMX-BF16 or\n" \
    "                         AVX512-BF16 and ecr was built with oneDNN, else fp32; bf16\n" \
    "                         elsewhere is an error (ECR_BF16_EMULATE=1 runs it on a slow\n" \
    "                         reference engine, for tests)\n"

/* `--precision auto|bf16|fp32` (default auto) into *out; a bad value is reported and
 * sets a->error. Returns 1 when the flag is absent or valid. */
int cli_precision(cli_args *a, ecr_precision *out);
/* Sets the model's precision (ecr_model_set_precision: ECR_E_INVALID when bf16 cannot run
 * here) and, unless quiet, says on stderr which one runs: "<what>: precision bf16 (auto),
 * oneDNN brg:avx512_core_amx_bf16". */
ecr_status cli_set_precision(ecr_model *m, ecr_precision want, const char *what, int quiet);

/* Prints "ecr: <message>" from ecr_last_error() on stderr, returns the exit code. */
int cli_fail(ecr_status st);

/* Processes of an MPI job (comm.c). cli_comm_start starts MPI when an MPI launcher started
 * us (returns nonzero, having said why, when that fails); cli_comm_end(rc) ends it and
 * returns rc, or aborts the whole job with rc when it is nonzero. cli_comm_check(cmd,
 * parallel): 0 when `cmd` may run here, else the exit code, having said why (a command
 * that is not `parallel` under a launcher of several processes, or a build without MPI).
 * cli_comm: the communicator for the library, NULL for one process. */
int cli_comm_start(int *argc, char ***argv);
int cli_comm_end(int rc);
int cli_comm_check(const char *cmd, int parallel);
const ecr_comm *cli_comm(void);
int cli_comm_rank(void);
/* The MPI library this ecr was built with ("Open MPI v4.1.4"), or "none (...)". */
const char *cli_comm_library(void);

/* Subcommands: each returns the process exit code. */
int cmd_tokenizer(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_prepare(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_anchors(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_export(int argc, char **argv);
#endif
