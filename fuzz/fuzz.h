/* fuzz.h — what the libFuzzer targets (fuzz/fuzz_*.c) share: a scratch folder of their own,
 * input bytes written to a file there (most parsers read paths), a tokenizer round trip.
 * Run them with -close_fd_mask=3 (`make fuzz` does): the library's one-line errors and the
 * CLI's usage texts go nowhere, libFuzzer's reports still show.
 *
 * A target defines LLVMFuzzerTestOneInput and calls fz_init from LLVMFuzzerInitialize;
 * it must accept every input without a crash, a leak, undefined behaviour or a hang, and
 * may abort() when a property it checks fails (a round trip, say). Built by `make fuzz`. */
#ifndef ECR_FUZZ_H
#define ECR_FUZZ_H
#include "ecr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fz_dir[256];

/* A fresh scratch folder for this process, removed at exit (files in it only). */
static inline void fz_cleanup(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
    if (system(cmd) != 0) { /* best effort */ }
}
static inline void fz_init(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(fz_dir, sizeof fz_dir, "%s/ecr_fuzz_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(fz_dir)) abort();
    atexit(fz_cleanup);
}

/* The LLVMFuzzerInitialize of a target that needs nothing more than fz_init. */
#define FZ_INIT_ONLY                                                  \
    int LLVMFuzzerInitialize(int *argc, char ***argv) {              \
        (void)argc, (void)argv;                                       \
        fz_init();                                                    \
        return 0;                                                     \
    }

/* fz_dir/name, in a static buffer per call site's argument (caller copies if needed). */
static inline const char *fz_path(const char *name, char buf[512]) {
    snprintf(buf, 512, "%s/%s", fz_dir, name);
    return buf;
}

/* Splits the input at each "\n----\n" into at most `max` parts (the last takes the rest):
 * part i is data + at[i], len[i] bytes. Returns the number of parts. */
static inline int fz_split(const uint8_t *data, size_t n, int max, size_t *at, size_t *len) {
    static const char sep[] = "\n----\n";
    const size_t ns = sizeof sep - 1;
    int k = 0;
    size_t start = 0;
    for (size_t i = 0; k < max - 1 && i + ns <= n; i++)
        if (!memcmp(data + i, sep, ns)) {
            at[k] = start;
            len[k++] = i - start;
            start = i + ns;
            i += ns - 1;
        }
    at[k] = start;
    len[k++] = n - start;
    return k;
}

/* Makes the folder fz_dir/name with a copy of each of fuzz/data/tiny/'s files listed in
 * `files` (space-separated; "" for none); its path goes to buf. */
static inline const char *fz_folder(const char *name, const char *files, char buf[512]) {
    fz_path(name, buf);
    if (mkdir(buf, 0777) != 0) abort();
    char cmd[2048], word[128];
    for (const char *f = files; sscanf(f, "%127s", word) == 1; f = strstr(f, word) + strlen(word)) {
        snprintf(cmd, sizeof cmd, "cp '%s/fuzz/data/tiny/%s' '%s/'", FUZZ_ROOT, word, buf);
        if (system(cmd) != 0) abort();
    }
    return buf;
}

/* Writes n bytes of data to fz_dir/name (name may hold a folder made by fz_folder) and
 * returns its path (in buf). */
static inline const char *fz_file(const char *name, const uint8_t *data, size_t n, char buf[512]) {
    fz_path(name, buf);
    FILE *fp = fopen(buf, "wb");
    if (!fp || (n && fwrite(data, 1, n, fp) != n) || fclose(fp) != 0) abort();
    return buf;
}

/* Encodes `len` bytes of text with tok and, when that succeeds, decodes the ids: the bytes
 * must come back exactly (decode(encode(s)) == s), else abort(). Returns the status of the
 * encoding (ECR_E_INVALID for invalid UTF-8). */
static inline ecr_status fz_roundtrip(const ecr_tokenizer *tok, const char *text, size_t len) {
    size_t n = 0, nb = 0;
    ecr_status st = ecr_tokenizer_encode(tok, text, len, NULL, 0, &n);
    if (st) return st;
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) abort();
    size_t n2 = 0;
    if (ecr_tokenizer_encode(tok, text, len, ids, n, &n2) != ECR_OK || n2 != n) abort();
    if (ecr_tokenizer_decode(tok, ids, n, NULL, 0, &nb) != ECR_OK || nb != len) abort();
    char *back = malloc(nb + 1);
    if (!back) abort();
    if (ecr_tokenizer_decode(tok, ids, n, back, nb + 1, &nb) != ECR_OK || memcmp(back, text, len) != 0) abort();
    free(back);
    free(ids);
    return ECR_OK;
}
#endif
