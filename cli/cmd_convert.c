/* cmd_convert.c — `ecr convert`: rewrites a model folder with its tensors in another
 * dtype (BF16 or F16 to ship weights at half the size; F32 back). */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *usage =
    "usage: ecr convert --model MODEL_DIR --dtype bf16|f16|f32 --out OUT_DIR\n"
    "\n"
    "Writes a copy of a model folder (config.json, model.safetensors, tokenizer.json) with\n"
    "its tensors stored as bf16, f16 or f32 (round to nearest even). Every ecr command loads\n"
    "all three into fp32. Training state and logs are not copied.\n"
    "\n"
    "  --model DIR     model folder to read\n"
    "  --dtype NAME    bf16, f16 or f32\n"
    "  --out DIR       model folder to write (a new folder appears whole or not at all; in an\n"
    "                  existing one each file is replaced atomically)\n";

/* Saves m into `out`: a folder that does not exist yet appears whole or not at all (written
 * as OUT.tmp.PID, then renamed); an existing one has each file replaced atomically. */
static ecr_status save_whole(const ecr_model *m, const char *out, const char *tok, ecr_dtype dtype) {
    struct stat sb;
    if (stat(out, &sb) == 0) return ecr_model_save_as(m, out, tok, NULL, dtype);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') n--;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%.*s.tmp.%ld", (int)n, out, (long)getpid()) >= sizeof tmp)
        return ecr_fail(ECR_E_INVALID, "%s: path too long", out);
    ecr_status st = ecr_make_dirs(tmp);
    if (!st) st = ecr_model_save_as(m, tmp, tok, NULL, dtype);
    if (!st && rename(tmp, out) != 0) st = ecr_fail(ECR_E_IO, "%s: cannot rename into place: %s", out, strerror(errno));
    if (st) { /* keep the message naming the output, not the temporary folder */
        char why[1024];
        snprintf(why, sizeof why, "%s", ecr_last_error());
        const char *names[] = {"model.safetensors", "config.json", "tokenizer.json"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char *p = ecr_path_join(tmp, names[i]);
            if (p) remove(p);
            free(p);
        }
        rmdir(tmp);
        char *at = strstr(why, tmp);
        if (at) ecr_fail(st, "%.*s%s%s", (int)(at - why), why, out, at + strlen(tmp));
    }
    return st;
}

int cmd_convert(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr convert", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    const char *model = cli_require(&a, "--model");
    const char *dt = cli_require(&a, "--dtype");
    const char *out = cli_require(&a, "--out");
    int ok = cli_finish(&a);
    cli_args_free(&a);
    if (!ok) return 2;
    ecr_dtype dtype;
    if (!strcmp(dt, "bf16")) dtype = ECR_BF16;
    else if (!strcmp(dt, "f16")) dtype = ECR_F16;
    else if (!strcmp(dt, "f32")) dtype = ECR_F32;
    else {
        fprintf(stderr, "ecr convert: --dtype: expected bf16, f16 or f32, got '%s'\n", dt);
        return 2;
    }
    ecr_model *m = NULL;
    ecr_status st = ecr_model_load(model, &m);
    char *tok = ecr_path_join(model, "tokenizer.json");
    if (!st && !tok) st = ecr_fail(ECR_E_NOMEM, "out of memory");
    if (!st) st = save_whole(m, out, tok, dtype);
    if (!st)
        fprintf(stderr, "convert: %zu parameters -> %s/model.safetensors (%s)\n",
                ecr_model_num_params(m), out, ecr_dtype_name(dtype));
    free(tok);
    ecr_model_free(m);
    return st ? cli_fail(st) : 0;
}
