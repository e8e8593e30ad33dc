/* fuzz_safetensors.c — the safetensors container (ecr_st_open_memory) on arbitrary bytes:
 * every tensor of a file that opens lies inside it, and every metadata pair is readable. */
#include "fuzz.h"

FZ_INIT_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    ecr_st_file *f = NULL;
    if (ecr_st_open_memory(data, n, "fuzz", &f) == ECR_OK) {
        unsigned acc = 0; /* every byte readable (ASan checks the reads) */
        for (size_t i = 0; i < ecr_st_count(f); i++) {
            const ecr_tensor_view *v = ecr_st_at(f, i);
            if (!v || !v->name || !v->data || v->nbytes > n) abort();
            for (size_t b = 0; b < v->nbytes; b++) acc ^= ((const unsigned char *)v->data)[b];
            if (ecr_st_find(f, v->name) != v) abort();
        }
        if (acc == 0x1234567) fputc('.', stdout);
        for (size_t i = 0; i < ecr_st_meta_count(f); i++) {
            const char *k = NULL, *val = NULL;
            ecr_st_meta_at(f, i, &k, &val);
            if (!k || !val || strlen(k) > n || ecr_st_meta(f, k) == NULL) abort();
        }
    }
    ecr_st_close(f);
    return 0;
}
