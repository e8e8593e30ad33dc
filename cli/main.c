/* main.c — the `ecr` binary: dispatches to one subcommand. */
#include "cli.h"

#include <string.h>

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    int parallel;             /* 1: runs across the processes of an mpirun job (comm.c) */
} command;

/* Commands that are built. Each cmd_*.c file implements one. */
static const command commands[] = {
    /* one line per command, in pipeline order */
    {"tokenizer", cmd_tokenizer, "train a byte-level BPE tokenizer; encode/decode text lines", 0},
    {"prepare", cmd_prepare, "JSONL corpus + tokenizer -> data.safetensors", 0},
    {"train", cmd_train, "train a model on prepared data; checkpoints, exact resume", 1},
    {"embed", cmd_embed, "text embeddings of prepared data -> .npy (ECR projection or --raw h)", 1},
    {"anchors", cmd_anchors, "spherical k-means over embeddings -> anchors.safetensors", 0},
    {"eval", cmd_eval, "LM, embedding-geometry and training-stability metrics -> table, JSON", 1},
    {"report", cmd_report, "tables and SVG plots comparing runs (logs, eval.json) -> REPORT_DIR", 0},
    {"generate", cmd_generate, "sample text with a KV cache", 0},
    {"convert", cmd_convert, "rewrite a model folder as bf16, f16 or f32", 0},
    {"export", cmd_export, "write a model as one GGUF file for llama.cpp", 0},
    {"inspect", cmd_inspect, "what a safetensors, .npy or tokenizer.json file holds", 0},
    {NULL, NULL, NULL, 0},
};

static void usage(FILE *fp) {
    fprintf(fp, "ecr %s — compact language models with Embedding Consistency Regulation\n\n"
                "usage: ecr <command> [flags]   (ecr <command> --help for its flags)\n\ncommands:\n",
            ECR_VERSION);
    for (size_t i = 0; commands[i].name; i++)
        fprintf(fp, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(fp, "\nexit status: 0 success, 1 runtime failure, 2 bad usage or bad input\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--version")) {
            ecr_precision p = ECR_PRECISION_FP32;
            ecr_precision_resolve(ECR_PRECISION_AUTO, &p);
            printf("ecr %s\nbf16: %s\n--precision auto: %s\nmpi: %s\n", ECR_VERSION, ecr_bf16_engine(),
                   ecr_precision_name(p), cli_comm_library());
            return 0;
        }
    }
    for (size_t i = 0; commands[i].name; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (cli_comm_start(&argc, &argv)) return 1;
            int rc = cli_comm_check(commands[i].name, commands[i].parallel);
            if (rc) return cli_comm_end(0), rc; /* every rank refuses alike: no abort */
            if (cli_comm_rank() > 0 && !freopen("/dev/null", "w", stdout)) /* rank 0 prints the tables */
                return cli_comm_end(1);
            return cli_comm_end(commands[i].run(argc - 1, argv + 1));
        }
    fprintf(stderr, "ecr: unknown command '%s' (ecr --help lists them)\n", argv[1]);
    return 2;
}
