/* test_prepare.c — corpus reading and prepared data: every text of lo10 validation
 * decodes back from the prepared file in order, with its language/label/group indices;
 * prepared data made in memory from the same texts (ecr_data_from_texts) holds the same
 * columns, and ecr_embed_texts gives ecr_embed's bytes on them; corrupted prepared files
 * are refused by ecr_data_open; plain-text input (ecr_corpus_read_stream, ECR_TEXT_LINES)
 * names the line of an empty line, invalid UTF-8 or a NUL byte. */
#include "test.h"

#include <string.h>
#include <unistd.h>

static const char *CORPUS = "build/data/lo10/valid.jsonl";
static char tok_path[64], data_path[64];

/* ecr_data_from_texts on the corpus's texts: the prepared file's columns, with and without
 * lengths; and the embeddings of a small random model through both, byte for byte. */
static void in_memory(const ecr_corpus *c, const ecr_tokenizer *tok, const ecr_data *d) {
    size_t *lens = malloc(c->n * sizeof *lens);
    for (size_t i = 0; i < c->n; i++) lens[i] = strlen(c->text[i]);
    for (int with_lens = 0; with_lens < 2; with_lens++) {
        ecr_data *m = NULL;
        CHECK_OK(ecr_data_from_texts(tok, (const char *const *)c->text, with_lens ? lens : NULL, c->n, &m));
        if (!m) continue;
        CHECK(m->file == NULL && m->tokenizer_json == NULL && m->n_langs == 0 && m->n_labels == 0);
        CHECK(m->n_texts == d->n_texts && m->n_tokens == d->n_tokens && m->vocab_size == d->vocab_size);
        CHECK(m->tok16 && !m->tok32 && !memcmp(m->tok16, d->tok16, d->n_tokens * sizeof *d->tok16));
        CHECK(!memcmp(m->offsets, d->offsets, (d->n_texts + 1) * sizeof *d->offsets));
        CHECK(!memcmp(m->n_bytes, d->n_bytes, d->n_texts * sizeof *d->n_bytes));
        int idx = 0;
        for (size_t i = 0; i < m->n_texts; i++) idx |= (m->group[i] != -1) | (m->lang[i] != -1) | (m->label[i] != -1);
        CHECK(idx == 0);
        ecr_data_free(m);
    }
    /* embeddings: a random 1-layer model with a projection, one thread */
    ecr_config cfg;
    CHECK_OK(ecr_config_preset("tiny", &cfg));
    const char *set[] = {"vocab_size=600", "dim=16", "n_layers=1", "n_heads=2", "hidden_dim=32",
                         "max_seq_len=64", "ecr_dim=8"};
    for (size_t i = 0; i < sizeof set / sizeof *set; i++) CHECK_OK(ecr_config_set(&cfg, set[i]));
    ecr_model *model = NULL;
    CHECK_OK(ecr_model_create(&cfg, 7, &model));
    ecr_embed_opts eo;
    ecr_embed_opts_default(&eo);
    eo.quiet = 1;
    eo.seq_len = 16; /* texts cut to 15 tokens: cheap under the sanitizers */
    ecr_set_threads(1);
    for (int raw = 0; model && raw < 2; raw++) {
        eo.raw = raw;
        float *a = NULL, *b = NULL;
        int64_t ca = 0, cb = 0;
        int pa = -1, pb = -1;
        CHECK_OK(ecr_embed(model, d, &eo, &a, &ca, &pa));
        CHECK_OK(ecr_embed_texts(model, tok, (const char *const *)c->text, lens, c->n, &eo, &b, &cb, &pb));
        CHECK(ca == (raw ? 16 : 8) && cb == ca && pa == !raw && pb == pa);
        CHECK_MSG(a && b && !memcmp(a, b, c->n * (size_t)ca * sizeof *a), "raw %d: ecr_embed_texts != ecr_embed", raw);
        free(a);
        free(b);
    }
    /* no texts: 0 rows; bad texts: named, the lowest index first */
    eo.raw = 0;
    float *e = NULL;
    int64_t cols = 0;
    CHECK_OK(ecr_embed_texts(model, tok, NULL, NULL, 0, &eo, &e, &cols, NULL));
    CHECK(e != NULL && cols == 8);
    free(e);
    const char *bad[4] = {"fine", "bad \xff byte", "", "also \xc3"};
    size_t bl[4] = {4, 10, 0, 9};
    ecr_data *x = NULL;
    const char *bad2[3] = {"fine", "", "x\xff"};
    CHECK_STATUS(ecr_data_from_texts(tok, bad2, NULL, 3, &x), ECR_E_INVALID);
    CHECK_MSG(x == NULL && strstr(ecr_last_error(), "text 2: empty"), "%s", ecr_last_error());
    CHECK_STATUS(ecr_data_from_texts(tok, bad, bl, 4, &x), ECR_E_INVALID);
    CHECK_MSG(strstr(ecr_last_error(), "text 2: invalid UTF-8 at byte 4"), "%s", ecr_last_error());
    bl[0] = 0;
    CHECK_STATUS(ecr_embed_texts(model, tok, bad, bl, 2, &eo, &e, &cols, NULL), ECR_E_INVALID);
    CHECK_MSG(e == NULL && strstr(ecr_last_error(), "text 1: empty"), "%s", ecr_last_error());
    ecr_set_threads(0);
    ecr_model_free(model);
    free(lens);
}

