/*
 * ecr.h — the one public header of libecr.
 *
 * libecr trains compact Llama-style language models on the CPU and keeps their
 * embedding space from collapsing with Embedding Consistency Regulation (ECR).
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 *   - Functions return an ecr_status: ECR_OK (0) on success, a negative code on failure.
 *     On failure a one-line, human-readable message naming the file and place at fault is
 *     available from ecr_last_error() (thread-local; overwritten by the next failure).
 *   - Library code never calls exit() and never prints to stdout; progress, when asked
 *     for, goes to stderr.
 *   - Every *_free(NULL) is a no-op.
 *   - Ownership: an object returned through an `**out` parameter belongs to the caller,
 *     who releases it with the matching *_free. Pointers returned by accessors borrow
 *     from their object and stay valid until that object is freed or modified.
 *   - Files are written atomically: to a temporary name in the same directory, then
 *     renamed; on failure nothing is left behind.
 */
#ifndef ECR_H
#define ECR_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ECR_VERSION "0.1.0"

/* ------------------------------------------------------------------------------------
 * Status codes and errors
 * ---------------------------------------------------------------------------------- */

typedef enum ecr_status {
    ECR_OK = 0,
    ECR_E_INVALID = -1,  /* bad input: malformed file, wrong shape, bad argument (CLI exit 2) */
    ECR_E_IO = -2,       /* open/read/write/rename failed (CLI exit 1)                      */
    ECR_E_NOMEM = -3,    /* allocation failed (CLI exit 1)                                  */
    ECR_E_RUNTIME = -4,  /* runtime failure, e.g. a NaN loss (CLI exit 1)                    */
} ecr_status;

/* The message of the most recent failure on this thread ("" if none). Borrowed. */
const char *ecr_last_error(void);

/* A short name for a status ("ok", "invalid input", ...). Static string. */
const char *ecr_status_name(ecr_status st);

/* Records a failure message (printf-style) for ecr_last_error() and returns `st`, so
 * library code can write `return ecr_fail(ECR_E_INVALID, "%s: bad header", path);`. An
 * argument may be ecr_last_error() itself, to prefix the previous message. */
