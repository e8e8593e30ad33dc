/* fuzz_report.c — a run folder as `ecr report` loads it (rp_load_run): the input is split at
 * "\n----\n" into eval.json, run.json, log.jsonl and config.json (absent parts: no file). */
#include "fuzz.h"
#include "report.h"

static char dir[512];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_init();
    fz_folder("run", "", dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const char *names[] = {"run/eval.json", "run/run.json", "run/log.jsonl", "run/config.json"};
    size_t at[4], len[4];
    int k = fz_split(data, n, 4, at, len);
    char p[512];
    for (int i = 0; i < 4; i++) {
        if (i < k) fz_file(names[i], data + at[i], len[i], p);
        else remove(fz_path(names[i], p));
    }
    run u;
    memset(&u, 0, sizeof u);
    rp_load_run(&u, dir);
    rp_run_free(&u);
    return 0;
}