/* Plain text, one text per line: CRLF and a last line without newline; what is refused. */
static void test_lines(void) {
#define BYTES(s) s, sizeof s - 1
    static const struct { const char *in; size_t len; const char *want; } cases[] = {
        {BYTES("one\r\ntwo  \n  \nthree"), NULL},
        {BYTES("one\n\nthree\n"), "x.txt:2: empty line"},
        {BYTES("one\n\r\n"), "x.txt:2: empty line"},
        {BYTES("one\nt\xc3(o\n"), "x.txt:2: invalid UTF-8 at byte 2"},
        {BYTES("one\ntw\0o\n"), "x.txt:2: NUL byte at byte 3"},
        {BYTES(""), "x.txt: no texts"},
    };
#undef BYTES
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        FILE *fp = fmemopen((void *)cases[k].in, cases[k].len ? cases[k].len : 1, "rb");
        if (!cases[k].len && fp) fgetc(fp); /* fmemopen needs a size of 1: read it away */
        ecr_corpus *c = NULL;
        ecr_status st = fp ? ecr_corpus_read_stream(fp, "x.txt", ECR_TEXT_LINES, &c) : ECR_E_IO;
        if (fp) fclose(fp);
        if (!cases[k].want) {
            CHECK_OK(st);
            CHECK(c && c->n == 4 && !strcmp(c->text[0], "one") && !strcmp(c->text[1], "two  ") &&
                  !strcmp(c->text[2], "  ") && !strcmp(c->text[3], "three") && !c->lang[0] && !c->group[3]);
        } else {
            CHECK_STATUS(st, ECR_E_INVALID);
            CHECK_MSG(c == NULL && strstr(ecr_last_error(), cases[k].want), "case %zu: %s", k, ecr_last_error());
        }
        ecr_corpus_free(c);
    }
}

