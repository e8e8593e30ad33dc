/* test_prepare.c — corpus reading and prepared data: every text of lo10 validation
 * decodes back from the prepared file in order, with its language/label/group indices;
 * corrupted prepared files are refused by ecr_data_open. */
#include "test.h"

#include <string.h>
#include <unistd.h>

static const char *CORPUS = "build/data/lo10/valid.jsonl";
static char tok_path[64], data_path[64];

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
    unlink(tok_path);
    unlink(data_path);
    return test_finish("test_prepare");
}
