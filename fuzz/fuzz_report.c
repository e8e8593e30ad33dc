/* fuzz_report.c — a run folder as `ecr report` loads it (rp_load_run): the input is split at
 * "\n----\n" into eval.json, run.json, log.jsonl and config.json (absent parts: no file). */
#include "fuzz.h"
#include "report.h"

#include <sys/stat.h>

static char dir[512];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_init();
    fz_path("run", dir);
    if (mkdir(dir, 0777) != 0) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    static const char *names[] = {"eval.json", "run.json", "log.jsonl", "config.json"};
    size_t at[4], len[4];
    int k = fz_split(data, n, 4, at, len);
    char p[600];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        remove(p);
        if (i >= k) continue;
        FILE *fp = fopen(p, "wb");
        if (!fp || (len[i] && fwrite(data + at[i], 1, len[i], fp) != len[i]) || fclose(fp) != 0) abort();
    }
    run u;
    memset(&u, 0, sizeof u);
    rp_load_run(&u, dir);
    rp_run_free(&u);
    return 0;
}
