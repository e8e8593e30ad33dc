/* cmd_tokenizer.c — `ecr tokenizer train | encode | decode`. */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const usage_top =
    "usage: ecr tokenizer <train|encode|decode> [flags]   (ecr tokenizer <sub> --help)\n\n"
    "  train    learn a byte-level BPE vocabulary from a JSONL corpus, write tokenizer.json\n"
    "  encode   text lines on stdin -> one line of space-separated token ids per line\n"
    "  decode   lines of token ids on stdin -> text lines\n";

static const char *const usage_train =
    "usage: ecr tokenizer train --data CORPUS.jsonl --out tokenizer.json [flags]\n\n"
    "Learns a byte-level BPE tokenizer (GPT-2 byte alphabet; pre-tokenisation into runs of\n"
    "letters, numbers, other characters and whitespace by Unicode category) from the \"text\"\n"
    "field of every line of CORPUS.jsonl and writes it in the Hugging Face tokenizers layout.\n"
    "Ids: 0 <|endoftext|>, 1 <|pad|>, 2..257 the bytes 0x00..0xFF, then merges.\n\n"
    "  --data FILE          JSONL corpus (required)\n"
    "  --out FILE           tokenizer.json to write, atomically (required)\n"
    "  --vocab-size N       total tokens incl. specials and bytes (default 8192, >= 258)\n"
    "  --min-frequency N    do not merge pairs seen fewer times (default 2)\n"
    "  --threads N          threads for pre-tokenisation (default 0 = all cores)\n"
    "  --quiet              no progress on stderr\n";

static const char *const usage_encode =
    "usage: ecr tokenizer encode --tokenizer tokenizer.json < lines.txt > ids.txt\n\n"
    "Encodes each line of stdin (without its \"\\n\"; no special tokens added) and prints its\n"
    "token ids separated by spaces, one output line per input line. Invalid UTF-8 stops with\n"
    "\"stdin:LINE: invalid UTF-8 at byte N\" and exit status 2.\n\n"
    "  --tokenizer FILE     tokenizer.json (required)\n"
    "  --quiet              accepted for symmetry; encode prints no progress\n";

static const char *const usage_decode =
    "usage: ecr tokenizer decode --tokenizer tokenizer.json < ids.txt > lines.txt\n\n"
    "Decodes each line of space-separated token ids on stdin and prints the text followed by\n"
    "\"\\n\". Special tokens decode to nothing. A bad id stops with \"stdin:LINE: ...\" and exit\n"
    "status 2.\n\n"
    "  --tokenizer FILE     tokenizer.json (required)\n"
    "  --quiet              accepted for symmetry; decode prints no progress\n";

/* Common ending of each subcommand's argument parsing: 0 = go on, else exit code. */
static int finish_args(cli_args *a) {
    if (a->help) return -1;
    if (!cli_finish(a)) return 2;
    if (a->npos) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", a->cmd, a->pos[0]);
        return 2;
    }
    return 0;
}

static int run_train(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr tokenizer train", argc, argv, usage_train);
    ecr_tokenizer_train_opts o;
    ecr_tokenizer_train_opts_default(&o);
    const char *data = NULL, *out = NULL;
    if (!a.help) {
        data = cli_require(&a, "--data");
        out = cli_require(&a, "--out");
        o.vocab_size = (int)cli_int(&a, "--vocab-size", 8192, 258, 1 << 22);
        o.min_frequency = (int)cli_int(&a, "--min-frequency", 2, 1, 1 << 30);
        o.threads = (int)cli_int(&a, "--threads", 0, 0, 4096);
        o.quiet = cli_flag(&a, "--quiet");
    }
    int rc = finish_args(&a);
    cli_args_free(&a);
    if (rc) return rc < 0 ? 0 : rc;
    ecr_corpus *c = NULL;
    ecr_tokenizer *tok = NULL;
    ecr_status st = ecr_corpus_read(data, &c);
    if (!st && c->n == 0) st = ecr_fail(ECR_E_INVALID, "%s: no texts", data);
    if (!st) st = ecr_tokenizer_train((const char *const *)c->text, c->n, &o, &tok);
    if (!st) st = ecr_tokenizer_save(tok, out);
    if (!st && !o.quiet)
        fprintf(stderr, "tokenizer: wrote %s (%d tokens)\n", out, ecr_tokenizer_vocab_size(tok));
    ecr_tokenizer_free(tok);
    ecr_corpus_free(c);
    return st ? cli_fail(st) : 0;
}

/* Appends the decimal form of v to *p. */
static char *put_int(char *p, int32_t v) {
    char tmp[12];
    int n = 0;
    uint32_t u = v < 0 ? (uint32_t)0 - (uint32_t)v : (uint32_t)v;
    do { tmp[n++] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) *p++ = '-';
    while (n) *p++ = tmp[--n];
    return p;
}

/* Loads the tokenizer for encode/decode. */
static ecr_status load_for(cli_args *a, ecr_tokenizer **tok, int *rc) {
    const char *path = NULL;
    if (!a->help) {
        path = cli_require(a, "--tokenizer");
        cli_flag(a, "--quiet");
    }
    *rc = finish_args(a);
    if (*rc) return ECR_OK;
    return ecr_tokenizer_load(path, tok);
}

