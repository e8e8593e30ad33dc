/* fuzz_config.c — a model folder's config.json (ecr_model_load; the folder's weights and
 * tokenizer are those of fuzz/data/tiny/, so a config that parses goes on to the shape
 * checks against real weights). A model that loads has a config that validates. */
#include "fuzz.h"

static char dir[512];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_init();
    fz_folder("model", "tokenizer.json model.safetensors", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char p[512];
    fz_file("model/config.json", data, n, p);
    ecr_model *m = NULL;
    if (ecr_model_load(dir, &m) == ECR_OK && ecr_config_validate(ecr_model_config(m)) != ECR_OK) abort();
    ecr_model_free(m);
    return 0;
}
