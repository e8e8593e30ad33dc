/* fuzz_encode.c — the tokenizer's encoder on arbitrary bytes, with the shipped tokenizer
 * (teacher/model/tokenizer.json; FUZZ_TOKENIZER overrides): invalid UTF-8 is refused, and
 * every valid input comes back byte for byte through decode. */
#include "fuzz.h"

static ecr_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *path = getenv("FUZZ_TOKENIZER");
    if (ecr_tokenizer_load(path ? path : FUZZ_ROOT "/teacher/model/tokenizer.json", &tok) != ECR_OK) {
        fprintf(stderr, "fuzz_encode: %s\n", ecr_last_error());
        abort();
    }
    fz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    fz_roundtrip(tok, (const char *)data, n);
    return 0;
}
