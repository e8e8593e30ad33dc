/* fuzz_config.c — a model folder's config.json (ecr_model_load; the folder's weights and
 * tokenizer are those of fuzz/data/tiny/, so a config that parses goes on to the shape
 * checks against real weights). A model that loads has a config that validates. */
#include "fuzz.h"

#include <sys/stat.h>

static char dir[512];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_init();
    fz_path("model", dir);
    if (mkdir(dir, 0777) != 0) abort();
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp '%s/fuzz/data/tiny/tokenizer.json' '%s/fuzz/data/tiny/model.safetensors' '%s/'",
             FUZZ_ROOT, FUZZ_ROOT, dir);
    if (system(cmd) != 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *fp = fopen(p, "wb");
    if (!fp || (n && fwrite(data, 1, n, fp) != n) || fclose(fp) != 0) abort();
    ecr_model *m = NULL;
    if (ecr_model_load(dir, &m) == ECR_OK && ecr_config_validate(ecr_model_config(m)) != ECR_OK) abort();
    ecr_model_free(m);
    return 0;
}
