/* fuzz_state.c — the checkpoint a resume reads (train_state.safetensors: its container, the
 * format, the options it must share with the run, the weights, the optimizer's moments,
 * the step, the data cursor), through the real resume: ecr_train with `resume` on a folder
 * whose other files come from a reference run.
 *
 * Once, at start: a corpus of a few texts prepared with fuzz/data/tiny/'s tokenizer, and a
 * 2-step reference run of its config (one thread, fp32). Per input: the run folder's files
 * rewritten (the reference's config, tokenizer, model and log; the input as the state), then a resume to
 * step 3 (so a state that loads costs at most a few steps of a 280-token, 8-wide model).
 * A state that loads must leave a folder that resumes again (the second resume has nothing
 * to do and must succeed), else abort().
 *
 * The seed (fuzz/corpus/state/ref) is the reference run's own state: it passes every check,
 * so mutations reach the deepest ones. FUZZ_STATE_SEED=PATH writes it there afresh (needed
 * when the checkpoint format or the reference run changes). */
#include "fuzz.h"

static const char *corpus_text =
    "{\"text\": \"the quick brown fox jumps over the lazy dog\"}\n"
    "{\"text\": \"a stitch in time saves nine, they said\"}\n"
    "{\"text\": \"une hirondelle ne fait pas le printemps\"}\n"
    "{\"text\": \"all that glitters is not gold\"}\n";

static char data_path[512];
static ecr_config config;
static const char *const ref_files[] = {"config.json", "tokenizer.json", "model.safetensors", "log.jsonl"};
#define N_REF (sizeof ref_files / sizeof *ref_files)
static char *ref_bytes[N_REF];
static size_t ref_len[N_REF];

static void opts_for(ecr_train_opts *o, const char *out, int64_t steps) {
    ecr_train_opts_default(o);
    o->data_path = data_path;
    o->out_dir = out;
    o->config = config;
    o->steps = steps;
    o->stop_after = 0;
    o->seq_len = 16;
    o->tokens_per_step = 32;
    o->warmup = 1;
    o->threads = 1;
    o->precision = ECR_PRECISION_FP32;
    o->quiet = 1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fz_init();
    char model_dir[512], corpus[512], ref[512], p[512];
    fz_folder("tiny", "config.json tokenizer.json model.safetensors", model_dir);
    ecr_model *m = NULL;
    if (ecr_model_load(model_dir, &m)) abort();
    config = *ecr_model_config(m);
    ecr_model_free(m);
    fz_file("corpus.jsonl", (const uint8_t *)corpus_text, strlen(corpus_text), corpus);
    if (ecr_prepare(corpus, fz_path("tiny/tokenizer.json", p), fz_path("data.safetensors", data_path), 1))
        abort();
    ecr_train_opts o;
    opts_for(&o, fz_path("ref", ref), 2);
    if (ecr_train(&o)) abort();
    if (mkdir(fz_path("run", p), 0777) != 0) abort();
    for (size_t i = 0; i < N_REF; i++) {
        snprintf(p, sizeof p, "%s/%s", ref, ref_files[i]);
        if (ecr_read_file(p, &ref_bytes[i], &ref_len[i])) abort();
    }
    const char *seed = getenv("FUZZ_STATE_SEED");
    if (seed && *seed) {
        char *s;
        size_t n;
        snprintf(p, sizeof p, "%s/train_state.safetensors", ref);
        if (ecr_read_file(p, &s, &n)) abort();
        FILE *fp = fopen(seed, "wb");
        if (!fp || fwrite(s, 1, n, fp) != n || fclose(fp) != 0) abort();
        free(s);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
    char run[512], p[512], name[64];
    fz_path("run", run); /* a resume writes no other file than these five */
    for (size_t i = 0; i < N_REF; i++) {
        snprintf(name, sizeof name, "run/%s", ref_files[i]);
        fz_file(name, (const uint8_t *)ref_bytes[i], ref_len[i], p);
    }
    fz_file("run/train_state.safetensors", data, n, p);
    ecr_train_opts o;
    opts_for(&o, run, 3);
    o.resume = 1;
    if (ecr_train(&o) == ECR_OK && ecr_train(&o) != ECR_OK) abort(); /* what loaded resumes again */
    return 0;
}
