/* fuzz_schemas.c — the safetensors schemas on top of the container, one per input: the
 * first byte picks prepared data (ecr_data_open), anchors (ecr_anchors_load) or a model's
 * weights (ecr_model_load of a folder with fuzz/data/tiny/'s config.json and
 * tokenizer.json), the rest is the file. */
#include "fuzz.h"

static char model_dir[512];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_init();
    fz_folder("model", "config.json tokenizer.json", model_dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    char p[512];
    switch (data[0] % 3) {
    case 0: {
        ecr_data *d = NULL;
        ecr_data_open(fz_file("data.safetensors", data + 1, n - 1, p), &d);
        ecr_data_free(d);
        break;
    }
    case 1: {
        ecr_anchors *a = NULL;
        ecr_anchors_load(fz_file("anchors.safetensors", data + 1, n - 1, p), &a);
        ecr_anchors_free(a);
        break;
    }
    default: {
        ecr_model *m = NULL;
        fz_file("model/model.safetensors", data + 1, n - 1, p);
        ecr_model_load(model_dir, &m);
        ecr_model_free(m);
        break;
    }
    }
    return 0;
}
