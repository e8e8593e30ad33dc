/* fuzz_log.c — log.jsonl as the report and `ecr eval --log` read it: the one reader
 * (ecr_log_open / ecr_log_next) record by record, and the stability metrics over it. */
#include "fuzz.h"

FZ_INIT_ONLY

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char p[512];
    fz_file("log.jsonl", data, n, p);
    ecr_log_reader *r = NULL;
    if (ecr_log_open(p, &r) == ECR_OK) {
        ecr_log_record rec;
        int more = 1;
        long last = 0;
        while (more && ecr_log_next(r, &rec, &more) == ECR_OK && more) {
            if (rec.line <= last || !rec.text || strlen(rec.text) != rec.len) abort(); /* lines in order */
            last = rec.line;
        }
    }
    ecr_log_close(r);
    ecr_stability s;
    ecr_stability_read_log(p, &s);
    return 0;
}