ecr_status ecr_fail(ecr_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* CLI exit code for a status: 0 for ECR_OK, 2 for ECR_E_INVALID, 1 otherwise. */
int ecr_exit_code(ecr_status st);

/* ------------------------------------------------------------------------------------
 * safetensors (https://huggingface.co/docs/safetensors): the one binary format.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON header, packed data.
 * The reader mmaps the file and validates everything before exposing any tensor:
 * header length within the file and at most 100 MB, JSON well-formed, each entry has a
 * known dtype, a shape of non-negative ints and data_offsets [begin, end] with
 * end - begin == numel * dtype size, offsets inside the data region, tensors sorted by
 * offset cover the data region with no overlap and no gap, no duplicate names,
 * "__metadata__" (optional) maps strings to strings. Also refused: non-UTF-8 headers,
 * numbers written as non-integers ("2.0"), fields other than dtype/shape/data_offsets,
 * more than ECR_MAX_DIMS dims. Failures are ECR_E_INVALID, "<file>: <place>: <reason>".
 * ---------------------------------------------------------------------------------- */

typedef enum ecr_dtype {
    ECR_F32, ECR_F16, ECR_BF16, ECR_I64, ECR_I32, ECR_U16, ECR_U8, ECR_U32,
    ECR_DTYPE_COUNT
} ecr_dtype;

/* "F32", "F16", ... Static string. */
const char *ecr_dtype_name(ecr_dtype dt);
/* Bytes per element. */
size_t ecr_dtype_size(ecr_dtype dt);

#define ECR_MAX_DIMS 8

typedef struct ecr_tensor_view {
    const char *name;          /* borrowed from the file object              */
    ecr_dtype dtype;
    int ndim;
    int64_t shape[ECR_MAX_DIMS];
    size_t numel;
    size_t nbytes;
    const void *data;          /* borrowed; aligned to the dtype size: points into the
                                  mapping, or to an owned aligned copy made at open time
                                  when the file places the tensor unaligned; never NULL
                                  (an empty tensor points to a dummy)                   */
} ecr_tensor_view;

typedef struct ecr_st_file ecr_st_file;

/* Opens (mmap) and validates `path`. On success *out owns the mapping; on failure *out
 * is NULL: ECR_E_IO if the file cannot be opened/mapped (missing, a directory),
 * ECR_E_INVALID if it is malformed (the message names the file and tensor/field). */
ecr_status ecr_st_open(const char *path, ecr_st_file **out);
/* Validates an in-memory image (used by the fuzz test); `buf` must outlive *out.
 * `label` (copied; NULL = "<memory>") names the image in messages. */
ecr_status ecr_st_open_memory(const void *buf, size_t len, const char *label, ecr_st_file **out);
void ecr_st_close(ecr_st_file *f);

size_t ecr_st_count(const ecr_st_file *f);                       /* number of tensors   */
/* i-th tensor in header order (files from ecr_st_writer: the order added); NULL if i is
 * out of range. */
const ecr_tensor_view *ecr_st_at(const ecr_st_file *f, size_t i);
const ecr_tensor_view *ecr_st_find(const ecr_st_file *f, const char *name); /* or NULL  */
/* Metadata value for `key`, or NULL. Borrowed. */
const char *ecr_st_meta(const ecr_st_file *f, const char *key);
size_t ecr_st_meta_count(const ecr_st_file *f);
/* i-th metadata pair (sorted by key). */
void ecr_st_meta_at(const ecr_st_file *f, size_t i, const char **key, const char **value);

/* Looks up `name` and checks its dtype and shape (ndim entries; -1 matches any size).
 * ECR_E_INVALID (and *out = NULL) when missing or different, e.g.
 * "f.safetensors: tensor 'w': shape [2, 3] (expected [3, *])". */
ecr_status ecr_st_get(const ecr_st_file *f, const char *name, ecr_dtype dtype, int ndim,
                      const int64_t *shape, const ecr_tensor_view **out);

/* Writer: collect tensors (data borrowed, see below) and metadata, then write. */
typedef struct ecr_st_writer ecr_st_writer;
ecr_status ecr_st_writer_create(ecr_st_writer **out);
void ecr_st_writer_free(ecr_st_writer *w);
/* Adds a tensor (name copied; must be non-empty UTF-8, not "__metadata__", not already
 * added). `data` (numel * dtype size bytes; may be NULL when that is 0) is borrowed: it
 * must stay valid until ecr_st_writer_write. ECR_E_INVALID on a bad name/dtype/shape. */
ecr_status ecr_st_writer_add(ecr_st_writer *w, const char *name, ecr_dtype dtype, int ndim,
                             const int64_t *shape, const void *data);
/* Sets a "__metadata__" pair (both copied, UTF-8; a repeated key replaces the value). */
ecr_status ecr_st_writer_meta(ecr_st_writer *w, const char *key, const char *value);
/* Writes atomically to `path` (temp file + fsync + rename). Header: "__metadata__" first,
 * then the tensors in the order added, space-padded so the data region starts at a
 * multiple of 8. Data region: tensors grouped by element size, 8-byte dtypes first (order
 * added within a group), gapless, so every tensor is aligned in the file. May be called
 * again (e.g. to another path). */
ecr_status ecr_st_writer_write(ecr_st_writer *w, const char *path);

/* fp16 / bf16 conversions. Narrowing rounds to nearest, ties to even; overflow gives
 * +-inf, tiny values +-0 (through fp16 subnormals), NaN stays a quiet NaN. Widening is
 * exact. */
uint16_t ecr_f32_to_f16(float x);
float ecr_f16_to_f32(uint16_t h);
uint16_t ecr_f32_to_bf16(float x);
float ecr_bf16_to_f32(uint16_t h);

/* ------------------------------------------------------------------------------------
 * .npy: float32 (<f4), C-order, 1-D or 2-D. Anything else is refused with a message
 * saying what the file holds.
 * ---------------------------------------------------------------------------------- */

/* Reads `path` (format version 1.0 or 2.0); *data (malloc'd, caller frees with free();
 * non-NULL even when empty) holds rows*cols floats. A 1-D array reads as rows = n,
 * cols = 1. ECR_E_INVALID (*data = NULL) for another dtype, fortran order, 0-D or 3-D+,
 * a data length that does not match the shape, or a malformed header, e.g.
 * "emb.npy: dtype '<f8' (expected '<f4')"; ECR_E_IO if it cannot be opened. */
ecr_status ecr_npy_read(const char *path, float **data, int64_t *rows, int64_t *cols);
/* Reads only the header facts for `ecr inspect`: dtype string (e.g. "<f4", truncated to
 * descr_len), fortran order, ndim and shape; any dtype/order/ndim (<= ECR_MAX_DIMS) is
 * accepted. The data length is checked when the itemsize follows from the dtype
 * ("<f8", "|u1", ...). Any output pointer may be NULL. */
ecr_status ecr_npy_info(const char *path, char *descr, size_t descr_len, int *fortran,
                        int *ndim, int64_t shape[ECR_MAX_DIMS]);
/* Writes a rows x cols <f4 C-order matrix atomically (always 2-D; version 1.0 header
 * padded to 64 bytes as NumPy does). */
ecr_status ecr_npy_write(const char *path, const float *data, int64_t rows, int64_t cols);

/* ------------------------------------------------------------------------------------
 * Atomic file output helpers (used by every writer).
 * ---------------------------------------------------------------------------------- */

typedef struct ecr_atomic_file {
    FILE *fp;                 /* write here                                   */
    char *final_path;
    char *tmp_path;
} ecr_atomic_file;

/* Opens a temporary file beside `path`. */
ecr_status ecr_atomic_open(ecr_atomic_file *af, const char *path);
/* Flushes, fsyncs, closes and renames over `path`, then fsyncs the folder (the rename is
 * durable too). On failure removes the temp file. */
ecr_status ecr_atomic_commit(ecr_atomic_file *af);
/* Closes and removes the temp file (safe after a failed commit, and on a zeroed struct). */
void ecr_atomic_abort(ecr_atomic_file *af);
/* Removes the temporary files that writers of `path` killed before their commit left beside
 * it ("path.tmp.PID"). Only for a caller that holds the folder's lock (ecr_dir_lock), when
 * no other process can be writing them. */
void ecr_atomic_clean(const char *path);
/* ECR_E_IO "path: cannot write: reason" unless the folder that would hold `path` exists and
 * is writable (access(2): nothing is made), so that a command can refuse an unwritable
 * output before its work. */
ecr_status ecr_atomic_check(const char *path);
/* Writes n bytes of buf to `path` atomically (ecr_atomic_open, fwrite, ecr_atomic_commit). */
ecr_status ecr_write_file(const char *path, const void *buf, size_t n);

/* Paths and whole files, the one copy every module uses. */
/* dir + "/" + name (no second slash when dir ends with one); malloc'd, caller frees; NULL
 * when out of memory. */
char *ecr_path_join(const char *dir, const char *name);
/* 1 when something (file, folder, ...) exists at `path`. */
int ecr_file_exists(const char *path);
/* mkdir -p: creates `dir` and its missing parents (mode 0777 less the umask). ECR_E_IO
 * naming the folder that could not be made, or when `dir` exists but is not a folder. */
ecr_status ecr_make_dirs(const char *dir);
/* Takes an advisory lock on folder `dir` (flock, exclusive, not waiting) for one writer at a
 * time, held until ecr_dir_unlock or the process ends (a kill releases it). *fd receives the
 * handle. A folder held by another process: ECR_E_INVALID "dir: another ecr WHO is writing
 * to this folder"; a folder that cannot be opened: ECR_E_IO. */
ecr_status ecr_dir_lock(const char *dir, const char *who, int *fd);
/* Releases a lock of ecr_dir_lock; fd < 0 is a no-op. */
void ecr_dir_unlock(int fd);
/* Reads the whole file at `path` into a malloc'd, NUL-terminated buffer (*buf, caller
 * frees; *len, if non-NULL, is the byte count without the NUL). Fails with ECR_E_IO
 * ("path: cannot open: reason" / "path: read error") or ECR_E_NOMEM; *buf is NULL then. */
ecr_status ecr_read_file(const char *path, char **buf, size_t *len);

/* ------------------------------------------------------------------------------------
 * Byte-level BPE tokenizer (GPT-2 byte-to-unicode mapping), stored as tokenizer.json in
 * the Hugging Face `tokenizers` layout. Pre-tokenisation splits text into runs of
 * letters (with marks), numbers, punctuation/symbols and whitespace using utf8proc
 * categories, so Latin, Cyrillic, CJK text all work. Special tokens:
 * "<|endoftext|>" (id 0) and "<|pad|>" (id 1); byte tokens follow at ids 2..257.
 *
 * tokenizer.json's pre_tokenizer is Sequence[Split(Regex, "Isolated"), ByteLevel(
 * add_prefix_space false, use_regex false)] with the regex (Oniguruma / JS 'u' syntax)
 *   " ?[\p{L}\p{M}]+| ?\p{N}+| ?[^\p{L}\p{M}\p{N}\p{White_Space}]+"
 *   "|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+"
 * which the C pre-tokenizer implements exactly (utf8proc categories; White_Space, not the
 * engine-dependent \s), so Hugging Face tokenizers give the same ids (tests/cli_tokenizer.sh
 * checks @huggingface/tokenizers), for characters assigned in both sides' Unicode versions.
 * One deliberate difference: HF matches added tokens inside the input, so the literal text
 * "<|endoftext|>" becomes id 0 there, while ecr_tokenizer_encode treats all input as text,
 * so that decode(encode(s)) == s for every valid UTF-8 string s.
 * The loader accepts only what this encoder reproduces (BPE over byte-level tokens, no
 * normalizer, the pre_tokenizer above, ByteLevel decoder, special added tokens) and names
 * the file and field at fault otherwise.
 * ---------------------------------------------------------------------------------- */

typedef struct ecr_tokenizer ecr_tokenizer;

typedef struct ecr_tokenizer_train_opts {
    int vocab_size;           /* total, including specials and the 256 bytes (default 8192) */
    int min_frequency;        /* pairs seen fewer times are not merged (default 2)           */
    int threads;              /* pre-tokenisation threads, 0 = all; result independent of it */
    int quiet;                /* no progress on stderr                                       */
} ecr_tokenizer_train_opts;

void ecr_tokenizer_train_opts_default(ecr_tokenizer_train_opts *o);
/* Trains on `n` UTF-8 texts (each NUL-terminated; invalid UTF-8 is ECR_E_INVALID naming the
 * text and byte). Merges the most frequent pair first, ties to the lowest (left, right) ids;
 * stops at vocab_size tokens or when no pair reaches min_frequency. */
ecr_status ecr_tokenizer_train(const char *const *texts, size_t n,
                               const ecr_tokenizer_train_opts *opts, ecr_tokenizer **out);
ecr_status ecr_tokenizer_load(const char *path, ecr_tokenizer **out);
ecr_status ecr_tokenizer_save(const ecr_tokenizer *tok, const char *path);
void ecr_tokenizer_free(ecr_tokenizer *tok);

int ecr_tokenizer_vocab_size(const ecr_tokenizer *tok);
int ecr_tokenizer_eot_id(const ecr_tokenizer *tok);
int ecr_tokenizer_pad_id(const ecr_tokenizer *tok);
/* Token string (byte-to-unicode form, as in tokenizer.json) of `id`, or NULL. Borrowed. */
const char *ecr_tokenizer_token(const ecr_tokenizer *tok, int id);

/* Encodes `len` bytes of UTF-8 `text` (no specials added). Returns the token count in
 * *n_out; ids written to `ids` up to `cap` (call with cap 0 to size). Invalid UTF-8 is
 * ECR_E_INVALID with the byte offset in the message. Thread-safe on a shared tokenizer. */
ecr_status ecr_tokenizer_encode(const ecr_tokenizer *tok, const char *text, size_t len,
                                int32_t *ids, size_t cap, size_t *n_out);
/* Decodes ids to bytes (specials decode to nothing). Writes like snprintf: when cap > 0, at
 * most cap - 1 bytes and a NUL; *len_out is the full length (cap 0 sizes; a buffer of
 * *len_out + 1 bytes holds everything). Out-of-range id is ECR_E_INVALID. */
ecr_status ecr_tokenizer_decode(const ecr_tokenizer *tok, const int32_t *ids, size_t n,
                                char *out, size_t cap, size_t *len_out);
/* Length in bytes that token `id` decodes to (0 for specials). */
size_t ecr_tokenizer_token_bytes(const ecr_tokenizer *tok, int id);

/* ------------------------------------------------------------------------------------
 * Corpus (JSONL) and prepared data (data.safetensors).
 *
 * Prepared data tensors:
 *   tokens  [n_tokens]  U16 (vocab <= 65536) or U32    token ids of all texts, back to back
 *   offsets [n_texts+1] I64                             text i is tokens[offsets[i]:offsets[i+1]]
 *   n_bytes [n_texts]   I32                             UTF-8 bytes of each text (for bits/byte)
 *   group   [n_texts]   I32   index into the group table (-1: none)
 *   lang    [n_texts]   I32   index into the lang table  (-1: none)
 *   label   [n_texts]   I32   index into the label table (-1: none)
 * Metadata: "format": "ecr-data-1", "vocab_size", "n_texts", "source" (file name),
 *   "langs" / "labels" (JSON arrays of strings, in order of first appearance),
 *   "groups_count", "tokenizer_hash" (ecr_hash_hex of the tokenizer file) and
 *   "tokenizer.json" (the whole tokenizer file, so a prepared file is self-contained).
 * Group strings are not stored (only their indices: texts with equal group share one).
 * ---------------------------------------------------------------------------------- */

typedef struct ecr_corpus {
    size_t n;                 /* texts                                              */
    char **text;              /* n NUL-terminated UTF-8 strings (owned)            */
    char **id;                /* n strings or NULL entries (owned)                 */
    char **group, **lang, **label; /* likewise; NULL entry when the field is absent */
} ecr_corpus;

/* Reads a JSONL corpus. Bad lines give ECR_E_INVALID "file:line: reason". */
ecr_status ecr_corpus_read(const char *path, ecr_corpus **out);
void ecr_corpus_free(ecr_corpus *c);

typedef enum ecr_text_format {
    ECR_TEXT_JSONL = 0,       /* one JSON object per line, as ecr_corpus_read                    */
    ECR_TEXT_LINES = 1,       /* plain UTF-8 text, one text per line                             */
} ecr_text_format;

/* Reads a corpus from an open stream (read to its end, not closed); `name` names it in
 * messages ("name:LINE: reason"). ECR_TEXT_JSONL is ecr_corpus_read's format (blank lines
 * skipped). ECR_TEXT_LINES: every line is one text, the newline (and a CR before it) left
 * out, a last line without a newline included; only `text` is set (the other fields are NULL
 * entries), so text i is line i + 1. Refused with ECR_E_INVALID naming the line: an empty
 * line ("name:3: empty line ..."; an empty text has no tokens to embed), invalid UTF-8
 * ("name:3: invalid UTF-8 at byte 7", 1-based), a NUL byte, a line beyond 64 MiB; and a
 * stream without texts. ECR_E_IO on a read error. */
ecr_status ecr_corpus_read_stream(FILE *fp, const char *name, ecr_text_format fmt, ecr_corpus **out);

typedef struct ecr_data {
    ecr_st_file *file;        /* owned                                              */
    size_t n_texts;
    size_t n_tokens;
    int vocab_size;
    const uint16_t *tok16;    /* one of these two is non-NULL (borrowed from file)  */
    const uint32_t *tok32;
    const int64_t *offsets;   /* [n_texts + 1] */
    const int32_t *n_bytes, *group, *lang, *label;
    int n_langs, n_labels, n_groups;
    char **langs, **labels;   /* owned string tables                                */
    const char *tokenizer_json; /* the embedded tokenizer.json text (borrowed), or NULL */
    void *mem;                /* internal: the arrays of in-memory data (ecr_data_from_texts),
                                 whose `file` is NULL; NULL for a file                      */
} ecr_data;

/* Reads the corpus, encodes every text (in parallel; see ecr_set_threads) and writes the
 * prepared file atomically. Progress on stderr unless `quiet`. */
ecr_status ecr_prepare(const char *corpus_path, const char *tokenizer_path,
                       const char *out_path, int quiet);
/* Opens and validates a prepared file (token ids below vocab_size, offsets monotonic,
 * index columns inside their tables). */
ecr_status ecr_data_open(const char *path, ecr_data **out);
void ecr_data_free(ecr_data *d);
/* Prepared data in memory, without a file: n UTF-8 texts encoded with `tok` exactly as
 * ecr_prepare encodes a corpus (the same tokens, offsets and n_bytes, so every function of
 * ecr_data gives the numbers it gives on the prepared file of the same texts). texts[i]
 * holds lens[i] bytes (lens NULL: NUL-terminated strings); both are read only during the
 * call. No groups, languages or labels (every index -1, empty tables), file and
 * tokenizer_json NULL, vocab_size the tokenizer's. n may be 0. ECR_E_INVALID "text I: ..."
 * (1-based; the lowest bad index) for an empty text (it has no tokens: ecr_prepare refuses
 * it too), invalid UTF-8 ("text 2: invalid UTF-8 at byte 5", 0-based), a text of 2^31 bytes
 * or more. Encodes in parallel (ecr_set_threads); prints nothing. *out is the caller's
 * (ecr_data_free). */
ecr_status ecr_data_from_texts(const ecr_tokenizer *tok, const char *const *texts, const size_t *lens,
                               size_t n, ecr_data **out);
/* Token id j of the whole stream. */
static inline uint32_t ecr_data_token(const ecr_data *d, size_t j) {
    return d->tok16 ? d->tok16[j] : d->tok32[j];
}


/* ------------------------------------------------------------------------------------
 * Model: decoder-only, Llama-style (see DESIGN.md). fp32. All parameters live in one
 * flat block (and gradients in a second block of the same layout).
 * ---------------------------------------------------------------------------------- */

typedef struct ecr_config {
    int vocab_size;           /* V                                      (vocab_size)              */
    int dim;                  /* d, residual width                      (hidden_size)             */
    int n_layers;             /*                                        (num_hidden_layers)       */
    int n_heads;              /* head_dim = dim / n_heads               (num_attention_heads)     */
    int hidden_dim;           /* SwiGLU width                           (intermediate_size)       */
    int max_seq_len;          /* longest row T                          (max_position_embeddings) */
    float rope_theta;         /*                                        (rope_theta)              */
    float norm_eps;           /*                                        (rms_norm_eps)            */
    int tied;                 /* LM head shares the embeddings          (tie_word_embeddings)     */
    int ecr_dim;              /* D, rows of the ECR projection P [D, d]; 0 = no projection        */
} ecr_config;

/* Presets (vocab 8192, max_seq_len 256, rope_theta 10000, norm_eps 1e-5, tied, ecr_dim 0;
 * SwiGLU width = 8/3 dim rounded up to a multiple of 32):
 *   "tiny"  2 layers x 128, 4 heads (head_dim 32), hidden 352     ~1.5M parameters
 *   "small" 4 layers x 256, 4 heads (head_dim 64), hidden 704     ~5.3M
 *   "base"  6 layers x 384, 6 heads (head_dim 64), hidden 1024    ~13.8M
 * Unknown name: ECR_E_INVALID. */
ecr_status ecr_config_preset(const char *name, ecr_config *cfg);
/* Applies "key=value" (our field names above or the Hugging Face names in parentheses;
 * tied accepts 0/1/true/false). Unknown key or unparsable value: ECR_E_INVALID. Does not
 * validate the whole config (ecr_model_create does). */
ecr_status ecr_config_set(ecr_config *cfg, const char *assignment);
/* Checks ranges: dim divisible by n_heads, even head_dim, positive sizes, eps > 0, ... */
ecr_status ecr_config_validate(const ecr_config *cfg);

/* A packed batch: B rows of T tokens, several texts back to back in each row. A text of
 * n tokens occupies n+1 slots: inputs [EOT, t1..tn], targets [t1..tn, EOT]. Attention of
 * slot t covers slots t-pos[t] .. t (its own text only). */
typedef struct ecr_batch {
    int B, T;
    int32_t *tokens;          /* [B*T] input ids (pad id in padding)                          */
    int32_t *targets;         /* [B*T] next-token ids; -1 = no loss (padding)                 */
    int32_t *pos;             /* [B*T] position inside its text (0 at the EOT that opens it)  */
    int32_t *text;            /* [B*T] text index within the batch, -1 for padding            */
    int n_texts;
    int64_t *text_id;         /* [n_texts] row of the text in the prepared data file          */
} ecr_batch;

typedef struct ecr_model ecr_model;

typedef struct ecr_param_info {
    const char *name;         /* Hugging Face Llama name, e.g. "model.layers.0.mlp.up_proj.weight" */
    size_t offset;            /* into the flat parameter block                                */
    size_t numel;
    int ndim;
    int64_t shape[2];
    int decay;                /* 1 if AdamW weight decay applies (matrices, not norms/embeddings) */
} ecr_param_info;

/* Creates a model with freshly initialised weights, deterministic in `seed`: matrices and
 * embeddings N(0, 0.02), o_proj and down_proj N(0, 0.02/sqrt(2 n_layers)), norms 1,
 * ecr.proj N(0, 1/sqrt(dim)); each tensor draws from its own stream (seed, name).
 * Gradients start at zero. Tensor table order = flat block order: embed_tokens, per layer
 * [input_layernorm, q, k, v, o, post_attention_layernorm, gate, up, down], model.norm,
 * lm_head (untied only), ecr.proj (ecr_dim > 0). Decay flag: 2-D projection matrices
 * (q/k/v/o, gate/up/down, untied lm_head, ecr.proj); not norms, not embed_tokens. */
ecr_status ecr_model_create(const ecr_config *cfg, uint64_t seed, ecr_model **out);
void ecr_model_free(ecr_model *m);
const ecr_config *ecr_model_config(const ecr_model *m);
size_t ecr_model_num_params(const ecr_model *m);
float *ecr_model_params(ecr_model *m);          /* [num_params], borrowed                    */
float *ecr_model_grads(ecr_model *m);           /* [num_params], borrowed                    */
size_t ecr_model_num_tensors(const ecr_model *m);
const ecr_param_info *ecr_model_tensor(const ecr_model *m, size_t i);
void ecr_model_zero_grad(ecr_model *m);
/* The tensor with Hugging Face name `name` (e.g. "ecr.proj.weight"), or NULL. Borrowed. */
const ecr_param_info *ecr_model_find_tensor(const ecr_model *m, const char *name);

/* Saves a model folder: config.json (Hugging Face LlamaConfig keys) + model.safetensors
 * (F32, Hugging Face names; ECR projection as "ecr.proj.weight") + tokenizer.json copied
 * from `tokenizer_path` (may be NULL). `meta` is NULL or a NULL-terminated key, value,
 * key, value... list stored in the safetensors metadata (plus "format": "pt", which
 * Hugging Face loaders expect). Creates `dir` and missing parents. Atomic per file. */
ecr_status ecr_model_save(const ecr_model *m, const char *dir, const char *tokenizer_path,
                          const char *const *meta);
/* Like ecr_model_save, with the tensors stored as `dtype`: ECR_F32, ECR_F16 or ECR_BF16
 * (rounded to nearest even; for shipping weights at half the size). */
ecr_status ecr_model_save_as(const ecr_model *m, const char *dir, const char *tokenizer_path,
                             const char *const *meta, ecr_dtype dtype);
/* Loads a model folder (F32, F16 or BF16 tensors are accepted and converted to fp32).
 * config.json must be a Llama config (num_key_value_heads == num_attention_heads, silu,
 * no rope_scaling); absent keys take LlamaConfig's defaults. Every tensor must be present
 * with the shape config.json implies; unknown tensors are refused (rotary inv_freq
 * buffers and a redundant lm_head of a tied model are ignored). Errors name the file and
 * the key or tensor. */
ecr_status ecr_model_load(const char *dir, ecr_model **out);

typedef struct ecr_forward_out {
    float loss;               /* mean token cross-entropy over targets >= 0 (nats)            */
    double loss_sum;          /* sum of token cross-entropies                                 */
    int64_t n_targets;        /* tokens with a target                                         */
    const float *text_loss;   /* [n_texts] summed cross-entropy per text; borrowed            */
    const float *pooled;      /* [n_texts, dim] h: mean final-norm output over a text's slots
                                 1..n (its tokens, not the opening EOT); borrowed             */
    const float *logits;      /* [B*T, V]; borrowed; valid until the next forward or backward
                                 (the backward overwrites them with their gradient)           */
} ecr_forward_out;

/* Forward pass on a packed batch; keeps the activations for ecr_model_backward. The batch
 * is validated (ECR_E_INVALID naming row and slot): tokens in [0, V), targets in [-1, V),
 * text in [-1, n_texts), T <= max_seq_len, and every text slot's pos is 0 or continues
 * the previous slot's text (pos - 1). Padding slots (text -1) attend only to themselves
 * at position 0: their outputs are finite and do not affect other slots. Returns ECR_OK
 * even when the loss is not finite (the caller decides). Workspace is allocated for the
 * largest batch seen and reused. Not thread-safe on one model. */
ecr_status ecr_model_forward(ecr_model *m, const ecr_batch *b, ecr_forward_out *out);
/* Backward of   lm_scale * loss  +  sum_i <dpooled[i], pooled[i]>  (+ sum <dlogits, logits>
 * when dlogits is non-NULL, [B*T, V]) for the batch of the last forward; ACCUMULATES into
 * the gradient block. dpooled ([n_texts, dim]) and dlogits may be NULL. `b` must be the
 * batch given to that forward; one backward per forward (a second one is ECR_E_INVALID). */
ecr_status ecr_model_backward(ecr_model *m, const ecr_batch *b, float lm_scale,
                              const float *dpooled, const float *dlogits);
/* Embeddings only: the forward without the LM head (about a third cheaper on the presets),
 * for `embed` and geometry metrics. *pooled ([n_texts, dim], borrowed, valid until the
 * next forward/encode) gets the same values as ecr_forward_out.pooled. No backward may
 * follow. Same batch validation as the forward. */
ecr_status ecr_model_encode(ecr_model *m, const ecr_batch *b, const float **pooled);

/* Incremental decoding with a KV cache (never touches the ECR projection). */
typedef struct ecr_kv_cache ecr_kv_cache;
ecr_status ecr_kv_cache_create(const ecr_model *m, int max_len, ecr_kv_cache **out);
void ecr_kv_cache_free(ecr_kv_cache *c);
void ecr_kv_cache_reset(ecr_kv_cache *c);
/* Positions filled so far (0 after create/reset). */
int ecr_kv_cache_len(const ecr_kv_cache *c);
/* Feeds `token` at the next position (0, 1, 2, ...); writes the next-token logits [V].
 * Same numbers (to fp32 rounding) as the packed forward on the same text. A full cache
 * (max_len positions) is ECR_E_INVALID. Runs the matrix-vector path (one row). */
ecr_status ecr_model_step(ecr_model *m, ecr_kv_cache *c, int32_t token, float *logits);
/* Feeds tokens[0..n) (n >= 1) at the next n positions, as n calls of ecr_model_step would,
 * but through the matrix-matrix products, up to 64 rows at a time (prompt processing);
 * writes the next-token logits [V] after the last token when logits is non-NULL. The same
 * numbers as the steps to fp32 rounding (the products sum in another order). A token
 * outside the vocabulary or more tokens than the cache has room for is ECR_E_INVALID, with
 * nothing fed; an error mid-way (out of memory in bf16) leaves the cache with the chunks
 * fed before it. */
ecr_status ecr_model_prefill(ecr_model *m, ecr_kv_cache *c, const int32_t *tokens, size_t n, float *logits);

/* Threads for OpenMP and BLAS (0 = all cores). BLAS's count is process-wide; OpenMP's
 * belongs to the calling thread (another thread of the process keeps OpenMP's default,
 * OMP_NUM_THREADS or all cores, until it calls this too). Results are deterministic for a
 * given thread count. */
void ecr_set_threads(int n);
int ecr_get_threads(void);

/* Precision of the model's matrix products. In fp32 every product is fp32. In bf16 the
 * linear layers and the LM head, forward and backward, take bf16 inputs (weights and
 * activations rounded to nearest even) and accumulate and write fp32; the master weights,
 * gradients, optimizer state, norms, attention, softmax and every loss stay fp32. bf16
 * runs on oneDNN (libdnnl) where the CPU has AMX-BF16 or AVX512-BF16; with the environment
 * variable ECR_BF16_EMULATE=1 it also runs elsewhere, on a reference engine (fp32 products
 * of the rounded inputs: the numbers of bf16 at the speed of fp32, for tests). */
typedef enum ecr_precision {
    ECR_PRECISION_AUTO = 0,   /* bf16 where the CPU has bf16 matrix units and oneDNN is built in */
    ECR_PRECISION_FP32 = 1,
    ECR_PRECISION_BF16 = 2,
} ecr_precision;
/* "auto", "fp32", "bf16". Static string. */
const char *ecr_precision_name(ecr_precision p);
/* Parses one of those names; ECR_E_INVALID otherwise. */
ecr_status ecr_precision_parse(const char *s, ecr_precision *out);
/* What `want` means on this CPU and build: auto -> bf16 or fp32; fp32 -> fp32; bf16 ->
 * bf16, or ECR_E_INVALID saying why bf16 cannot run here. */
ecr_status ecr_precision_resolve(ecr_precision want, ecr_precision *got);
/* One line naming the bf16 engine ("oneDNN brg:avx512_core_amx_bf16") or why there is
 * none ("none: ..."). Static string. */
const char *ecr_bf16_engine(void);
/* Sets the precision of the model's products (fp32 or bf16, resolved: see above; auto is
 * resolved here). A model starts in fp32. bf16 keeps a bf16 copy of the parameters, made
 * again at each forward pass from the fp32 parameters, and bf16 copies of the activations
 * that feed the products. */
ecr_status ecr_model_set_precision(ecr_model *m, ecr_precision p);
ecr_precision ecr_model_precision(const ecr_model *m);

/* ------------------------------------------------------------------------------------
 * GGUF export, for llama.cpp and the tools built on it (`ecr export`; the format in
 * src/io/gguf.c, the model's mapping in src/model/model_gguf.c).
 *
 * GGUF version 3 (ggml's docs/gguf.md), little-endian: "GGUF", the version, the tensor
 * and key counts; typed key-value pairs; per tensor its name, dims listed fastest-varying
 * first (ne[0] = the number of columns of a row-major matrix: ecr's [rows, cols] is
 * ne = {cols, rows}), ggml type and data offset; then the data, each tensor starting at a
 * multiple of ECR_GGUF_ALIGNMENT bytes. The writer writes what it is given; what a
 * llama.cpp `llama` model needs is ecr_model_export_gguf's business.
 * ---------------------------------------------------------------------------------- */

typedef enum ecr_gguf_type {  /* ggml's type numbers                                        */
    ECR_GGUF_F32 = 0,
    ECR_GGUF_F16 = 1,
    ECR_GGUF_Q8_0 = 8,          /* blocks of 32 values: an fp16 scale d, then 32 int8 q; x = d q */
    ECR_GGUF_BF16 = 30,
} ecr_gguf_type;

#define ECR_GGUF_ALIGNMENT 32   /* GGUF's default (the key general.alignment may only say 32) */
#define ECR_GGUF_Q8_0_BLOCK 32

/* "F32", "F16", "BF16", "Q8_0"; "?" for another value. Static string. */
const char *ecr_gguf_type_name(ecr_gguf_type t);
/* Bytes that n values of type t take; 0 when n < 0, or for Q8_0 when n is not a multiple
 * of 32 (34 bytes per block). */
size_t ecr_gguf_row_bytes(ecr_gguf_type t, int64_t n);
/* Q8_0 of x[n] (n a multiple of 32) into out (n / 32 * 34 bytes), as ggml's
 * quantize_row_q8_0_ref: per block d = max|x| / 127 (stored as fp16, rounded to nearest
 * even), q = roundf(x / d) computed as x * (1 / d) with the unrounded d (q = 0 when d = 0). */
void ecr_gguf_quantize_q8_0(const float *x, int64_t n, void *out);
/* The inverse: y[i] = fp16 d of the block times q[i]. */
void ecr_gguf_dequantize_q8_0(const void *in, int64_t n, float *y);

typedef struct ecr_gguf_writer ecr_gguf_writer;
ecr_status ecr_gguf_writer_create(ecr_gguf_writer **out);
void ecr_gguf_writer_free(ecr_gguf_writer *w);
/* Key-value pairs, written in the order set; keys and values are copied. A key set twice,
 * an empty key, a NULL string, or general.alignment other than 32 is ECR_E_INVALID. */
ecr_status ecr_gguf_set_u32(ecr_gguf_writer *w, const char *key, uint32_t v);
ecr_status ecr_gguf_set_f32(ecr_gguf_writer *w, const char *key, float v);
ecr_status ecr_gguf_set_bool(ecr_gguf_writer *w, const char *key, int v);
ecr_status ecr_gguf_set_str(ecr_gguf_writer *w, const char *key, const char *v);
ecr_status ecr_gguf_set_str_array(ecr_gguf_writer *w, const char *key, const char *const *v, size_t n);
ecr_status ecr_gguf_set_i32_array(ecr_gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* Adds a tensor of ndim (1..4) dims ne[] (fastest first, each >= 1; for Q8_0 ne[0] a
 * multiple of 32) holding ecr_gguf_row_bytes(type, ne[0]) * ne[1] * ... bytes at `data`,
 * which is borrowed: it must stay valid until ecr_gguf_writer_write. The name (copied) is
 * 1 to 63 bytes and new. Bad arguments: ECR_E_INVALID. Tensors are written in the order
 * added. */
ecr_status ecr_gguf_add_tensor(ecr_gguf_writer *w, const char *name, ecr_gguf_type type, int ndim,
                               const int64_t *ne, const void *data);
/* Writes the file atomically (temp file, fsync, rename); ECR_E_IO "path: ..." when it
 * cannot be created or written (nothing is left behind). May be called again. */
ecr_status ecr_gguf_writer_write(const ecr_gguf_writer *w, const char *path);

typedef struct ecr_gguf_export_opts {
    ecr_gguf_type type;       /* of the matrices (default F32); vectors (the norms) stay F32.
                                 Q8_0 writes a matrix whose rows are not a multiple of 32
                                 values as F16 (a note on stderr unless quiet)               */
    const char *name;         /* general.name; NULL = the model folder's name                 */
    const char *pre;          /* tokenizer.ggml.pre, llama.cpp's pre-tokenizer; NULL = "gpt-2",
                                 the closest to ecr's (DESIGN.md, "GGUF export")             */
    int quiet;                /* no notes on stderr                                           */
} ecr_gguf_export_opts;

void ecr_gguf_export_opts_default(ecr_gguf_export_opts *o);

typedef struct ecr_gguf_export_info {
    int n_tensors;            /* tensors in the GGUF file                                     */
    int n_fallback;           /* matrices written as F16 instead of Q8_0                      */
    size_t n_values;          /* parameters in the GGUF file (the projection not counted)     */
    int projection;           /* 1: the ECR projection went to ecr_gguf_projection_path(path) */
} ecr_gguf_export_info;

/* Writes the model folder `dir` (config.json, model.safetensors, tokenizer.json) as a GGUF
 * file at `path` that llama.cpp loads as architecture "llama": the hyperparameters under
 * llama.*, the tensors renamed to llama.cpp's names with the rows of q and k permuted for
 * its rotary layout (adjacent pairs), the LM head as output.weight only when untied, and
 * the tokenizer as tokenizer.ggml.* (model "gpt2": the byte-level token strings, token
 * types 1 normal / 3 control for the special tokens / 5 for "[PADi]" fillers up to the
 * model's vocabulary, the merges, bos/eos/pad ids from config.json or else the tokenizer's
 * end-of-text and pad, add_bos_token true since ecr starts every text with EOT,
 * add_eos_token false). Tensor mapping and permutation: src/model/model_gguf.c.
 * The ECR projection P (config ecr_dim > 0) has no place in a "llama" GGUF: it is written
 * beside it, as a [D, d] float32 .npy at ecr_gguf_projection_path(path), before the GGUF;
 * if the GGUF then fails, that file is removed again.
 * `o` may be NULL (defaults); `info` may be NULL. Errors: ECR_E_INVALID naming the folder or
 * file for a path that is no model folder (missing, a file, or without config.json,
 * model.safetensors or tokenizer.json), a malformed model or tokenizer (ecr_model_load,
 * ecr_tokenizer_load), a tokenizer larger than the model's vocabulary, special ids outside
 * it, bad options; ECR_E_IO naming the output when it cannot be written. Every file is
 * written atomically. */
ecr_status ecr_model_export_gguf(const char *dir, const char *path, const ecr_gguf_export_opts *o,
                                 ecr_gguf_export_info *info);
/* Where the projection of a GGUF export at `path` goes: `path` without a final ".gguf",
 * then ".ecr_proj.npy" ("student.gguf" -> "student.ecr_proj.npy"). ECR_E_INVALID when it
 * does not fit in cap bytes. */
ecr_status ecr_gguf_projection_path(const char *path, char *buf, size_t cap);

/* ------------------------------------------------------------------------------------
 * Optimizer (src/train/optim.c): AdamW as torch.optim.AdamW (decoupled weight decay, bias
 * correction), applied to tensors with the decay flag only; a warm-up + cosine learning
 * rate schedule; global gradient-norm clipping as torch.nn.utils.clip_grad_norm_.
 * ---------------------------------------------------------------------------------- */

typedef struct ecr_adamw_opts {
    float beta1, beta2;       /* default 0.9, 0.95                                            */
    float eps;                /* default 1e-8                                                 */
    float weight_decay;       /* default 0.1 (on tensors whose ecr_param_info.decay is 1)     */
    int decay_embeddings;     /* also decay model.embed_tokens.weight (default 0)             */
} ecr_adamw_opts;

void ecr_adamw_opts_default(ecr_adamw_opts *o);

typedef struct ecr_adamw ecr_adamw;

/* Zeroed moments for the model's parameter block (opts NULL = defaults). Bad options:
 * ECR_E_INVALID. */
ecr_status ecr_adamw_create(const ecr_model *m, const ecr_adamw_opts *opts, ecr_adamw **out);
void ecr_adamw_free(ecr_adamw *opt);
/* One update of the model's parameters from its gradient block (the gradients are not
 * cleared); the step count goes up by one first, then for every element:
 *   p *= 1 - lr wd (decay tensors);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). */
ecr_status ecr_adamw_step(ecr_adamw *opt, ecr_model *m, float lr);
/* State for exact resume: moments [ecr_adamw_size] (same layout as the parameters;
 * borrowed, writable) and the number of steps taken. */
size_t ecr_adamw_size(const ecr_adamw *opt);
float *ecr_adamw_m(ecr_adamw *opt);
float *ecr_adamw_v(ecr_adamw *opt);
int64_t ecr_adamw_steps(const ecr_adamw *opt);
void ecr_adamw_set_steps(ecr_adamw *opt, int64_t steps);
const ecr_adamw_opts *ecr_adamw_options(const ecr_adamw *opt);

/* Learning rate of 0-based `step`: linear warm-up lr * (step+1)/warmup for step < warmup,
 * then cosine from lr down to min_lr at step == total, min_lr after. */
float ecr_lr_schedule(int64_t step, int64_t warmup, int64_t total, float lr, float min_lr);
/* Global L2 norm of the gradient block (in double, deterministic) into *norm_before; if
 * max_norm > 0 and the norm exceeds it, scales the gradients by max_norm / (norm + 1e-6).
 * A non-finite norm is ECR_E_RUNTIME (gradients untouched). */
ecr_status ecr_clip_grad_norm(ecr_model *m, float max_norm, float *norm_before);

/* ------------------------------------------------------------------------------------
 * Training (src/data/batcher.c, src/train/train.c, src/model/generate.c) — section owned by the trainer.
 *
 * Packed batches. A batcher turns prepared data into ecr_batch'es of B rows x T slots.
 * Each epoch visits the texts in the order a sampler gives (default: a Fisher-Yates
 * shuffle seeded by (seed, epoch)); a greedy first-fit packer over a lookahead window of
 * the next `window` texts fills each row: it places the first waiting text that still
 * fits, and closes the row (padding: pad id, target -1, text -1) when none does. A text
 * of n tokens takes n+1 slots (inputs [EOT, t1..tn], targets [t1..tn, EOT], pos 0..n).
 * A text longer than T-1 tokens is truncated to its first T-1 tokens: inputs
 * [EOT, t1..t(T-1)], targets [t1..tT] (the true next token; no closing EOT).
 * Batches never span two epochs: the last batch of an epoch may be partly padding.
 *
 * Group units (ecr_batcher_opts.group_units, used with ecr_sampler_groups for the
 * contrastive objective): a run of consecutive texts of one group (>= 0) in the order is a
 * unit that lands in one batch whole, so every text of a step has its positives beside it.
 * The window then holds whole units; each batch takes, again and again, the first waiting
 * unit whose texts all fit (each text in the first row with room for it) and closes when
 * none does. Each group must form a single run of at most `window` texts per epoch, and a
 * unit must fit an empty batch (B >= the group size is enough), else ECR_E_INVALID.
 * ---------------------------------------------------------------------------------- */

/* Sampler: the order in which epoch `epoch` visits the texts of `d`. Writes up to
 * d->n_texts row indices (each < n_texts, each at most once) to order[] and their count
 * to *n_out. Must depend only on (ctx, d, seed, epoch) so that a data cursor (epoch,
 * position) resumes exactly. This is the seam for a group-aware sampler. */
typedef ecr_status (*ecr_sampler_fn)(void *ctx, const ecr_data *d, uint64_t seed,
                                     int64_t epoch, int64_t *order, size_t *n_out);
/* Every text once, shuffled by Fisher-Yates with a PRNG seeded from (seed, epoch). */
ecr_status ecr_sampler_shuffle(void *ctx, const ecr_data *d, uint64_t seed, int64_t epoch,
                               int64_t *order, size_t *n_out);
/* Every text once, in file order (evaluation, embedding). */
ecr_status ecr_sampler_sequential(void *ctx, const ecr_data *d, uint64_t seed, int64_t epoch,
                                  int64_t *order, size_t *n_out);
/* Groups for the contrastive objective; ctx points to an int G >= 2, the texts per group
 * (NULL = 2). An epoch is one pass over the groups that hold two or more texts with at
 * least one token, in a Fisher-Yates order seeded by (seed, epoch); from each it takes
 * min(G, size) texts, chosen at random with distinct languages first (a text without a
 * language counts as its own), filling up with other texts of the group when there are
 * fewer than G languages, and writes them consecutively. Texts without a group, in a group
 * of one, or without tokens are never visited; with G = 2 on a corpus of 10 translations
 * per group, an epoch visits a fifth of the texts (a new draw every epoch). ECR_E_INVALID
 * when no group qualifies. */
ecr_status ecr_sampler_groups(void *ctx, const ecr_data *d, uint64_t seed, int64_t epoch,
                              int64_t *order, size_t *n_out);

#define ECR_MAX_WINDOW 256

typedef struct ecr_batcher_opts {
    int B, T;                 /* rows and slots per row (T >= 2)                             */
    int window;               /* packer lookahead, 1..ECR_MAX_WINDOW (default 64)            */
    uint64_t seed;            /* passed to the sampler                                       */
    ecr_sampler_fn sampler;   /* NULL = ecr_sampler_shuffle                                  */
    void *sampler_ctx;
    int32_t eot_id, pad_id;   /* default 0 and 1 (the tokenizer's specials)                  */
    int group_units;          /* 1: runs of one group in the order are packed whole into one
                                 batch (see above); default 0                               */
} ecr_batcher_opts;

void ecr_batcher_opts_default(ecr_batcher_opts *o);

typedef struct ecr_batcher ecr_batcher;

/* Allocates a B x T batch (all padding, n_texts 0). Free with ecr_batch_free. */
ecr_status ecr_batch_create(int B, int T, ecr_batch **out);
void ecr_batch_free(ecr_batch *b);

/* A batcher over `d` (borrowed: must outlive the batcher), positioned at the start of
 * epoch 0. Fails with ECR_E_INVALID if the options are out of range or d has no texts. */
ecr_status ecr_batcher_create(const ecr_data *d, const ecr_batcher_opts *o, ecr_batcher **out);
void ecr_batcher_free(ecr_batcher *b);

/* Packs the next batch into *out (borrowed from the batcher; valid until the next call).
 * *epoch_end (may be NULL) is set to 1 when this batch finished its epoch (the cursor then
 * points at the start of the next epoch). */
ecr_status ecr_batcher_next(ecr_batcher *b, const ecr_batch **out, int *epoch_end);

/* The data cursor, for exact resume: an array of ecr_batcher_cursor_len() int64 values
 * [epoch, position in the epoch's order, number waiting in the window, their text ids...]
 * (fixed length 3 + window). set_cursor validates it (ECR_E_INVALID naming the field). */
size_t ecr_batcher_cursor_len(const ecr_batcher *b);
void ecr_batcher_get_cursor(const ecr_batcher *b, int64_t *cursor);
ecr_status ecr_batcher_set_cursor(ecr_batcher *b, const int64_t *cursor, size_t len);
/* Epochs done as a fraction (epoch + share of this epoch's texts already packed). */
double ecr_batcher_progress(const ecr_batcher *b);

/* Number of batches epoch `epoch` makes (a dry run of the packer; the batcher is not
 * moved). */
ecr_status ecr_batcher_epoch_batches(const ecr_batcher *b, int64_t epoch, int64_t *n);

typedef struct ecr_batcher_stats {
    int64_t n_truncated;      /* texts of the data longer than T-1 tokens                    */
    int64_t max_tokens;       /* longest text, in tokens                                     */
    int64_t batches;          /* batches packed so far by ecr_batcher_next                   */
    int64_t slots, filled;    /* slots in those batches, and slots holding text              */
} ecr_batcher_stats;
void ecr_batcher_get_stats(const ecr_batcher *b, ecr_batcher_stats *s);

/* ---- Training loop -------------------------------------------------------------------
 *
 * ecr_train reads prepared data, builds (or resumes) a model and trains it with AdamW on
 * packed batches, with linear warmup then cosine decay of the learning rate to min_lr and
 * gradient clipping by global norm. It writes into out_dir:
 *   config.json, model.safetensors, tokenizer.json   the model folder (ecr_model_save);
 *                                                    the tokenizer comes from --tokenizer or
 *                                                    from the data's "tokenizer.json" metadata
 *   train_state.safetensors   "params" (the weights), "adam.m", "adam.v" [num_params] F32,
 *                             "step" [1] I64,
 *                             "rng" [1] I64 (trainer PRNG state, for stochastic objectives;
 *                             the data order derives from (seed, epoch)), "data_cursor"
 *                             [3+window] I64 (ecr_batcher_get_cursor); metadata "format" =
 *                             "ecr-train-state-2", "step", "tokens", "elapsed_s", "processes"
 *                             (of the run that wrote it; a resume may use another), "options"
 *                             (JSON of the options that must match to resume), "options_hash"
 *   log.jsonl                 one record per step {"step", "loss" (the LM term: mean nats
 *                             per target token), "lr", "grad_norm" (before clipping),
 *                             "clipped" (bool), "tokens" (target tokens trained on so far),
 *                             "tokens_per_s" (this step's), "elapsed_s" (since the run began,
 *                             across resumes)}, plus, when those terms are on, "contrastive"
 *                             (InfoNCE, unweighted), "ecr" (mean KL, unweighted), "kd" (T^2
 *                             mean KL, before alpha), "feat" (mean 1 - cos, unweighted), "rkd"
 *                             (25 L_dist + 50 L_angle, before w_r), "rel" and "con" (the
 *                             codes-only variants, unweighted) and "total" (the objective
 *                             optimised); and per validation pass {"step",
 *                             "val_loss","val_bpb","val_tokens","val_eff_rank" (effective
 *                             rank of the validation texts' h), "val_p1" (cross-lingual P@1
 *                             against English) and "val_transfer" (label transfer, k-NN
 *                             with k = ECR_KNN_K), the last two where the data has English
 *                             and groups / labels; the same three of u with "_u", with a
 *                             projection}
 * Checkpoints are written every save_every steps and at the end: the log flushed and
 * fsynced, the model files (model.safetensors metadata "ecr_step" says their step), then
 * the train state, whose rename commits the checkpoint (each file atomic). A kill at any
 * moment leaves a resumable folder. out_dir is locked for the run (ecr_dir_lock; a second
 * trainer gets ECR_E_INVALID); temporary files of a killed run are removed.
 * resume: continues from out_dir's checkpoint with exactly the same numbers as an
 * uninterrupted run (same threads); log records after the checkpoint's step are dropped;
 * model files ahead of the state (a kill between the renames) are rewritten from it. A
 * state of format "ecr-train-state-1" (no "params") resumes with model.safetensors'
 * weights, which must then hold its step.
 * A non-finite loss or gradient norm stops training with ECR_E_RUNTIME and the message
 * "step N: loss is NaN; last good checkpoint at step M kept" (nothing more is written).
 *
 * Objectives (DESIGN "The method"), L per step over the texts of the batch:
 *   lm                L = L_LM (mean token cross-entropy)
 *   lm+contrastive    L = L_LM + w InfoNCE: symmetric, multi-positive, in-batch InfoNCE with
 *                     temperature tau_c over the L2-normalised pooled embeddings h; the
 *                     positives of a text are the other texts of its group in the step, every
 *                     other text is a negative; mean over the texts that have a positive.
 *                     Batches come from ecr_sampler_groups (group_size texts per group,
 *                     packed as group units), so an epoch is one pass over the groups.
 *   + ECR (anchors)   L += lambda mean_i KL(pi_i || q_i), q_i = softmax(A u_i / tau),
 *                     u_i = P h_i / ||P h_i|| with the model's projection P = ecr.proj.weight
 *                     [D, d] (config ecr_dim = D, the anchors' dim), pi_i = row c_i of
 *                     row-softmax(A A^T / tau) (hard codes) or softmax(soft_sim_i / tau) on
 *                     the text's soft_idx (soft codes). Combines with either objective.
 *                     Training reads only the prepared data and the anchors file; the
 *                     anchors' codes must cover exactly the data's texts (rows == n_texts).
 *   + kd (teacher)    L = (1 - alpha) L_LM + alpha T^2 mean_t KL(softmax(z^T_t / T) ||
 *                     softmax(z_t / T)) over the slots t with a target, z^T the logits of the
 *                     teacher model (kd_teacher, loaded once, forward only) on the same packed
 *                     batch; the other terms add to this.
 *   + feat (vectors)  L += w_f mean_i (1 - cos(P h_i, t_i)), t_i row text_id of the .npy.
 *   + rkd (vectors)   L += w_r (25 L_dist + 50 L_angle): relational KD (Park et al. 2019)
 *                     between u_i = P h_i / ||P h_i|| and t_i / ||t_i|| over the texts of the
 *                     step (distances normalised by their mean; angles at every vertex of
 *                     every triplet; smooth-L1), as in the authors' code.
 *                     ECR, feat and rkd share the projection P: the anchors' dim and the .npy
 *                     files' columns must agree (D = ecr_dim), and each file must hold one
 *                     row per training text (rows == n_texts).
 *   + rel (anchors)   L += w_rel mean_{i != j} (<x_i, x_j> - <a_ci, a_cj>)^2 over the texts
 *                     of the step (relational consistency): x = u, or h / ||h|| with rel_on_h;
 *                     a_c the anchor of code c. Codes and anchors only; needs --anchors.
 *   + con (anchors)   L += w_con InfoNCE (as lm+contrastive's, temperature con_tau) on x = u,
 *                     or h with con_on_h, in which texts that share a code are positives.
 *                     Codes only; needs --anchors.
 *   + orth            L += w_orth ||P^T P - I||_F^2 / d: keeps the projection near an
 *                     isometry, so that the cosines of u are those of h and the structure
 *                     ECR gives u is in h too. Needs the projection (--anchors).
 * Texts without tokens take part in no embedding term. With ECR, model.safetensors' metadata
 * also records "ecr_anchors_k", "ecr_anchors_dim", "ecr_tau", "ecr_weight", "ecr_soft",
 * "ecr_anchors_source", "ecr_anchors_source_hash" (the anchors' source_hash) and
 * "ecr_anchors_hash" (of the anchors, codes and soft codes); with the contrastive objective
 * "objective", "contrastive_weight", "contrastive_tau", "group_size"; with kd "kd_teacher"
 * (the folder as given), "kd_teacher_hash" (ecr_hash_hex of the teacher's fp32 parameters),
 * "kd_alpha", "kd_temp"; with feat / rkd "feat_source", "feat_hash" (of the .npy's float32
 * data), "feat_dim", "feat_weight" / the same with "rkd_". The resume check covers all of
 * these options (the hashes, not the paths).
 * ---------------------------------------------------------------------------------- */

typedef enum ecr_train_objective {
    ECR_TRAIN_LM = 0,                 /* "lm"                                               */
    ECR_TRAIN_LM_CONTRASTIVE = 1,     /* "lm+contrastive"                                   */
} ecr_train_objective;

/* Parses "lm" / "lm+contrastive"; ECR_E_INVALID naming the value otherwise. */
ecr_status ecr_train_objective_parse(const char *name, ecr_train_objective *out);
/* "lm", "lm+contrastive". Static string. */
const char *ecr_train_objective_name(ecr_train_objective obj);

#define ECR_MRES_MAX 4          /* further anchor sets of the mres term                     */

/* ---- Data parallelism -------------------------------------------------------------------
 * A communicator over the processes ("ranks") of one job. The caller provides it (`ecr`
 * implements it with MPI in cli/comm_mpi.c; the library itself does not link MPI). Every
 * rank calls the same collectives in the same order; each returns 0 on success, and on
 * failure a nonzero value (the library then fails with ECR_E_RUNTIME naming the operation).
 * A NULL communicator, or one of size 1, is one process: nothing is exchanged. */
typedef struct ecr_comm {
    int rank, size;           /* this process's rank in [0, size)                            */
    void *ctx;                /* passed back to every function                               */
    /* x[0..n) = its sum over the ranks, on every rank (in place). */
    int (*sum_f32)(void *ctx, float *x, size_t n);
    int (*sum_f64)(void *ctx, double *x, size_t n);
    /* all = the ranks' `mine` concatenated in rank order, on every rank; counts[r] floats
     * come from rank r (counts[rank] of them are `mine`). */
    int (*gather_f32)(void *ctx, const float *mine, float *all, const int *counts);
    /* x[0..n) bytes of rank `root` to every rank. */
    int (*bcast)(void *ctx, void *x, size_t n, int root);
} ecr_comm;

typedef struct ecr_train_opts {
    const char *data_path;      /* prepared training data (required)                         */
    const char *valid_path;     /* prepared validation data, or NULL                         */
    const char *tokenizer_path; /* NULL: the tokenizer embedded in the data's metadata       */
    const char *out_dir;        /* model folder (created if missing)                         */
    ecr_config config;          /* vocab_size 0 = the data's; otherwise must equal it         */
    int64_t steps;              /* total optimizer steps; 0 = from epochs                    */
    double epochs;              /* used when steps == 0 (default 1)                          */
    int64_t tokens_per_step;    /* B*T (default 4096; B = tokens_per_step / T, at least 1)   */
    int seq_len;                /* T; 0 = min(config.max_seq_len, 256)                       */
    float lr;                   /* peak learning rate (default 1e-3)                         */
    float min_lr;               /* end of the cosine (default lr / 10; < 0 means default)    */
    int64_t warmup;             /* linear warmup steps (default -1: 2% of steps, <= 1000)    */
    float weight_decay;         /* AdamW decoupled decay on matrices (default 0.1)           */
    float beta1, beta2, eps;    /* default 0.9, 0.95, 1e-8                                   */
    float grad_clip;            /* global-norm clip (default 1.0; 0 = off)                   */
    uint64_t seed;              /* init and data order (default 1)                           */
    int threads;                /* 0 = all cores                                             */
    ecr_precision precision;    /* of the products, student and KD teacher (default auto: see
                                   ecr_precision_resolve); a resume needs the same one       */
    int resume;                 /* continue from out_dir's checkpoint                        */
    int log_every;              /* progress line on stderr every N steps (default 10)        */
    int eval_every;             /* validation every N steps (default 0: only at the end)     */
    int save_every;             /* checkpoint every N steps (default 0: only at the end)     */
    int quiet;                  /* no progress on stderr                                     */
    /* Objective (see above): */
    ecr_train_objective objective; /* default ECR_TRAIN_LM                                    */
    float contrastive_weight;   /* w (default 1.0)                                           */
    float contrastive_tau;      /* tau_c (default 0.05)                                      */
    int group_size;             /* texts per group in a step, >= 2 (default 2); needs at
                                   least that many rows per step                             */
    const char *anchors_path;   /* anchors.safetensors: adds the ECR term; NULL = none       */
    float ecr_weight;           /* lambda (default 0.05)                                     */
    float ecr_tau;              /* tau; 0 (default) = the "tau" recorded in the anchors file
                                   (0.05 unless `ecr anchors --tau` changed it)              */
    int ecr_soft;               /* soft codes (the anchors file must hold them)              */
    /* Baselines (DESIGN "Baselines"; each combines with everything above): */
    const char *kd_teacher;     /* model folder of a teacher: adds logit distillation; NULL =
                                   none. Same vocabulary (and tokenizer) as the data,
                                   max_seq_len >= seq_len                                    */
    float kd_alpha;             /* alpha in [0, 1] (default 0.5)                             */
    float kd_temp;              /* T > 0 (default 2)                                         */
    const char *feat_path;      /* teacher vectors (.npy, row i = text i of the training
                                   data): adds feature matching; NULL = none                 */
    float feat_weight;          /* w_f (default 1.0)                                         */
    const char *rkd_path;       /* teacher vectors (.npy, likewise): adds relational KD       */
    float rkd_weight;           /* w_r (default 1.0)                                         */
    float ecr_warmup;           /* share of the run over which lambda ramps up from 0
                                   linearly (default 0: none)                                 */
    float ecr_decay;            /* share at the end over which it ramps down to 0 (default 0) */
    float rel_weight;           /* w_rel: relational consistency on the codes' anchors;
                                   part of ECR: on only with anchors; default 1, 0 = off     */
    int rel_on_h;               /* rel on h / ||h|| instead of u (default 0)                 */
    float con_weight;           /* w_con: code-contrastive; 0 (default) = off; needs anchors  */
    float con_tau;              /* its temperature (default 0.1)                             */
    int con_on_h;               /* con on h instead of u (default 0)                         */
    float orth_weight;          /* w_orth: keeps P^T P near I so that u's cosines are h's;
                                   part of ECR: on only with anchors; default 1, 0 = off     */
    const char *mres_path;      /* multi-resolution codes: further anchors files, comma-
                                   separated (at most ECR_MRES_MAX), each from the same
                                   teacher vectors with another K; needs anchors; NULL = off */
    float mres_weight;          /* their weight: L += w sum_r mean KL_r (default 0.05)       */
    float mid_weight;           /* ECR on an intermediate layer too: L += w KL on the pooled
                                   output of block mid_layer; 0 (default) = off; needs anchors */
    int mid_layer;              /* that block, 1..n_layers-1 (default 1)                     */
    /* Data parallelism: NULL = one process. Otherwise each rank runs ecr_train with the same
       options and its rank's communicator: every rank packs the same global batch of B rows
       and runs the model on its share of them (rows [r B / size, (r + 1) B / size)); the
       pooled rows are gathered so that every term sees the whole step, the gradients are
       summed (ecr_comm.sum_f32, in buckets); the loss, the terms, the gradient norm and the
       clipping are those of the global batch, so the same options mean the same
       optimisation whatever the size (numbers equal up to summation order). Rank 0 alone
       writes out_dir (lock, log, checkpoints) and reads the checkpoint on resume, sending it
       to the others; a resume may use another size. Needs B >= size. Borrowed. */
    const ecr_comm *comm;
    /* For tests: */
    int64_t stop_after;         /* > 0: stop (with a checkpoint) once this step is done,
                                   keeping the schedule of `steps`                          */
    int64_t nan_at_step;        /* > 0: pretend the loss of this step is NaN                 */
} ecr_train_opts;

void ecr_train_opts_default(ecr_train_opts *o);

/* Objective terms (src/method/terms.c): every term beyond the LM loss is one row of a
 * table, which the trainer (log records), `ecr train` (flags, --help, orphan checks,
 * run.json, the method name) and `ecr report` (the order of methods) loop over. Rows, in
 * order: "contrastive" (on with objective lm+contrastive), "ecr", "kd", "feat", "rkd", "rel",
 * "con", "orth", "mres", "mid". A term's options are fields of ecr_train_opts; opts[0] switches it on (see
 * ecr_term_switch), and its other options need it. */
typedef enum ecr_term_kind {
    ECR_TERM_PATH,            /* const char * (NULL = not given)                               */
    ECR_TERM_FLOAT,           /* float                                                         */
    ECR_TERM_INT,             /* int                                                           */
    ECR_TERM_FLAG,            /* int, 0 or 1 (a flag without a value)                          */
} ecr_term_kind;

typedef enum ecr_term_switch {
    ECR_TERM_ON_PATH,         /* opts[0], a path, is given                                     */
    ECR_TERM_ON_WEIGHT,       /* opts[0], a float, is not 0                                    */
    ECR_TERM_ON_OBJECTIVE,    /* the objective is lm+contrastive                               */
} ecr_term_switch;

typedef struct ecr_term_opt {
    const char *flag;         /* "--ecr-weight"                                                */
    const char *key;          /* "ecr_weight": its name in run.json                            */
    ecr_term_kind kind;
    size_t offset;            /* of its field in ecr_train_opts                                */
    double lo, hi;            /* accepted range (FLOAT, INT)                                   */
    int zero_unset;           /* FLOAT: 0 means "not set" (left out of run.json)               */
    const char *arg;          /* the value's name in --help ("L"), NULL for a FLAG             */
    const char *help;         /* --help text, lines joined by '\n'; the default is added      */
} ecr_term_opt;

typedef struct ecr_term_info {
    const char *name;         /* "ecr": its key in log.jsonl, its part of a method name        */
    int method_rank;          /* > 0: a method; order among single-term methods (kd 1, feat 2,
                                 rkd 3, ecr 4, rel 5, con 6, orth 7, mres 8,
                                 mid 9); 0: not part of a method name
                                 (contrastive)                                                 */
    ecr_term_switch on;       /* what switches it on                                           */
    const char *needs;        /* NULL, or the name of a term that must be on as well: "orth"
                                 (on by default) is on only beside "ecr"                       */
    const ecr_term_opt *opts;
    int n_opts;
    const struct ecr_term_ops *ops; /* the objective's operations (internal: src/method/term.h) */
} ecr_term_info;

/* The i-th term (0-based), NULL past the last. Static. */
const ecr_term_info *ecr_train_term(int i);
/* The row named `name`, or NULL. Static. */
const ecr_term_info *ecr_train_term_find(const char *name);
/* 1 when options `o` switch the term on (and the term it needs, if any, is on too). */
int ecr_train_term_on(const ecr_term_info *t, const ecr_train_opts *o);
/* The method of a run: the '+'-joined names of its terms that are methods, in table order
 * ("ecr+kd"), or "none". */
void ecr_train_method_name(const ecr_train_opts *o, char *buf, size_t n);
/* Report order of a method name: 0 for "none", a single term's method_rank, 16 x (number
 * of terms) for combinations; -1 for a name that is not a method (a tag). */
int ecr_train_method_rank(const char *method);
/* Trains as described above. Progress on stderr unless quiet. */
ecr_status ecr_train(const ecr_train_opts *o);

/* ---- Language-model evaluation -------------------------------------------------------- */

typedef struct ecr_lm_stats {
    double loss_sum;          /* summed token cross-entropy (nats), incl. the closing EOT    */
    int64_t tokens;           /* target tokens                                               */
    int64_t bytes;            /* UTF-8 bytes of the texts                                    */
    int64_t texts;
} ecr_lm_stats;

typedef struct ecr_lm_eval {
    ecr_lm_stats overall;
    int n_langs;              /* = d->n_langs; per_lang[i] is language d->langs[i]           */
    ecr_lm_stats *per_lang;   /* owned; free with ecr_lm_eval_release                        */
    int64_t n_truncated;      /* texts longer than T-1 tokens (only their first T-1 tokens
                                 and a byte share in proportion are counted)                */
} ecr_lm_eval;

/* Mean loss, perplexity and bits per byte of a stats record (0 when empty). */
double ecr_lm_loss(const ecr_lm_stats *s);
double ecr_lm_ppl(const ecr_lm_stats *s);
double ecr_lm_bpb(const ecr_lm_stats *s);

/* Evaluates `m` on every text of `d` in file order, packed in batches of
 * tokens_per_batch slots with rows of seq_len (0: the model's max_seq_len). Deterministic.
 * Fills *out (release with ecr_lm_eval_release). Token ids must be < the model's vocab. */
ecr_status ecr_eval_lm(ecr_model *m, const ecr_data *d, int seq_len, int64_t tokens_per_batch,
                       int quiet, ecr_lm_eval *out);
void ecr_lm_eval_release(ecr_lm_eval *e);

/* ---- Generation ----------------------------------------------------------------------- */

typedef struct ecr_gen_opts {
    int max_tokens;           /* new tokens at most (default 200)                            */
    float temperature;        /* 0 = greedy (default 0.8)                                    */
    int top_k;                /* 0 = off (default 40)                                        */
    float top_p;              /* 1 = off (default 0.95)                                      */
    uint64_t seed;            /* default 1                                                   */
} ecr_gen_opts;

void ecr_gen_opts_default(ecr_gen_opts *o);

/* Called with each new token; return non-zero to stop. */
typedef int (*ecr_token_fn)(void *ctx, int32_t id);

/* Feeds `prompt` (n_prompt >= 1 ids, e.g. EOT then the prompt's tokens) through a KV cache
 * (ecr_model_prefill), then samples one token per ecr_model_step until `eot_id` (never
 * when it is negative), max_tokens or the model's max_seq_len. Calls on_token for every
 * sampled token except the final EOT. *n_out (may be NULL) = tokens generated. */
ecr_status ecr_generate(ecr_model *m, const int32_t *prompt, size_t n_prompt, int32_t eot_id,
                        const ecr_gen_opts *o, ecr_token_fn on_token, void *ctx, size_t *n_out);

/* Samples one id from logits[V] (modified in place) with the options' temperature, top-k and
 * top-p; `rng` is a 64-bit state advanced by the call. Temperature 0 = argmax (lowest id on
 * ties). */
int32_t ecr_sample_logits(float *logits, int V, const ecr_gen_opts *o, uint64_t *rng);

/* ------------------------------------------------------------------------------------
 * Embeddings (`ecr embed`, src/eval/embed.c).
 *
 * Per text: h = the pooled final-norm output (ecr_forward_out.pooled), or, through the
 * model's ECR projection P = ecr.proj.weight [D, d], u = P h / max(||P h||, 1e-12) (the
 * same arithmetic, in double, as the ECR loss). Texts are packed like ecr_eval_lm's batches
 * (file order, rows of seq_len; a text longer than seq_len - 1 tokens is embedded from its
 * first seq_len - 1 tokens); attention stays inside each text, so a text's embedding does
 * not depend on what it is packed with (up to fp32 rounding of the matrix products).
 * ---------------------------------------------------------------------------------- */

typedef struct ecr_embed_opts {
    int raw;                  /* 1: h even when the model has a projection (default 0)        */
    int seq_len;              /* T; 0 = the model's max_seq_len (default)                     */
    int64_t tokens_per_batch; /* slots per forward pass (default 1024; at least one row)      */
    int quiet;                /* no progress on stderr                                        */
    const ecr_comm *comm;     /* NULL: one process. Else every rank calls ecr_embed alike and
                                 runs the model on every size-th batch (batch k on rank
                                 k % size); the rows are summed so that every rank gets all of
                                 them, the same numbers as one process with the same threads  */
} ecr_embed_opts;

void ecr_embed_opts_default(ecr_embed_opts *o);

/* Embeds every text of `d` in file order: *out (malloc'd, caller frees with free()) holds
 * d->n_texts rows of *cols floats: u (cols = D, *projected = 1) when the model has a
 * projection and o->raw is 0, else h (cols = dim, *projected = 0). ECR_E_INVALID when the
 * data's vocabulary is larger than the model's or seq_len is out of range. Deterministic for
 * a given thread count. Progress (texts, texts/s) on stderr unless o->quiet. */
ecr_status ecr_embed(ecr_model *m, const ecr_data *d, const ecr_embed_opts *o, float **out,
                     int64_t *cols, int *projected);
/* Embeddings of raw texts: ecr_data_from_texts(tok, ...) then ecr_embed, so the rows are
 * those of ecr_prepare + ecr_embed on the same texts, bit for bit (with the same options and
 * threads). `tok` must be the model's tokenizer (its folder's tokenizer.json); a vocabulary
 * larger than the model's is ECR_E_INVALID. n = 0 gives 0 rows (*out still malloc'd).
 * Failures as those two functions': "text I: empty ..." and "text I: invalid UTF-8 ..."
 * name the text. With o->comm every rank must pass the same texts. */
ecr_status ecr_embed_texts(ecr_model *m, const ecr_tokenizer *tok, const char *const *texts,
                           const size_t *lens, size_t n, const ecr_embed_opts *o, float **out,
                           int64_t *cols, int *projected);
/* u[n, D] = P h / max(||P h||, 1e-12) for n rows h[n, dim] with the model's projection;
 * ECR_E_INVALID when the model has none (ecr_dim 0). Never used by generation. */
ecr_status ecr_model_project(ecr_model *m, const float *h, int64_t n, float *u);

/* ------------------------------------------------------------------------------------
 * Anchors (`ecr anchors`): spherical k-means over teacher embeddings (DESIGN "The method").
 *
 * Input rows t_i (N x D) are centred by their column mean mu and L2-normalised (a row
 * that is zero after centring stays zero: it has similarity 0 to every anchor, gets code
 * 0, adds nothing to any centroid and is never chosen as a seed). Per restart:
 *   - k-means++ seeding on the cosine distance 1 - <x, c>: the first centre is a uniform
 *     non-zero row, each next one a row drawn with probability proportional to its
 *     distance to the nearest centre so far (drawn exactly, by rejection from distances
 *     refreshed in blocks of centres, so the distances are one blocked matrix product);
 *   - `iters` Lloyd iterations: centroids = normalised sums of their rows; a cluster left
 *     empty is split from the largest: it takes that cluster's row least similar to its
 *     centroid (a split never lowers the objective); rows are then reassigned to the most
 *     similar centroid (lowest index on ties). A row whose best similarity beats a bound
 *     on all other centroids (Hamerly-style: the second-best similarity plus how far the
 *     centroids moved) keeps its centroid without the matrix product; the others are
 *     recomputed with sgemm in fixed row blocks. The iterations stop early once no row
 *     changes centroid (further iterations would repeat the same numbers).
 * The objective is the mean over all N rows of <x_i, a_{c_i}>; it never decreases across
 * iterations (up to float rounding). The restart with the highest final objective wins
 * (the lowest restart on ties). Restart r seeds its RNG with splitmix64 of (seed, r).
 * Results depend only on the data and the options: they are identical for any thread
 * count (every sum runs in a fixed order).
 *
 * anchors.safetensors: tensors "anchors" [K, D] F32 (unit rows), "codes" [N] U16,
 * "mean" [D] F32 (mu), with soft codes also "soft_idx" [N, M] U16 and "soft_sim" [N, M]
 * F32 (the M most similar anchors of each row, most similar first; soft_idx[i][0] ==
 * codes[i]). Metadata: "format" = "ecr-anchors-1", "k", "dim", "rows", "tau" (the ECR
 * temperature the anchors are meant for), "seed", "iters", "restarts", "objective" (final
 * mean cosine, %.17g), "source" (file name of the embeddings), "source_hash" (ecr_hash_hex
 * of the embeddings' float32 data bytes), "soft" (M, 0 = none).
 * ---------------------------------------------------------------------------------- */

#define ECR_ANCHORS_MAX_K 65535

typedef struct ecr_anchors_opts {
    int k;                    /* anchors K, 1..min(rows, 65535) (default 256)                */
    int iters;                /* Lloyd iterations per restart, >= 0 (default 25)              */
    int restarts;             /* >= 1 (default 3)                                             */
    uint64_t seed;            /* default 1                                                    */
    int soft;                 /* M > 0: also the top-M soft codes (M <= K); 0 = none          */
    float tau;                /* recorded in the file for the trainer (default 0.05; > 0)     */
    const char *source;       /* name for messages and the "source" metadata (NULL: "<emb>")  */
    int quiet;                /* no progress on stderr                                        */
    int no_prune;             /* for tests/benchmarks: recompute every row in every iteration */
    const float *init;        /* [k, dim] starting anchors instead of k-means++ (normalised;
                                 every row must be non-zero): one run, restarts ignored.
                                 NULL = k-means++ (default). Borrowed for the call.          */
    /* Called after seeding (iter 0) and after each iteration's assignment with the
     * objective of restart r (0-based); may be NULL. */
    void (*on_iter)(void *ctx, int restart, int iter, double objective);
    void *ctx;
} ecr_anchors_opts;

/* Anchors in memory, fitted or loaded. Every array is owned (free with ecr_anchors_free). */
typedef struct ecr_anchors {
    int k, dim;               /* K, D                                                         */
    int64_t rows;             /* N                                                            */
    float *anchors;           /* [K, D] unit rows                                             */
    uint16_t *codes;          /* [N], each < K                                                */
    float *mean;              /* [D] the column mean mu the rows were centred by              */
    int soft;                 /* M (0 = no soft codes)                                        */
    uint16_t *soft_idx;       /* [N, M] or NULL; each < K; soft_idx[i*M] == codes[i]          */
    float *soft_sim;          /* [N, M] or NULL; non-increasing along each row                */
    float tau;
    uint64_t seed;
    int iters, restarts;      /* the options it was fitted with                               */
    int iters_done;           /* iterations the chosen restart ran (< iters: converged, no row
                                 moved); -1 when loaded from a file                           */
    double objective;         /* final mean cosine of the rows to their anchor                */
    char *source;             /* owned, "" when unknown                                       */
    char source_hash[17];     /* ecr_hash_hex of the embeddings' float32 bytes                */
    char control[24];         /* "" for fitted anchors; "shuffled-codes" or "random-anchors"
                                 for an ablation control (ecr_anchors_control); metadata
                                 "control" in the file                                        */
} ecr_anchors;

void ecr_anchors_opts_default(ecr_anchors_opts *o);

/* Fits anchors to `emb` (rows x dim float32, row-major; read only, not kept). Fails with
 * ECR_E_INVALID "<source>: <reason>" when k > rows, k or the other options are out of
 * range, rows or dim is 0, or emb holds a NaN/inf (naming the row). Deterministic: the
 * same data and options give the same bytes whatever the thread count (ecr_set_threads).
 * Progress (objective per iteration) on stderr unless o->quiet. */
ecr_status ecr_anchors_fit(const float *emb, int64_t rows, int64_t dim,
                           const ecr_anchors_opts *o, ecr_anchors **out);
/* Writes `a` to `path` as anchors.safetensors (atomically). */
ecr_status ecr_anchors_save(const ecr_anchors *a, const char *path);
/* Reads and validates an anchors file: format, tensors present with the right dtypes and
 * consistent shapes (anchors [K, D], codes [N], mean [D], soft_idx/soft_sim [N, M] both or
 * neither), metadata k/dim/rows matching them, tau > 0, finite anchors, codes and soft
 * indices < K. ECR_E_INVALID "<path>: tensor 'codes': ..." on any mismatch. */
ecr_status ecr_anchors_load(const char *path, ecr_anchors **out);
void ecr_anchors_free(ecr_anchors *a);

/* Ablation controls: anchors that keep the file's shape but lose the teacher's information.
 *   ECR_CONTROL_SHUFFLE_CODES: the codes (and soft-code rows with them) are permuted across
 *     texts (Fisher-Yates with the seed): each text gets another text's code, so the codes
 *     no longer say anything about the text; the anchors are unchanged.
 *   ECR_CONTROL_RANDOM_ANCHORS: the anchors become random unit vectors (Gaussian rows,
 *     normalised, from the seed); the codes are kept, so texts the teacher grouped stay
 *     grouped, but the geometry between anchors (what ECR's targets Pi are built from) is
 *     gone. Soft codes are dropped (their similarities belong to the old anchors).
 * Both set a->control and a->seed, and set the objective to NaN (no longer defined).
 * ECR_E_INVALID for an unknown kind or an input that already is a control. */
typedef enum ecr_anchors_control_kind {
    ECR_CONTROL_SHUFFLE_CODES = 1,
    ECR_CONTROL_RANDOM_ANCHORS = 2,
} ecr_anchors_control_kind;
ecr_status ecr_anchors_control(ecr_anchors *a, ecr_anchors_control_kind kind, uint64_t seed);

/* ------------------------------------------------------------------------------------
 * Metrics (src/eval/metrics.c): embedding geometry, cross-lingual and task metrics, training
 * stability (DESIGN "Metrics"); `ecr eval` prints and writes them.
 *
 * Inputs: an embedding matrix X [n, d] (float32, row-major, one row per text; every value
 * must be finite, else ECR_E_INVALID naming the row and column) and per-text indices as in
 * ecr_data (lang, label, group; -1 = none). "Cosine" is the dot product of L2-normalised
 * rows (norms in double); a zero row stays zero, so its cosine with anything is 0.
 * Similarities are sgemm products of normalised rows in fixed blocks of query rows, one
 * block per thread (memory O(threads x 64 x n) floats, never n x n). Neighbours are ranked
 * by cosine, the lower index first on equal cosines. Every row's result is computed by one
 * thread in a fixed order and means are summed serially in row order, so all numbers are
 * identical for any thread count (ecr_set_threads). A metric that is not defined on the
 * given data (fewer than two labels, no English text, ...) comes out as NaN (JSON null in
 * `ecr eval`); ECR_E_INVALID is kept for bad arguments. Cost: the covariance metrics are
 * O(n d^2 + d^3) in double; the neighbour metrics O(n^2 d) in float (sgemm).
 * ---------------------------------------------------------------------------------- */

#define ECR_KNN_K 10          /* k of the k-NN overlap and of the label-transfer classifier */

/* Eigenvalues of the symmetric n x n matrix `a` (row-major, double; only the lower
 * triangle is read; destroyed) into w[n], ascending: Householder reduction to tridiagonal
 * form, then the implicit QL algorithm. ECR_E_RUNTIME if an eigenvalue needs more than 60
 * QL iterations (does not happen on finite input in practice). O(n^3). */
ecr_status ecr_sym_eigenvalues(double *a, int n, double *w);

/* Effective rank (RankMe) of X [n, d]: exp(-sum_k p_k log p_k), p_k = s_k / sum_j s_j,
 * over the singular values s_k > 0 of the column-centred matrix Xc = X - 1 mean^T. The s_k
 * are the square roots of the eigenvalues of the d x d matrix Xc^T Xc (formed in double;
 * eigenvalues below 0 from rounding count as 0), so the value lies in [1, min(n - 1, d)];
 * equal singular values give exactly their number. 0 if Xc is zero (n = 1, equal rows). */
ecr_status ecr_metric_effective_rank(const float *x, int64_t n, int d, double *out);
/* 2-D PCA of X [n, d] (d >= 2), for plots: xy [n, 2] (caller-allocated) receives each
 * row's coordinates on the top two principal axes of the column-centred X, and
 * explained[2] their shares of the total variance. Axis signs are fixed (each axis's
 * largest-magnitude loading is positive), so the result is deterministic. */
ecr_status ecr_metric_pca2(const float *x, int64_t n, int d, float *xy, double explained[2]);

/* Anisotropy of X [n, d]: the mean cosine over distinct pairs (i != j), computed in O(n d)
 * as (||sum_i xhat_i||^2 - m) / (m (m - 1)) over the m non-zero rows xhat (unit, in
 * double). Not centred. NaN when m < 2. */
ecr_status ecr_metric_anisotropy(const float *x, int64_t n, int d, double *out);

/* Linear CKA of X [n, dx] and Y [n, dy] (same texts in the same order): with both
 * column-centred, ||Xc^T Y||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), products in double.
 * In [0, 1]; 1 for Y = X Q s (Q orthogonal, s != 0). NaN if either centred matrix is 0. */
ecr_status ecr_metric_cka(const float *x, int dx, const float *y, int dy, int64_t n, double *out);

/* k nearest neighbours of every row of X [n, d] by cosine, itself excluded: nbr[i*k ..]
 * (int32, most similar first). Needs 1 <= k < n. */
ecr_status ecr_metric_knn(const float *x, int64_t n, int d, int k, int32_t *nbr);

/* k-NN overlap of two neighbour lists [n, k] of the same texts: mean over i of
 * |A(i) ∩ B(i)| / k. NaN when n == 0. */
double ecr_metric_knn_overlap(const int32_t *a, const int32_t *b, int64_t n, int k);

/* Silhouette by label with the cosine distance 1 - cos (clipped to [0, 2]), as
 * sklearn.metrics.silhouette_score(X, label, metric="cosine") over the texts with
 * label >= 0 (the others take no part): for text i of label l, a = mean distance to the
 * other texts of l, b = the smallest mean distance to the texts of another label,
 * s_i = (b - a) / max(a, b) (0 when l has one text or max(a, b) = 0); the score is the
 * mean of s_i. label[i] < n_labels. NaN unless 2 <= labels present <= texts - 1. */
ecr_status ecr_metric_silhouette(const float *x, int64_t n, int d, const int32_t *label,
                                 int n_labels, double *out);

/* Cross-lingual retrieval P@1 against English (lang index `en`). For each language
 * x != en, among the texts of en and of x that have a group: for each en text, is the
 * cosine-nearest x text one of its translations (same group)? and for each x text, is the
 * nearest en text? Only queries whose group has a text on the other side count. per_lang[x]
 * (n_langs entries; may be NULL) = the mean of the two directions' hit rates (NaN for en,
 * and for a language with no counting query in either direction); *mean = the mean over
 * the languages with a value (NaN if none). Chance is about 1 / (texts per language). */
ecr_status ecr_metric_retrieval_p1(const float *x, int64_t n, int d, const int32_t *lang,
                                   const int32_t *group, int n_langs, int en, double *per_lang,
                                   double *mean);

/* Label transfer: a k-NN classifier of `label` (cosine, k = min(k, training texts),
 * majority vote, ties to the lowest label index, as scikit-learn's KNeighborsClassifier
 * with uniform weights) fitted on the English texts (lang `en`, label >= 0) and tested on
 * each other language's texts with label >= 0. per_lang[x] (may be NULL) = accuracy on x
 * (NaN for en and for languages without test texts); *mean = mean over languages with a
 * value (NaN if none, or no English training text). */
ecr_status ecr_metric_label_transfer(const float *x, int64_t n, int d, const int32_t *lang,
                                     const int32_t *label, int n_langs, int n_labels, int en,
                                     int k, double *per_lang, double *mean);

/* Teacher codes of texts that were not part of the anchors' fit, exactly as the fit
 * assigns them: t_i = emb_i - a->mean (float), normalised (a zero row gets code 0),
 * codes[i] = argmax_k <t_i, anchor_k> (lowest k on ties). emb is [n, a->dim]. */
ecr_status ecr_metric_anchor_codes(const ecr_anchors *a, const float *emb, int64_t n,
                                   uint16_t *codes);

/* Anchor agreement: the share of rows of U [n, dim] whose cosine-nearest anchor among
 * anchors [k, dim] (unit rows, e.g. ecr_anchors.anchors) is codes[i] (codes < k).
 * Meant for u = P h / ||P h||, which lives in the anchors' space. NaN when n == 0. */
ecr_status ecr_metric_anchor_agreement(const float *u, int64_t n, int dim, const float *anchors,
                                       int k, const uint16_t *codes, double *out);

/* The teacher side of CKA and k-NN overlap, computed once for several students. */
typedef struct ecr_teacher_ref {
    const float *y;           /* [n, dim] teacher embeddings; borrowed, must outlive the ref */
    int64_t n;
    int dim;
    int32_t *knn;             /* [n, ECR_KNN_K] cosine neighbours (owned); NULL if n <= K     */
    double *mean;             /* [dim] column mean (owned)                                    */
    double gram_fro;          /* ||Yc^T Yc||_F of the centred matrix                          */
} ecr_teacher_ref;

/* Validates y (finite), computes its mean, centred Gram norm and neighbour lists (progress
 * line on stderr unless quiet). Release with ecr_teacher_ref_release (safe on a zeroed or
 * failed ref). */
ecr_status ecr_teacher_ref_init(ecr_teacher_ref *r, const float *y, int64_t n, int dim, int quiet);
void ecr_teacher_ref_release(ecr_teacher_ref *r);

/* Everything above for one embedding matrix (h or u), sharing work: one normalised copy,
 * one d x d covariance for the effective rank, one n x n blocked pass for silhouette and
 * the neighbour lists. */
typedef struct ecr_geometry_in {
    const float *x;           /* [n, d] embeddings                                           */
    int64_t n;
    int d;
    const int32_t *lang, *label, *group; /* [n] or NULL (then the metrics needing them: NaN) */
    int n_langs, n_labels;
    int en;                   /* index of English in the lang table; -1: no P@1 / transfer   */
    const ecr_teacher_ref *teacher; /* same n texts; NULL: no CKA / k-NN overlap              */
    const float *anchors;     /* [k, d] unit rows and codes [n]; NULL: no anchor agreement   */
    int k;
    const uint16_t *codes;
    const char *name;         /* for progress lines ("h", "u"; NULL = "x")                   */
    int quiet;                /* no progress on stderr                                       */
} ecr_geometry_in;

typedef struct ecr_geometry {
    double effective_rank, anisotropy, silhouette;
    double cka, knn_overlap;  /* NaN without a teacher                                       */
    double anchor_agreement;  /* NaN without anchors                                         */
    double p1, transfer;      /* means over the languages (see the functions above)          */
    int n_langs;
    double *p1_lang;          /* [n_langs] owned (NaN entries where undefined)               */
    double *transfer_lang;    /* [n_langs] owned                                             */
    double seconds;           /* wall time of the computation                                */
} ecr_geometry;

ecr_status ecr_geometry_compute(const ecr_geometry_in *in, ecr_geometry *out);
void ecr_geometry_release(ecr_geometry *g);

/* Language-model metrics and embeddings in one pass, for `ecr eval`: the batches, checks
 * and sums of ecr_eval_lm (the same *lm, bit for bit; release with ecr_lm_eval_release)
 * plus each text's pooled h from the same forward into h [d->n_texts, dim] (file order;
 * the h of ecr_embed with raw = 1 and the same seq_len and tokens_per_batch); h may be NULL,
 * which is ecr_eval_lm itself (one implementation, in src/eval/lm_eval.c). Progress on stderr
 * unless quiet. With a communicator (NULL: one process), every rank calls it alike and runs
 * the model on every size-th batch; the texts' losses and rows are summed over the ranks and
 * the statistics added up in the one-process order, so every rank gets *lm and h exactly
 * as one process with the same threads would. */
ecr_status ecr_eval_lm_embed(ecr_model *m, const ecr_data *d, int seq_len,
                             int64_t tokens_per_batch, int quiet, ecr_lm_eval *lm, float *h,
                             const ecr_comm *comm);

/* ---- Training stability (from log.jsonl) ---------------------------------------------
 * Over the step records in file order (objects with "loss"; each also needs "step",
 * "grad_norm" and "clipped"; steps must increase; validation records are skipped):
 *   spike at step t: loss_t > mean + 3 std of the losses of the previous 50 step records
 *     (population std; the first 50 steps cannot spike); spikes_per_1k = 1000 spikes / steps
 *   grad_norm_cv = std / mean of grad_norm over all steps (population std; NaN if mean 0)
 *   clipped_share = clipped steps / steps.                                                 */
#define ECR_SPIKE_WINDOW 50
#define ECR_SPIKE_SIGMAS 3.0

typedef struct ecr_stability {
    int64_t steps;            /* step records                                                */
    int64_t first_step, last_step;
    int64_t spikes;
    double spikes_per_1k;
    double grad_norm_mean, grad_norm_cv;
    int64_t clipped;
    double clipped_share;
    double final_loss;        /* loss of the last step record                               */
    double final_val_loss;    /* "val_loss" of the last validation record (NaN if none)     */
} ecr_stability;

/* From arrays of n >= 1 steps (clipped may be NULL: none clipped). final_val_loss = NaN. */
ecr_status ecr_stability_compute(const double *loss, const double *grad_norm,
                                 const uint8_t *clipped, int64_t n, ecr_stability *out);
/* Reads a training log; ECR_E_INVALID "file:line: reason" for a malformed line, a missing
 * field, a non-increasing step or a log without step records; ECR_E_IO if unreadable. */
ecr_status ecr_stability_read_log(const char *path, ecr_stability *out);

/* ------------------------------------------------------------------------------------
 * The training log, MODEL_DIR/log.jsonl (src/io/runlog.c): one JSON object per line, a step
 * record per optimizer step {"step", "loss", the objective's terms, "lr", "grad_norm",
 * "clipped", "tokens", "tokens_per_s", "elapsed_s", "precision"} and a validation record
 * per validation pass {"step", "val_loss", "val_bpb", "val_tokens", "val_eff_rank",
 * "val_eff_rank_u", "val_p1", "val_p1_u", "val_transfer", "val_transfer_u"} (a measure
 * that was not taken is left out; see ecr_train). Every reader (resume, ecr eval --log, ecr report) reads it through
 * ecr_log_next, with one rule: blank lines are skipped; a last line without its newline
 * is a write cut short by a kill and is skipped, even if it parses (ecr_log_torn says
 * where); any other line that is not a JSON object is ECR_E_INVALID "path:LINE: not a
 * JSON object", as are a line holding a NUL byte, a line longer than 64 MiB and a "step"
 * that is a number but not an integer from 0 to 2^53. Lines are read one at a time
 * (memory: the longest line).
 * ---------------------------------------------------------------------------------- */

typedef struct ecr_log_record {
    long line;                /* 1-based line number in the file                             */
    const char *text;         /* the line without its newline, NUL-terminated; borrowed until
                                 the next ecr_log_next                                       */
    size_t len;
    int is_step;              /* has a number "loss" (a step record)                         */
    int is_valid;             /* has a number "val_loss" (a validation record)               */
    double step, loss, grad_norm, elapsed_s; /* NaN when absent or not a number; likewise:  */
    double val_loss, val_bpb, val_eff_rank, val_eff_rank_u, val_p1, val_p1_u;
    int clipped;              /* 1 true, 0 false, -1 absent or not a boolean                 */
} ecr_log_record;

typedef struct ecr_log_reader ecr_log_reader;
/* Opens `path` (ECR_E_IO naming it when it cannot be opened). */
ecr_status ecr_log_open(const char *path, ecr_log_reader **out);
/* The next record into *rec with *more = 1, or *more = 0 at the end. */
ecr_status ecr_log_next(ecr_log_reader *r, ecr_log_record *rec, int *more);
/* The line number of a last line cut short (skipped), 0 when the file ended cleanly; known
 * once ecr_log_next has said *more = 0. */
long ecr_log_torn(const ecr_log_reader *r);
void ecr_log_close(ecr_log_reader *r);

/* ------------------------------------------------------------------------------------
 * Utilities
 * ---------------------------------------------------------------------------------- */

/* splitmix64's output for state x: a well-mixed 64-bit hash of x (the generator of the
 * library's random streams, src/base/rng.h, draws these). */
uint64_t ecr_hash_u64(uint64_t x);
/* FNV-1a 64-bit hash of a buffer, as 16 hex digits in `out` (17 bytes). */
void ecr_hash_hex(const void *buf, size_t len, char out[17]);
/* Monotonic seconds. */
double ecr_now(void);
/* free() for memory the library handed out with malloc (ecr_embed's rows, ...), for callers
 * in other languages whose allocator may not be the library's C runtime's. */
void ecr_free(void *p);
/* sizeof the public struct named `type` ("ecr_config", "ecr_embed_opts", "ecr_gen_opts",
 * "ecr_lm_stats", "ecr_lm_eval"), 0 for another name: bindings that mirror these structs
 * (python/ecr) check their layout against it when they load. */
size_t ecr_struct_size(const char *type);

#ifdef __cplusplus
}
#endif
#endif /* ECR_H */
