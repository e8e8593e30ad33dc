/* fuzz_schemas.c — the safetensors schemas on top of the container, one per input: the
 * first byte picks prepared data (ecr_data_open), anchors (ecr_anchors_load) or a model's
 * weights (ecr_model_load of a folder with fuzz/data/tiny/'s config.json and
 * tokenizer.json), the rest is the file. */
#include "fuzz.h"

#include <sys/stat.h>

static char model_dir[512];

static void copy(const char *from, const char *to) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    if (system(cmd) != 0) abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_init();
    fz_path("model", model_dir);
    char dst[600];
    if (mkdir(model_dir, 0777) != 0) abort();
    snprintf(dst, sizeof dst, "%s/config.json", model_dir);
    copy(FUZZ_ROOT "/fuzz/data/tiny/config.json", dst);
    snprintf(dst, sizeof dst, "%s/tokenizer.json", model_dir);
    copy(FUZZ_ROOT "/fuzz/data/tiny/tokenizer.json", dst);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    if (n < 1) return 0;
    char p[512], w[600];
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
        snprintf(w, sizeof w, "%s/model.safetensors", model_dir);
        FILE *fp = fopen(w, "wb");
        if (!fp || (n > 1 && fwrite(data + 1, 1, n - 1, fp) != n - 1) || fclose(fp) != 0) abort();
        ecr_model_load(model_dir, &m);
        ecr_model_free(m);
        break;
    }
    }
    return 0;
}
