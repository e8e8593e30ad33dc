/* cmd_export.c — `ecr export`: a model folder as one GGUF file for llama.cpp (the writer is
 * the library's: ecr_model_export_gguf). */
#include "cli.h"

#include <string.h>

static const char *usage =
    "usage: ecr export --model MODEL_DIR --out FILE.gguf [--type f32|f16|bf16|q8_0] [flags]\n"
    "\n"
    "Writes the model as one GGUF file (version 3) that llama.cpp and the tools built on it\n"
    "(llama-cli, llama-server, llama-embedding, node-llama-cpp, ...) load as architecture\n"
    "\"llama\": the hyperparameters, the weights under llama.cpp's names (the rows of q and k\n"
    "permuted for its rotary layout) and the tokenizer (byte-level BPE; the end-of-text token\n"
    "opens every text as its BOS, as in ecr). A model trained with ECR also gets\n"
    "FILE.ecr_proj.npy beside it (FILE without its .gguf): the projection P [D, d] that turns\n"
    "the pooled hidden state h into u = P h / |P h| (README, \"Use the model elsewhere\").\n"
    "\n"
    "  --model DIR     model folder (config.json, model.safetensors, tokenizer.json)\n"
    "  --out FILE      the GGUF file to write; it appears whole or not at all\n"
    "  --type T        f32 (default), f16, bf16 or q8_0: the matrices (the norms stay f32);\n"
    "                  q8_0 (blocks of 32 values with an f16 scale) writes a matrix whose\n"
    "                  rows are not a multiple of 32 values as f16, and says so\n"
    "  --name TEXT     general.name (default: the model folder's name)\n"
    "  --pre NAME      tokenizer.ggml.pre, llama.cpp's pre-tokenizer (default gpt-2, the\n"
    "                  closest to ecr's; unlike ecr's it keeps 's 't 're 've 'm 'll 'd together\n"
    "                  and splits combining marks off their letters; DESIGN.md)\n"
    "  --quiet         nothing on stderr but errors\n";

int cmd_export(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr export", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    ecr_gguf_export_opts o;
    ecr_gguf_export_opts_default(&o);
    const char *model = cli_require(&a, "--model");
    const char *out = cli_require(&a, "--out");
    const char *type = cli_str(&a, "--type", "f32");
    o.name = cli_str(&a, "--name", NULL);
    o.pre = cli_str(&a, "--pre", NULL);
    o.quiet = cli_flag(&a, "--quiet");
    int ok = cli_finish(&a);
    cli_args_free(&a);
    if (!ok) return 2;
    if (a.npos > 0) {
        fprintf(stderr, "ecr export: unexpected argument '%s' (see --help)\n", a.pos[0]);
        return 2;
    }
    static const struct { const char *name; ecr_gguf_type type; } types[] = {
        {"f32", ECR_GGUF_F32}, {"f16", ECR_GGUF_F16}, {"bf16", ECR_GGUF_BF16}, {"q8_0", ECR_GGUF_Q8_0},
    };
    size_t k = 0;
    while (k < sizeof types / sizeof types[0] && strcmp(type, types[k].name)) k++;
    if (k == sizeof types / sizeof types[0]) {
        fprintf(stderr, "ecr export: --type: expected f32, f16, bf16 or q8_0, got '%s'\n", type);
        return 2;
    }
    o.type = types[k].type;
    ecr_gguf_export_info info;
    ecr_status st = ecr_model_export_gguf(model, out, &o, &info);
    if (st) return cli_fail(st);
    if (!o.quiet) {
        fprintf(stderr, "export: %d tensors, %zu parameters (%s", info.n_tensors, info.n_values,
                ecr_gguf_type_name(o.type));
        if (info.n_fallback) fprintf(stderr, "; %d as F16", info.n_fallback);
        fprintf(stderr, ") -> %s\n", out);
        if (info.projection) {
            char proj[4096];
            if (!ecr_gguf_projection_path(out, proj, sizeof proj))
                fprintf(stderr, "export: the ECR projection -> %s (u = P h / |P h|; README)\n", proj);
        }
    }
    return 0;
}
