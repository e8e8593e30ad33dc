/* args.c — `--flag value` parsing shared by every subcommand. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv, const char *usage) {
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->argc = argc;
    a->argv = argv;
    a->used = calloc((size_t)argc + 1, 1);
    if (!a->used) { fprintf(stderr, "%s: out of memory\n", cmd); a->error = 1; return; }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            a->help = 1;
            return;
        }
    }
}

static int find_flag(cli_args *a, const char *flag, int from) {
    for (int i = from; i < a->argc; i++)
        if (!strcmp(a->argv[i], flag)) return i;
    return -1;
}

const char *cli_str(cli_args *a, const char *flag, const char *def) {
    int i = find_flag(a, flag, 1);
    if (i < 0) return def;
    const char *v = NULL;
    for (int j = i; j >= 0; j = find_flag(a, flag, j + 1)) {  /* last occurrence wins */
        a->used[j] = 1;
        if (j + 1 >= a->argc) {
            fprintf(stderr, "%s: %s needs a value\n", a->cmd, flag);
            a->error = 1;
            return def;
        }
        a->used[j + 1] = 1;
        v = a->argv[j + 1];
    }
    return v;
}

const char *cli_require(cli_args *a, const char *flag) {
    const char *v = cli_str(a, flag, NULL);
    if (!v && !a->error) {
        fprintf(stderr, "%s: %s is required (see --help)\n", a->cmd, flag);
        a->error = 1;
    }
    return v;
}

long long cli_int(cli_args *a, const char *flag, long long def, long long lo, long long hi) {
    const char *v = cli_str(a, flag, NULL);
    if (!v) return def;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end) {
        fprintf(stderr, "%s: %s: expected an integer, got '%s'\n", a->cmd, flag, v);
        a->error = 1;
        return def;
    }
    if (x < lo || x > hi) {
        fprintf(stderr, "%s: %s: %lld is out of range [%lld, %lld]\n", a->cmd, flag, x, lo, hi);
        a->error = 1;
        return def;
    }
    return x;
}

double cli_float(cli_args *a, const char *flag, double def, double lo, double hi) {
    const char *v = cli_str(a, flag, NULL);
    if (!v) return def;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || x != x) {
        fprintf(stderr, "%s: %s: expected a number, got '%s'\n", a->cmd, flag, v);
        a->error = 1;
        return def;
    }
    if (x < lo || x > hi) {
        fprintf(stderr, "%s: %s: %g is out of range [%g, %g]\n", a->cmd, flag, x, lo, hi);
        a->error = 1;
        return def;
    }
    return x;
}

int cli_flag(cli_args *a, const char *flag) {
    int found = 0;
    for (int i = find_flag(a, flag, 1); i >= 0; i = find_flag(a, flag, i + 1)) {
        a->used[i] = 1;
        found = 1;
    }
    return found;
}

int cli_multi(cli_args *a, const char *flag, const char **out, int cap) {
    int n = 0;
    for (int i = find_flag(a, flag, 1); i >= 0; i = find_flag(a, flag, i + 1)) {
        a->used[i] = 1;
        if (i + 1 >= a->argc) {
            fprintf(stderr, "%s: %s needs a value\n", a->cmd, flag);
            a->error = 1;
            break;
        }
        a->used[i + 1] = 1;
        if (n < cap) out[n] = a->argv[i + 1];
        n++;
        i++;
    }
    return n;
}

int cli_finish(cli_args *a) {
    if (a->error) return 0;
    for (int i = 1; i < a->argc; i++) {
        if (a->used[i]) continue;
        const char *s = a->argv[i];
        if (s[0] == '-' && s[1] == '-') {
            fprintf(stderr, "%s: unknown flag '%s' (see --help)\n", a->cmd, s);
            return 0;
        }
        if (a->npos >= (int)(sizeof a->pos / sizeof a->pos[0])) {
            fprintf(stderr, "%s: too many arguments\n", a->cmd);
            return 0;
        }
        a->pos[a->npos++] = s;
    }
    return 1;
}

void cli_args_free(cli_args *a) {
    free(a->used);
    a->used = NULL;
}

int cli_precision(cli_args *a, ecr_precision *out) {
    const char *v = cli_str(a, "--precision", "auto");
    *out = ECR_PRECISION_AUTO;
    if (v && ecr_precision_parse(v, out) != ECR_OK) {
        fprintf(stderr, "%s: --precision: expected auto, bf16 or fp32, got '%s'\n", a->cmd, v);
        a->error = 1;
    }
    return !a->error;
}

ecr_status cli_set_precision(ecr_model *m, ecr_precision want, const char *what, int quiet) {
    ecr_status st = ecr_model_set_precision(m, want);
    if (st) return st;
    if (!quiet) {
        ecr_precision p = ecr_model_precision(m);
        fprintf(stderr, "%s: precision %s%s%s%s\n", what, ecr_precision_name(p),
                want == ECR_PRECISION_AUTO ? " (auto)" : "", p == ECR_PRECISION_BF16 ? ", " : "",
                p == ECR_PRECISION_BF16 ? ecr_bf16_engine() : "");
    }
    return ECR_OK;
}

int cli_fail(ecr_status st) {
    const ecr_comm *c = cli_comm();
    char rank[32] = "";
    if (c) snprintf(rank, sizeof rank, "rank %d of %d: ", c->rank, c->size);
    fprintf(stderr, "ecr: %s%s\n", rank, ecr_last_error()[0] ? ecr_last_error() : ecr_status_name(st));
    return ecr_exit_code(st);
}
