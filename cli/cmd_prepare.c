/* cmd_prepare.c — `ecr prepare`: JSONL corpus + tokenizer -> data.safetensors. */
#include "cli.h"

static const char *usage =
    "usage: ecr prepare --data CORPUS.jsonl --tokenizer tokenizer.json --out data.safetensors\n"
    "                   [--threads N] [--quiet]\n"
    "\n"
    "Encodes every text of a JSONL corpus (one object per line: \"text\" required; \"id\",\n"
    "\"group\", \"lang\", \"label\" optional strings) and writes the token ids, per-text offsets,\n"
    "byte counts and group/language/label indices, with the tokenizer embedded, as safetensors.\n"
    "Text order is preserved. A bad line is exit 2 with file:line: reason; nothing is written.\n"
    "\n"
    "  --data FILE        JSONL corpus\n"
    "  --tokenizer FILE   tokenizer.json (from `ecr tokenizer train`)\n"
    "  --out FILE         output .safetensors (written atomically)\n"
    "  --threads N        encoding threads (default: all cores)\n"
    "  --quiet            no progress on stderr\n";

int cmd_prepare(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr prepare", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    const char *data = cli_require(&a, "--data");
    const char *tok = cli_require(&a, "--tokenizer");
    const char *out = cli_require(&a, "--out");
    int threads = (int)cli_int(&a, "--threads", 0, 0, 1024);
    int quiet = cli_flag(&a, "--quiet");
    int ok = cli_finish(&a);
    if (ok && a.npos > 0) {
        fprintf(stderr, "ecr prepare: unexpected argument '%s'\n", a.pos[0]);
        ok = 0;
    }
    cli_args_free(&a);
    if (!ok) return 2;
    ecr_set_threads(threads);
    ecr_status st = ecr_prepare(data, tok, out, quiet);
    return st ? cli_fail(st) : 0;
}
