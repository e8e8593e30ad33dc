/* tokenizer_internal.h — internals of the byte-level BPE tokenizer shared by
 * src/data/tokenizer.c (pre-tokenizer, encode, decode), src/data/tokenizer_json.c (tokenizer.json)
 * and src/data/tokenizer_train.c (training), and visible to tests/test_tokenizer.c.
 * Declarations only. Not part of the public API. */
#ifndef ECR_TOKENIZER_INTERNAL_H
#define ECR_TOKENIZER_INTERNAL_H

#include "ecr.h"

/* The Hugging Face `tokenizers` Split regex that our C pre-tokenizer implements exactly
 * (Oniguruma / JS-with-'u' semantics; \p{White_Space} is used instead of \s because \s
 * differs between engines):
 *   a single ASCII space may open a run of letters+marks, of numbers, or of other
 *   characters; a whitespace run followed by a non-space keeps its last whitespace
 *   character for the next piece (GPT-2's  \s+(?!\S)|\s+ ). */
#define ECR_TOK_SPLIT_REGEX                                                                \
    " ?[\\p{L}\\p{M}]+| ?\\p{N}+| ?[^\\p{L}\\p{M}\\p{N}\\p{White_Space}]+"                 \
    "|\\p{White_Space}+(?!\\P{White_Space})|\\p{White_Space}+"

#define ECR_TOK_EOT "<|endoftext|>"
#define ECR_TOK_PAD "<|pad|>"

/* Character classes of the pre-tokenizer. */
enum { ECR_TOK_LETTER = 0, ECR_TOK_NUMBER = 1, ECR_TOK_OTHER = 2, ECR_TOK_SPACE = 3 };

struct ecr_tokenizer {
    int n_vocab;
    char **str;               /* [n_vocab] token strings, byte-to-unicode form (owned)        */
    unsigned char *bytes;     /* raw bytes of all tokens back to back (owned)                 */
    uint32_t *off;            /* [n_vocab + 1] token id i is bytes[off[i] .. off[i+1])        */
    unsigned char *special;   /* [n_vocab] 1 for added special tokens (decode to nothing)     */
    int eot_id, pad_id;
    int32_t byte_id[256];     /* token id of each single byte                                 */
    int n_merges;
    int32_t *merge;           /* [n_merges * 3]: left id, right id, result id; rank = index   */
    uint64_t *mkey;           /* merge hash: key (left << 32 | right), UINT64_MAX = empty     */
    int32_t *mrank;           /* rank of the key in the same slot                             */
    uint64_t mmask;           /* slots - 1 (power of two)                                     */
};

/* GPT-2 byte-to-unicode mapping: the code point that stands for byte b. */
uint32_t ecr_tok_byte_to_cp(unsigned char b);
/* Inverse: the byte for code point cp, or -1 if cp stands for no byte. */
int ecr_tok_cp_to_byte(uint32_t cp);

/* Byte offset of the first ill-formed UTF-8 sequence in s[0..n) (overlong forms,
 * surrogates, code points above U+10FFFF, truncated sequences, stray continuation
 * bytes), or n when all of s is valid. */
size_t ecr_tok_utf8_check(const char *s, size_t n);

/* Pre-tokenizer class (ECR_TOK_LETTER/NUMBER/OTHER/SPACE) of code point cp. */
int ecr_tok_class(uint32_t cp);

/* Length in bytes of the pre-token that starts at `pos` (< n) of the VALID UTF-8 text
 * s[0..n): the match of ECR_TOK_SPLIT_REGEX at pos. Always >= 1. */
size_t ecr_tok_pretoken(const char *s, size_t n, size_t pos);

/* BPE on one pre-token of n >= 1 bytes: writes the token ids to out[] (room for n) and
 * returns their count. Merges apply lowest rank first, leftmost first among equals
 * (as Hugging Face tokenizers do). `force_heap` selects the O(n log n) path even for short
 * words (tests compare both paths). */
size_t ecr_tok_bpe_word(const ecr_tokenizer *tok, const unsigned char *w, size_t n,
                        int32_t *out, int force_heap);

/* Rank of the merge (left, right), or -1 if there is none. */
int32_t ecr_tok_merge_rank(const ecr_tokenizer *tok, int32_t left, int32_t right);

/* Builds a tokenizer from token strings (byte-to-unicode form; `strs` and every string
 * in it become owned by the tokenizer, also on failure), the ids of the special tokens
 * (all others must be valid byte-level strings), and merges given as (left, right) id
 * pairs in rank order; the result of each merge must be in the vocabulary. `label`
 * names the source in error messages (file path or "train"). */
ecr_status ecr_tok_build(char **strs, int n_vocab, const int *special_ids, int n_special,
                         const int32_t *pairs, int n_merges, const char *label,
                         ecr_tokenizer **out);

/* UTF-8 encoding of code point cp into out (>= 4 bytes); returns the byte count. */
int ecr_tok_put_utf8(uint32_t cp, char *out);

#endif