static void test_round_trip(void) {
    ecr_corpus *c = NULL;
    CHECK_OK(ecr_corpus_read(CORPUS, &c));
    if (!c) return;
    CHECK(c->n == 10000);
    /* A small tokenizer trained on the first 2,000 texts (fast under ASan). */
    ecr_tokenizer_train_opts o;
    ecr_tokenizer_train_opts_default(&o);
    o.vocab_size = 600;
    o.quiet = 1;
    ecr_tokenizer *tok = NULL;
    CHECK_OK(ecr_tokenizer_train((const char *const *)c->text, 2000, &o, &tok));
    CHECK_OK(ecr_tokenizer_save(tok, tok_path));
    CHECK_OK(ecr_prepare(CORPUS, tok_path, data_path, 1));
    ecr_data *d = NULL;
    CHECK_OK(ecr_data_open(data_path, &d));
    if (!d || !tok) goto done;
    CHECK(d->n_texts == c->n);
    CHECK(d->vocab_size == 600);
    CHECK(d->tok16 != NULL && d->tok32 == NULL);
    CHECK(d->n_langs == 10 && d->n_labels == 9 && d->n_groups == 1000);
    CHECK(d->tokenizer_json != NULL);
    int mismatched = 0, bad_meta = 0;
    int32_t *ids = malloc(4096 * sizeof *ids);
    char *buf = malloc(8192);
    for (size_t i = 0; i < d->n_texts; i++) {
        size_t n = (size_t)(d->offsets[i + 1] - d->offsets[i]), len = 0;
        for (size_t j = 0; j < n && j < 4096; j++) ids[j] = (int32_t)ecr_data_token(d, (size_t)d->offsets[i] + j);
        if (ecr_tokenizer_decode(tok, ids, n, buf, 8192, &len) != ECR_OK || strcmp(buf, c->text[i]) != 0)
            mismatched++;
        if (strcmp(d->langs[d->lang[i]], c->lang[i]) != 0 || strcmp(d->labels[d->label[i]], c->label[i]) != 0 ||
            d->n_bytes[i] != (int32_t)strlen(c->text[i]))
            bad_meta++;
        /* texts of one group share its index, and only they do (groups are contiguous runs of 10) */
        if (i % 10 != 0 && d->group[i] != d->group[i - 1]) bad_meta++;
        if (i % 10 == 0 && i > 0 && d->group[i] == d->group[i - 1]) bad_meta++;
    }
    CHECK_MSG(mismatched == 0, "%d texts do not decode back", mismatched);
    CHECK_MSG(bad_meta == 0, "%d texts with wrong lang/label/group/n_bytes", bad_meta);
    free(ids);
    free(buf);
    in_memory(c, tok, d);
done:
    ecr_data_free(d);
    ecr_tokenizer_free(tok);
    ecr_corpus_free(c);
}

/* A prepared file whose token ids exceed the vocabulary, or whose offsets do not span the
 * tokens, is refused with a message naming the file and tensor. */
static void test_corrupt(void) {
    const char *bad = "build/tests/prepare_bad.safetensors";
    uint16_t toks[4] = {1, 2, 700, 3};
    int64_t offs[3] = {0, 2, 4};
    int32_t nb[2] = {3, 3}, idx[2] = {0, 0};
    for (int variant = 0; variant < 3; variant++) {
        ecr_st_writer *w = NULL;
        CHECK_OK(ecr_st_writer_create(&w));
        if (!w) return;
        int64_t s4[1] = {4}, s3[1] = {3}, s2[1] = {2};
        if (variant == 1) { toks[2] = 5; offs[2] = 3; }
        if (variant == 2) { offs[2] = 4; idx[1] = 9; }
        ecr_st_writer_add(w, "tokens", ECR_U16, 1, s4, toks);
        ecr_st_writer_add(w, "offsets", ECR_I64, 1, s3, offs);
        ecr_st_writer_add(w, "n_bytes", ECR_I32, 1, s2, nb);
        ecr_st_writer_add(w, "group", ECR_I32, 1, s2, idx);
        ecr_st_writer_add(w, "lang", ECR_I32, 1, s2, idx);
        ecr_st_writer_add(w, "label", ECR_I32, 1, s2, idx);
        ecr_st_writer_meta(w, "format", "ecr-data-1");
        ecr_st_writer_meta(w, "vocab_size", "600");
        ecr_st_writer_meta(w, "n_texts", "2");
        ecr_st_writer_meta(w, "groups_count", "1");
        ecr_st_writer_meta(w, "langs", "[\"en\"]");
        ecr_st_writer_meta(w, "labels", "[\"calc\"]");
        CHECK_OK(ecr_st_writer_write(w, bad));
        ecr_st_writer_free(w);
        ecr_data *d = NULL;
        CHECK_STATUS(ecr_data_open(bad, &d), ECR_E_INVALID);
        CHECK(d == NULL);
        const char *want = variant == 0 ? "'tokens'[2] = 700" : variant == 1 ? "'offsets'" : "'group'[1] = 9";
        CHECK_MSG(strstr(ecr_last_error(), want) && strstr(ecr_last_error(), bad), "%s", ecr_last_error());
    }
    unlink(bad);
}

int main(void) {
    snprintf(tok_path, sizeof tok_path, "build/tests/prepare_tok_%d.json", (int)getpid());
    snprintf(data_path, sizeof data_path, "build/tests/prepare_data_%d.safetensors", (int)getpid());
    RUN(test_round_trip);
    RUN(test_corrupt);
    RUN(test_lines);
    unlink(tok_path);
    unlink(data_path);
    return test_finish("test_prepare");
}
