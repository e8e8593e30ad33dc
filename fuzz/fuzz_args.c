/* fuzz_args.c — the CLI's argument parser (cli/args.c): the input, split at NUL bytes, is
 * argv; the lookups every command makes (strings, bounded integers and floats, flags,
 * repeated flags, the precision) run on it, then cli_finish's check of what is left. */
#include "fuzz.h"
#include "cli.h"

FZ_INIT_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char *buf = malloc(n + 1), *argv[66];
    if (!buf) abort();
    memcpy(buf, data, n);
    buf[n] = '\0';
    int argc = 0;
    argv[argc++] = "ecr";
    for (size_t i = 0; i <= n && argc < 65;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    cli_args a;
    cli_args_init(&a, "ecr fuzz", argc, argv, "usage: ecr fuzz\n");
    if (!a.help) {
        const char *set[8];
        ecr_precision prec;
        cli_str(&a, "--out", NULL);
        cli_int(&a, "--k", 256, 1, 65535);
        cli_float(&a, "--lr", 1e-3, 0, 10);
        cli_flag(&a, "--quiet");
        cli_multi(&a, "--set", set, 8);
        cli_precision(&a, &prec);
        cli_require(&a, "--data");
        cli_finish(&a);
    }
    cli_args_free(&a);
    free(buf);
    return 0;
}
