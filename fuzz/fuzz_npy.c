/* fuzz_npy.c — .npy files (ecr_npy_info, ecr_npy_read): what loads has the shape the
 * header claims. */
#include "fuzz.h"

FZ_INIT_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char p[512], descr[32];
    int fortran = 0, ndim = 0;
    int64_t shape[ECR_MAX_DIMS];
    fz_file("x.npy", data, n, p);
    ecr_npy_info(p, descr, sizeof descr, &fortran, &ndim, shape);
    float *x = NULL;
    int64_t rows = 0, cols = 0;
    if (ecr_npy_read(p, &x, &rows, &cols) == ECR_OK) {
        if (rows < 0 || cols < 0 || (size_t)(rows * cols) * sizeof(float) > n) abort();
        float sum = 0; /* every element readable (ASan checks the reads) */
        for (int64_t i = 0; i < rows * cols; i++) sum += x[i];
        if (sum == 12345.678f) fputc('.', stdout);
    }
    free(x);
    return 0;
}
