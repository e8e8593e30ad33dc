/* fuzz_corpus.c — the JSONL corpus reader (ecr_corpus_read) on arbitrary bytes. */
#include "fuzz.h"

FZ_INIT_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char p[512];
    ecr_corpus *c = NULL;
    if (ecr_corpus_read(fz_file("corpus.jsonl", data, n, p), &c) == ECR_OK) {
        if (!c || c->n == 0) abort(); /* success means at least one text */
        for (size_t i = 0; i < c->n; i++)
            if (!c->text[i] || !c->text[i][0]) abort();
    }
    ecr_corpus_free(c);
    return 0;
}
