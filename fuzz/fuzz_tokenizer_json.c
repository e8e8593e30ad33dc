/* fuzz_tokenizer_json.c — tokenizer.json loading (ecr_tokenizer_load); a tokenizer that
 * loads must give back a short multilingual text through encode and decode. */
#include "fuzz.h"

FZ_INIT_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char p[512];
    ecr_tokenizer *tok = NULL;
    if (ecr_tokenizer_load(fz_file("tokenizer.json", data, n, p), &tok) == ECR_OK) {
        static const char text[] = "Hello, w\xc3\xb6rld: 123 \xe4\xbd\xa0\xe5\xa5\xbd!";
        fz_roundtrip(tok, text, sizeof text - 1);
    }
    ecr_tokenizer_free(tok);
    return 0;
}
