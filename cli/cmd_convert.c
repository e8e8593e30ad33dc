/* cmd_convert.c — `ecr convert`: rewrites a model folder with its tensors in another
 * dtype (BF16 or F16 to ship weights at half the size; F32 back). */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: ecr convert --model MODEL_DIR --dtype bf16|f16|f32 --out OUT_DIR\n"
    "\n"
    "Writes a copy of a model folder (config.json, model.safetensors, tokenizer.json) with\n"
    "its tensors stored as bf16, f16 or f32 (round to nearest even). Every ecr command loads\n"
    "all three into fp32. Training state and logs are not copied.\n"
    "\n"
    "  --model DIR     model folder to read\n"
    "  --dtype NAME    bf16, f16 or f32\n"
    "  --out DIR       model folder to write (files written atomically)\n";

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
    if (!st) st = ecr_model_save_as(m, out, tok, NULL, dtype);
    if (!st)
        fprintf(stderr, "convert: %zu parameters -> %s/model.safetensors (%s)\n",
                ecr_model_num_params(m), out, ecr_dtype_name(dtype));
    free(tok);
    ecr_model_free(m);
    return st ? cli_fail(st) : 0;
}
