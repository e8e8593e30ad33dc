/* llama_time.c — llama.cpp's prefill and decode speed through its own C API, for
 * bench_generate.sh: the peer of `ecr generate` without node's event loop between tokens
 * (node-llama-cpp's per-token hand-offs cost llama.cpp's thread pool most of its speed at 2
 * threads on 2 cores). Built by the script against the shared libraries node-llama-cpp ships
 * and the llama.h of the llama.cpp release they were built from (node-llama-cpp's
 * llama/gitRelease.bundle).
 *
 *   llama_time BACKEND_DIR MODEL.gguf THREADS NEW REPS PROMPT_IDS
 *
 * PROMPT_IDS: a file of space-separated token ids, the whole input (BOS included). Per rep:
 * the cache cleared, the prompt in one batch, then NEW - 1 single-token steps, each token
 * the argmax of the last logits (lowest id on ties, as ecr's greedy). F32 KV cache, no flash
 * attention, context and batch 256. One JSON line per rep on stdout:
 *   {"prefill_tps": P, "decode_tps": D, "tokens": [...]}
 * prefill: the prompt's decode and the first argmax; decode: the NEW - 1 steps after it. */
#include "llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void log_errors(enum ggml_log_level level, const char *text, void *ctx) {
    (void)ctx;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static llama_token argmax(const float *logits, int V) {
    llama_token best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: llama_time BACKEND_DIR MODEL.gguf THREADS NEW REPS PROMPT_IDS\n");
        return 2;
    }
    int threads = atoi(argv[3]), n_new = atoi(argv[4]), reps = atoi(argv[5]);
    if (threads < 1 || n_new < 2 || n_new > 1024 || reps < 1) {
        fprintf(stderr, "llama_time: THREADS >= 1, NEW in [2, 1024], REPS >= 1\n");
        return 2;
    }
    static llama_token prompt[1024], out[1024];
    int n = 0;
    FILE *f = fopen(argv[6], "r");
    if (!f) {
        fprintf(stderr, "llama_time: cannot open %s\n", argv[6]);
        return 2;
    }
    while (n < 1024 && fscanf(f, "%d", &prompt[n]) == 1) n++;
    fclose(f);
    if (n < 1 || n + n_new > 256) {
        fprintf(stderr, "llama_time: %s: %d token ids; 1 to %d with NEW %d (context 256)\n", argv[6], n,
                256 - n_new, n_new);
        return 2;
    }
    llama_log_set(log_errors, NULL);
    ggml_backend_load_all_from_path(argv[1]);
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[2], mp);
    if (!model) {
        fprintf(stderr, "llama_time: %s: llama.cpp could not load it\n", argv[2]);
        return 1;
    }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = 256;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = cp.type_v = GGML_TYPE_F32;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llama_time: llama.cpp could not make a context\n");
        return 1;
    }
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    for (int r = 0; r < reps; r++) {
        llama_memory_clear(llama_get_memory(ctx), 1);
        double t0 = now();
        if (llama_decode(ctx, llama_batch_get_one(prompt, n))) return 1;
        out[0] = argmax(llama_get_logits_ith(ctx, -1), V);
        double t1 = now();
        for (int k = 1; k < n_new; k++) {
            if (llama_decode(ctx, llama_batch_get_one(&out[k - 1], 1))) return 1;
            out[k] = argmax(llama_get_logits_ith(ctx, -1), V);
        }
        double t2 = now();
        printf("{\"prefill_tps\": %.1f, \"decode_tps\": %.1f, \"tokens\": [", n / (t1 - t0), (n_new - 1) / (t2 - t1));
        for (int k = 0; k < n_new; k++) printf("%s%d", k ? ", " : "", out[k]);
        printf("]}\n");
    }
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