static int run_encode(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr tokenizer encode", argc, argv, usage_encode);
    ecr_tokenizer *tok = NULL;
    int rc = 0;
    ecr_status st = load_for(&a, &tok, &rc);
    cli_args_free(&a);
    if (rc) return rc < 0 ? 0 : rc;
    if (st) return cli_fail(st);
    char *line = NULL, *out = NULL;
    size_t cap = 0, ocap = 0, lineno = 0;
    int32_t *ids = NULL;
    ssize_t n;
    while (!st && (n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n') len--;
        if (ocap < len + 1) {
            ocap = 2 * (len + 1);
            free(ids);
            free(out);
            ids = malloc(ocap * sizeof *ids);
            out = malloc(ocap * 12 + 2);
            if (!ids || !out) { st = ecr_fail(ECR_E_NOMEM, "stdin:%zu: out of memory", lineno); break; }
        }
        size_t k = 0;
        st = ecr_tokenizer_encode(tok, line, len, ids, len + 1, &k);
        if (st) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", ecr_last_error());
            st = ecr_fail(st, "stdin:%zu: %s", lineno, msg);
            break;
        }
        char *p = out;
        for (size_t i = 0; i < k; i++) {
            if (i) *p++ = ' ';
            p = put_int(p, ids[i]);
        }
        *p++ = '\n';
        if (fwrite(out, 1, (size_t)(p - out), stdout) != (size_t)(p - out))
            st = ecr_fail(ECR_E_IO, "stdout: write failed: %s", strerror(errno));
    }
    if (!st && ferror(stdin)) st = ecr_fail(ECR_E_IO, "stdin: read error");
    if (!st && fflush(stdout)) st = ecr_fail(ECR_E_IO, "stdout: write failed: %s", strerror(errno));
    free(line);
    free(ids);
    free(out);
    ecr_tokenizer_free(tok);
    return st ? cli_fail(st) : 0;
}

/* Parses the ids of one line into *ids (grown as needed). */
static ecr_status parse_ids(char *line, size_t lineno, int vocab, int32_t **ids, size_t *cap,
                            size_t *n) {
    *n = 0;
    char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (!*p) return ECR_OK;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || (*end && *end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')) {
            char *e = p;
            while (*e && *e != ' ' && *e != '\t' && *e != '\r' && *e != '\n') e++;
            *e = '\0';
            return ecr_fail(ECR_E_INVALID, "stdin:%zu: '%.40s' is not a token id", lineno, p);
        }
        if (v < 0 || v >= vocab)
            return ecr_fail(ECR_E_INVALID, "stdin:%zu: token id %ld is out of range [0, %d)",
                            lineno, v, vocab);
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 256;
            int32_t *ni = realloc(*ids, nc * sizeof *ni);
            if (!ni) return ecr_fail(ECR_E_NOMEM, "stdin:%zu: out of memory", lineno);
            *ids = ni;
            *cap = nc;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
}

static int run_decode(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr tokenizer decode", argc, argv, usage_decode);
    ecr_tokenizer *tok = NULL;
    int rc = 0;
    ecr_status st = load_for(&a, &tok, &rc);
    cli_args_free(&a);
    if (rc) return rc < 0 ? 0 : rc;
    if (st) return cli_fail(st);
    char *line = NULL, *text = NULL;
    size_t cap = 0, icap = 0, tcap = 0, lineno = 0;
    int32_t *ids = NULL;
    int vocab = ecr_tokenizer_vocab_size(tok);
    while (!st && getline(&line, &cap, stdin) >= 0) {
        lineno++;
        size_t n = 0, len = 0;
        st = parse_ids(line, lineno, vocab, &ids, &icap, &n);
        if (!st) st = ecr_tokenizer_decode(tok, ids, n, text, tcap, &len);
        if (!st && len + 1 > tcap) {
            tcap = 2 * (len + 1);
            free(text);
            text = malloc(tcap);
            if (!text) { st = ecr_fail(ECR_E_NOMEM, "stdin:%zu: out of memory", lineno); break; }
            st = ecr_tokenizer_decode(tok, ids, n, text, tcap, &len);
        }
        if (st) break;
        text[len] = '\n';
        if (fwrite(text, 1, len + 1, stdout) != len + 1)
            st = ecr_fail(ECR_E_IO, "stdout: write failed: %s", strerror(errno));
    }
    if (!st && ferror(stdin)) st = ecr_fail(ECR_E_IO, "stdin: read error");
    if (!st && fflush(stdout)) st = ecr_fail(ECR_E_IO, "stdout: write failed: %s", strerror(errno));
    free(line);
    free(ids);
    free(text);
    ecr_tokenizer_free(tok);
    return st ? cli_fail(st) : 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_top, stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        fputs(usage_top, stdout);
        return 0;
    }
    if (!strcmp(sub, "train")) return run_train(argc - 1, argv + 1);
    if (!strcmp(sub, "encode")) return run_encode(argc - 1, argv + 1);
    if (!strcmp(sub, "decode")) return run_decode(argc - 1, argv + 1);
    fprintf(stderr, "ecr tokenizer: unknown subcommand '%s' (train, encode or decode)\n", sub);
    return 2;
}
