/* cmd_eval.c — `ecr eval`: metrics of a model folder on prepared data, and the stability of
 * a training log (definitions: ecr.h "Metrics", DESIGN.md "Metrics").
 *
 * JSON written by --json (numbers are null when a metric is not computed or not defined on
 * the data; the "notes" say why):
 *   {"model": DIR, "data": FILE, "texts": N (texts evaluated, after --max-texts),
 *    "precision": "fp32" or "bf16" (of the model's products, as --precision resolved),
 *    "lm": {"overall": STATS, "per_lang": {"en": STATS, ...}, "truncated_texts": N, "seq_len": T},
 *    "geometry": {
 *      "texts": N, "english": "en" (the language P@1 and transfer pair with) or null,
 *      "teacher": {"file": EMB.npy, "dim": D} or null,
 *      "anchors": {"file": A.safetensors, "k": K, "dim": D,
 *                  "codes": "stored" | "computed" | null} or null,
 *      "notes": ["...", ...],
 *      "h": GEOM, "u": GEOM or null (model without an ECR projection)},
 *    "pca": PCA (2-D map of u, or of h without a projection; absent below 2 texts),
 *    "stability": STAB (with --log)}
 *   PCA   = {"explained": [share of variance on PC1, on PC2], "space": "u" | "h",
 *            "x": [...], "y": [...], "lang": [index into "langs"], "label": [index into
 *            "labels"], "texts": how many (about 2,000, a hash-based sample of the N
 *            texts; all when N <= 2000; the axes are fitted on all N), "langs": [...],
 *            "labels": [...]}
 *   STATS = {"loss": mean nats per target token, "ppl": exp(loss),
 *            "bpb": summed nats / ln 2 / UTF-8 bytes, "tokens", "bytes", "texts"}
 *   GEOM  = {"dim", "effective_rank", "anisotropy", "silhouette" (cosine, by label),
 *            "p1": {"mean", "per_lang": {"de": P@1 en<->de, ...}},
 *            "label_transfer": {"mean", "per_lang": {"de": accuracy, ...}}
 *            (per_lang lists the languages other than en that have a value; mean is
 *            their average),
 *            "cka" (linear, with the teacher), "knn_overlap10" (with the teacher's
 *            neighbourhoods), "anchor_agreement" (u only), "seconds"}
 *   STAB  = {"log": FILE, "steps", "first_step", "last_step", "spikes",
 *            "spikes_per_1k_steps", "grad_norm_mean", "grad_norm_cv", "clipped_steps",
 *            "clipped_share", "final_loss", "final_val_loss"}
 * With only --log, the JSON holds just "stability". Teacher codes for anchor agreement: the
 * anchors file normally holds the codes of the TRAINING texts, while eval runs on held-out
 * texts; so with --teacher-emb (of the anchors' dim) the codes of the evaluated texts are
 * computed from the teacher rows and the anchors (centred by the anchors' mean, normalised,
 * most similar anchor: "computed"), unless the teacher file is the one the anchors were
 * fitted on (same source_hash), whose stored codes are used ("stored"). Without a teacher,
 * the stored codes are used when their count equals the data's texts; otherwise agreement
 * is skipped with a note. */
#include "cli.h"

#include <cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char *usage =
    "usage: ecr eval --model MODEL_DIR --data DATA.safetensors [--teacher-emb EMB.npy]\n"
    "                [--anchors ANCHORS.safetensors] [--json OUT.json] [--max-texts N]\n"
    "       ecr eval --log MODEL_DIR/log.jsonl [--json OUT.json]\n"
    "\n"
    "Language-model metrics of the model on the texts of the prepared data, per language and\n"
    "overall: mean token loss (nats, including each text's closing end-of-text token),\n"
    "perplexity and bits per byte. Then the geometry of the text embeddings h (pooled hidden\n"
    "state) and, when the model has an ECR projection, u = P h / ||P h||: effective rank,\n"
    "anisotropy (mean pairwise cosine), silhouette by label (cosine), cross-lingual P@1\n"
    "against English (per language, both directions) and label transfer (10-NN fitted on\n"
    "English, tested on each other language); with --teacher-emb also linear CKA and k-NN\n"
    "overlap@10 with the teacher; with --anchors (and a projection) the anchor agreement of u.\n"
    "With --log, the training stability of a log: loss spikes per 1,000 steps (loss above the\n"
    "mean + 3 std of the previous 50 steps), coefficient of variation of the gradient norm,\n"
    "share of clipped steps. Tables go to stdout; --json writes the numbers. Under\n"
    "`mpirun -np N` the forward passes are shared among the processes (the geometry is\n"
    "computed by each) and the first one prints and writes: the same numbers as one process.\n"
    "\n"
    "  --model DIR            model folder\n"
    "  --data FILE            prepared data (ecr prepare) with the model's tokenizer\n"
    "  --teacher-emb FILE     teacher embeddings .npy, one row per text of --data (all of them,\n"
    "                         even with --max-texts)\n"
    "  --anchors FILE         anchors .safetensors (ecr anchors) in the projection's space;\n"
    "                         their stored codes are usually for the training texts, so with\n"
    "                         --teacher-emb the evaluated texts' codes are computed from it\n"
    "  --max-texts N          evaluate only the first N texts (default: all)\n"
    "  --log FILE             training log (log.jsonl) for the stability metrics; alone or\n"
    "                         with --model/--data\n"
    "  --json FILE            also write the metrics as JSON: {\"model\", \"data\", \"texts\",\n"
    "                         \"lm\", \"geometry\": {\"h\": {...}, \"u\": {...}, \"teacher\",\n"
    "                         \"anchors\", \"notes\"}, \"stability\"}; the key list is in\n"
    "                         cli/cmd_eval.c; null = not computed or not defined\n"
    "  --seq-len T            row length (default: the model's max_seq_len); longer texts are\n"
    "                         truncated\n"
    "  --tokens-per-batch N   token slots per forward pass (default 4096)\n"
    "  --threads N            threads (default: all cores)\n"
    CLI_PRECISION_HELP
    "  --quiet                no progress on stderr\n"
    "\n"
    "exit status: 0 success, 1 runtime failure, 2 bad usage or bad input (malformed files,\n"
    "a teacher whose rows are not the data's texts, anchors of another dimension)\n";

/* ---- helpers ------------------------------------------------------------------------------ */

static void add_num(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

/* "%*.*f" or a dash for NaN. */
static void print_num(int width, int prec, double v) {
    if (isfinite(v)) printf(" %*.*f", width, prec, v);
    else printf(" %*s", width, "-");
}

static ecr_status write_json(const char *path, cJSON *root) {
    char *text = cJSON_Print(root);
    if (!text) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    ecr_atomic_file af;
    ecr_status st = ecr_atomic_open(&af, path);
    if (!st) {
        fputs(text, af.fp);
        fputc('\n', af.fp);
        st = ecr_atomic_commit(&af);
    }
    free(text);
    return st;
}

/* The first n texts of d as a view sharing d's arrays (never freed itself). */
static ecr_data data_head(const ecr_data *d, size_t n) {
    ecr_data v = *d;
    if (n > 0 && n < d->n_texts) {
        v.n_texts = n;
        v.n_tokens = (size_t)d->offsets[n];
    }
    return v;
}

/* ---- language model ------------------------------------------------------------------------ */

static cJSON *stats_json(const ecr_lm_stats *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "loss", ecr_lm_loss(s));
    cJSON_AddNumberToObject(j, "ppl", ecr_lm_ppl(s));
    cJSON_AddNumberToObject(j, "bpb", ecr_lm_bpb(s));
    cJSON_AddNumberToObject(j, "tokens", (double)s->tokens);
    cJSON_AddNumberToObject(j, "bytes", (double)s->bytes);
    cJSON_AddNumberToObject(j, "texts", (double)s->texts);
    return j;
}

static void table_row(const char *name, const ecr_lm_stats *s) {
    printf("%-10s %8lld %10lld %11lld %8.4f %10.2f %9.4f\n", name, (long long)s->texts,
           (long long)s->tokens, (long long)s->bytes, ecr_lm_loss(s), ecr_lm_ppl(s), ecr_lm_bpb(s));
}

/* The "lm" section: evaluates (keeping each text's pooled h [n_texts, dim] from the same
 * forward), prints the table, returns the JSON object. */
static ecr_status lm_section(ecr_model *m, const ecr_data *d, int seq_len, int64_t tpb, int quiet,
                             float *h, cJSON **out) {
    ecr_lm_eval ev;
    ecr_status st = ecr_eval_lm_embed(m, d, seq_len, tpb, quiet, &ev, h, cli_comm());
    if (st) return st;
    int T = seq_len > 0 ? seq_len : ecr_model_config(m)->max_seq_len;
    printf("language model (%zu texts, rows of %d tokens)\n", d->n_texts, T);
    printf("%-10s %8s %10s %11s %8s %10s %9s\n", "lang", "texts", "tokens", "bytes", "loss", "ppl",
           "bits/byte");
    cJSON *lm = cJSON_CreateObject(), *per = cJSON_CreateObject();
    for (int i = 0; i < ev.n_langs; i++) {
        if (ev.per_lang[i].texts == 0) continue;
        table_row(d->langs[i], &ev.per_lang[i]);
        cJSON_AddItemToObject(per, d->langs[i], stats_json(&ev.per_lang[i]));
    }
    table_row("all", &ev.overall);
    if (ev.n_truncated > 0)
        printf("(%lld texts longer than %d tokens were truncated; their bytes are counted in "
               "proportion)\n", (long long)ev.n_truncated, T - 1);
    cJSON_AddItemToObject(lm, "overall", stats_json(&ev.overall));
    cJSON_AddItemToObject(lm, "per_lang", per);
    cJSON_AddNumberToObject(lm, "truncated_texts", (double)ev.n_truncated);
    cJSON_AddNumberToObject(lm, "seq_len", T);
    ecr_lm_eval_release(&ev);
    *out = lm;
    return ECR_OK;
}

/* ---- geometry ------------------------------------------------------------------------------- */

typedef struct geo_job {
    const char *data_path, *teacher_path, *anchors_path;
    int seq_len;
    int64_t tpb;
    int quiet;
    /* filled while preparing */
    float *teacher;           /* [n_all, D] (owned)                                           */
    int64_t t_rows, t_cols;
    ecr_anchors *anchors;     /* owned                                                       */
    uint16_t *codes;          /* [n] codes of the evaluated texts (owned), or NULL            */
    const char *codes_kind;   /* "stored" / "computed" / NULL                                 */
    cJSON *notes;
} geo_job;

static void note(geo_job *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(geo_job *g, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cJSON_AddItemToArray(g->notes, cJSON_CreateString(buf));
}

/* Reads --teacher-emb: one row per text of the whole data file. */
static ecr_status load_teacher(geo_job *g, const ecr_data *full) {
    int64_t shape[ECR_MAX_DIMS];
    int ndim = 0;
    ecr_status st = ecr_npy_info(g->teacher_path, NULL, 0, NULL, &ndim, shape);
    if (!st && (uint64_t)shape[0] != (uint64_t)full->n_texts)
        st = ecr_fail(ECR_E_INVALID, "%s: %lld rows, but %s holds %zu texts (one teacher row per text "
                      "expected)", g->teacher_path, (long long)shape[0], g->data_path, full->n_texts);
    if (!st) st = ecr_npy_read(g->teacher_path, &g->teacher, &g->t_rows, &g->t_cols);
    return st;
}

/* Loads --anchors and decides where the codes of the n evaluated texts come from. */
static ecr_status load_anchors(geo_job *g, const ecr_data *full, size_t n, const ecr_config *cfg) {
    ecr_status st = ecr_anchors_load(g->anchors_path, &g->anchors);
    if (st) return st;
    ecr_anchors *a = g->anchors;
    if (cfg->ecr_dim <= 0) {
        note(g, "anchor agreement skipped: the model has no ECR projection (u)");
        return ECR_OK;
    }
    if (a->dim != cfg->ecr_dim)
        return ecr_fail(ECR_E_INVALID, "%s: anchors of %d dims, but the model's ECR projection has %d",
                        g->anchors_path, a->dim, cfg->ecr_dim);
    g->codes = malloc((n + 1) * sizeof *g->codes);
    if (!g->codes) return ecr_fail(ECR_E_NOMEM, "eval: out of memory");
    int teacher_ok = g->teacher && g->t_cols == a->dim;
    if (g->teacher && !teacher_ok)
        note(g, "the teacher has %lld dims, the anchors %d: teacher codes cannot be computed",
             (long long)g->t_cols, a->dim);
    char hash[17] = "";
    if (teacher_ok)
        ecr_hash_hex(g->teacher, (size_t)g->t_rows * (size_t)g->t_cols * sizeof(float), hash);
    if (teacher_ok && !strcmp(hash, a->source_hash) && a->rows == g->t_rows) {
        memcpy(g->codes, a->codes, n * sizeof *g->codes);
        g->codes_kind = "stored";
        note(g, "anchor codes: stored in %s (fitted on the teacher file itself)", g->anchors_path);
    } else if (teacher_ok) {
        st = ecr_metric_anchor_codes(a, g->teacher, (int64_t)n, g->codes);
        g->codes_kind = "computed";
        note(g, "anchor codes: computed from the teacher rows and the anchors (centred by their mean, "
                "most similar anchor)");
    } else if ((uint64_t)a->rows == (uint64_t)full->n_texts) {
        memcpy(g->codes, a->codes, n * sizeof *g->codes);
        g->codes_kind = "stored";
        note(g, "anchor codes: stored in %s, assumed to belong to %s (same number of texts; pass "
                "--teacher-emb to compute them)", g->anchors_path, g->data_path);
    } else {
        free(g->codes);
        g->codes = NULL;
        note(g, "anchor agreement skipped: %s holds codes for %lld texts, %s has %zu, and no "
                "--teacher-emb of %d dims to compute them", g->anchors_path, (long long)a->rows,
             g->data_path, full->n_texts, a->dim);
    }
    return st;
}

static cJSON *per_lang_json(const ecr_data *d, const double *v, double mean) {
    cJSON *o = cJSON_CreateObject(), *per = cJSON_CreateObject();
    add_num(o, "mean", mean);
    for (int l = 0; l < d->n_langs; l++)
        if (isfinite(v[l])) add_num(per, d->langs[l], v[l]);
    cJSON_AddItemToObject(o, "per_lang", per);
    return o;
}

static cJSON *geom_json(const ecr_data *d, int dim, const ecr_geometry *g) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "dim", dim);
    add_num(o, "effective_rank", g->effective_rank);
    add_num(o, "anisotropy", g->anisotropy);
    add_num(o, "silhouette", g->silhouette);
    cJSON_AddItemToObject(o, "p1", per_lang_json(d, g->p1_lang, g->p1));
    cJSON_AddItemToObject(o, "label_transfer", per_lang_json(d, g->transfer_lang, g->transfer));
    add_num(o, "cka", g->cka);
    add_num(o, "knn_overlap10", g->knn_overlap);
    add_num(o, "anchor_agreement", g->anchor_agreement);
    add_num(o, "seconds", g->seconds);
    return o;
}

static void geom_row(const char *name, double h, const double *u, int width, int prec) {
    printf("%-24s", name);
    print_num(width, prec, h);
    if (u) print_num(width, prec, *u);
    printf("\n");
}

static void geom_table(const ecr_data *d, size_t n, int dh, const ecr_geometry *h, int du,
                       const ecr_geometry *u, const geo_job *g) {
    printf("\ngeometry (%zu texts; h: %d dims", n, dh);
    if (u) printf(", u: %d dims", du);
    if (g->teacher) printf("; teacher: %lld dims", (long long)g->t_cols);
    if (g->anchors) printf("; %d anchors", g->anchors->k);
    printf(")\n%-24s %10s", "metric", "h");
    if (u) printf(" %10s", "u");
    printf("\n");
#define ROW(label, field, prec) geom_row(label, h->field, u ? &u->field : NULL, 10, prec)
    ROW("effective rank", effective_rank, 3);
    ROW("anisotropy", anisotropy, 4);
    ROW("silhouette (label)", silhouette, 4);
    ROW("P@1 en<->x (mean)", p1, 4);
    ROW("label transfer (mean)", transfer, 4);
    ROW("CKA with teacher", cka, 4);
    ROW("k-NN overlap@10", knn_overlap, 4);
    ROW("anchor agreement", anchor_agreement, 4);
#undef ROW
    int any = 0;
    for (int l = 0; l < d->n_langs; l++) any |= isfinite(h->p1_lang[l]) || isfinite(h->transfer_lang[l]);
    if (any) {
        printf("\n%-10s %10s", "lang", "P@1 h");
        if (u) printf(" %10s", "P@1 u");
        printf(" %10s", "transfer h");
        if (u) printf(" %10s", "transfer u");
        printf("\n");
        for (int l = 0; l < d->n_langs; l++) {
            if (!isfinite(h->p1_lang[l]) && !isfinite(h->transfer_lang[l])) continue;
            printf("%-10s", d->langs[l]);
            print_num(10, 4, h->p1_lang[l]);
            if (u) print_num(10, 4, u->p1_lang[l]);
            print_num(10, 4, h->transfer_lang[l]);
            if (u) print_num(10, 4, u->transfer_lang[l]);
            printf("\n");
        }
    }
    for (int i = 0; i < cJSON_GetArraySize(g->notes); i++)
        printf("note: %s\n", cJSON_GetArrayItem(g->notes, i)->valuestring);
}

/* Reads --teacher-emb and --anchors (before the long passes, so bad input fails fast). */
static ecr_status geometry_inputs(ecr_model *m, const ecr_data *full, const ecr_data *d, geo_job *g) {
    ecr_status st = ECR_OK;
    if (g->teacher_path) st = load_teacher(g, full);
    if (!st && g->anchors_path) st = load_anchors(g, full, d->n_texts, ecr_model_config(m));
    return st;
}

/* The "pca" object: 2-D PCA of x [n, dim] (u, or h without a projection) fitted on all n
 * texts, with the coordinates, language and label of about 2,000 of them (all when
 * n <= 2000; else the texts whose hashed index falls below 2000 / n, so that no pattern
 * in the file order, such as one language after the other, thins a language out) for ecr
 * report's maps. NULL with *st set on failure. */
static cJSON *pca_json(const ecr_data *d, const float *x, int dim, const char *space, ecr_status *st) {
    size_t n = d->n_texts;
    float *xy = malloc((2 * n + 1) * sizeof *xy);
    double ex[2];
    *st = xy ? ecr_metric_pca2(x, (int64_t)n, dim, xy, ex) : ecr_fail(ECR_E_NOMEM, "eval: out of memory");
    if (*st) {
        free(xy);
        return NULL;
    }
    cJSON *o = cJSON_CreateObject(), *e = cJSON_AddArrayToObject(o, "explained");
    cJSON_AddStringToObject(o, "space", space);
    for (int c = 0; c < 2; c++) cJSON_AddItemToArray(e, cJSON_CreateNumber(round(ex[c] * 1e6) / 1e6));
    cJSON *px = cJSON_AddArrayToObject(o, "x"), *py = cJSON_AddArrayToObject(o, "y");
    cJSON *pl = cJSON_AddArrayToObject(o, "lang"), *pb = cJSON_AddArrayToObject(o, "label");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (n > 2000 && ecr_hash_u64(i) % n >= 2000) continue;
        k++;
        cJSON_AddItemToArray(px, cJSON_CreateNumber(round(xy[2 * i] * 1e4) / 1e4));
        cJSON_AddItemToArray(py, cJSON_CreateNumber(round(xy[2 * i + 1] * 1e4) / 1e4));
        cJSON_AddItemToArray(pl, cJSON_CreateNumber(d->lang[i]));
        cJSON_AddItemToArray(pb, cJSON_CreateNumber(d->label[i]));
    }
    cJSON_AddNumberToObject(o, "texts", (double)k);
    cJSON_AddItemToObject(o, "langs", cJSON_CreateStringArray((const char *const *)d->langs, d->n_langs));
    cJSON_AddItemToObject(o, "labels", cJSON_CreateStringArray((const char *const *)d->labels, d->n_labels));
    free(xy);
    return o;
}

/* From h [n, dim] of the texts of `d` (and u = P h with a projection): both geometries. */
static ecr_status geometry_section(ecr_model *m, const ecr_data *d, const float *h, geo_job *g,
                                   cJSON **out, cJSON **pca) {
    const ecr_config *cfg = ecr_model_config(m);
    size_t n = d->n_texts;
    ecr_status st = ECR_OK;
    int en = -1;
    for (int l = 0; l < d->n_langs; l++)
        if (!strcmp(d->langs[l], "en")) en = l;
    if (en < 0) note(g, "no language \"en\" in %s: P@1 and label transfer skipped", g->data_path);

    float *u = NULL;
    int D = cfg->ecr_dim;
    if (!st && D > 0) {
        u = malloc((n * (size_t)D + 1) * sizeof *u);
        st = u ? ecr_model_project(m, h, (int64_t)n, u) : ecr_fail(ECR_E_NOMEM, "eval: out of memory");
    }
    ecr_teacher_ref tref;
    memset(&tref, 0, sizeof tref);
    if (!st && g->teacher) st = ecr_teacher_ref_init(&tref, g->teacher, (int64_t)n, (int)g->t_cols, g->quiet);

    ecr_geometry gh, gu;
    memset(&gh, 0, sizeof gh);
    memset(&gu, 0, sizeof gu);
    ecr_geometry_in in;
    memset(&in, 0, sizeof in);
    in.n = (int64_t)n;
    in.lang = d->lang;
    in.label = d->label;
    in.group = d->group;
    in.n_langs = d->n_langs;
    in.n_labels = d->n_labels;
    in.en = en;
    in.teacher = g->teacher ? &tref : NULL;
    in.quiet = g->quiet;
    if (!st) {
        in.x = h;
        in.d = cfg->dim;
        in.name = "h";
        st = ecr_geometry_compute(&in, &gh);
    }
    if (!st && u) {
        in.x = u;
        in.d = D;
        in.name = "u";
        if (g->codes) {
            in.anchors = g->anchors->anchors;
            in.k = g->anchors->k;
            in.codes = g->codes;
        }
        st = ecr_geometry_compute(&in, &gu);
    }
    if (!st) {
        geom_table(d, n, cfg->dim, &gh, D, u ? &gu : NULL, g);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "texts", (double)n);
        if (en >= 0) cJSON_AddStringToObject(o, "english", "en");
        else cJSON_AddNullToObject(o, "english");
        if (g->teacher) {
            cJSON *t = cJSON_AddObjectToObject(o, "teacher");
            cJSON_AddStringToObject(t, "file", g->teacher_path);
            cJSON_AddNumberToObject(t, "dim", (double)g->t_cols);
        } else {
            cJSON_AddNullToObject(o, "teacher");
        }
        if (g->anchors) {
            cJSON *a = cJSON_AddObjectToObject(o, "anchors");
            cJSON_AddStringToObject(a, "file", g->anchors_path);
            cJSON_AddNumberToObject(a, "k", g->anchors->k);
            cJSON_AddNumberToObject(a, "dim", g->anchors->dim);
            if (g->codes_kind) cJSON_AddStringToObject(a, "codes", g->codes_kind);
            else cJSON_AddNullToObject(a, "codes");
        } else {
            cJSON_AddNullToObject(o, "anchors");
        }
        cJSON_AddItemToObject(o, "notes", cJSON_Duplicate(g->notes, 1));
        cJSON_AddItemToObject(o, "h", geom_json(d, cfg->dim, &gh));
        if (u) cJSON_AddItemToObject(o, "u", geom_json(d, D, &gu));
        else cJSON_AddNullToObject(o, "u");
        *out = o;
        if (n >= 2) *pca = u ? pca_json(d, u, D, "u", &st) : pca_json(d, h, cfg->dim, "h", &st);
    }
    ecr_geometry_release(&gh);
    ecr_geometry_release(&gu);
    ecr_teacher_ref_release(&tref);
    free(u);
    return st;
}

/* ---- stability ------------------------------------------------------------------------------ */

static ecr_status stability_section(const char *path, cJSON **out) {
    ecr_stability s;
    ecr_status st = ecr_stability_read_log(path, &s);
    if (st) return st;
    printf("\ntraining stability (%s: %lld steps, %lld..%lld)\n", path, (long long)s.steps,
           (long long)s.first_step, (long long)s.last_step);
    printf("%-16s %10lld  (%.2f per 1,000 steps; loss > mean + %g std of the previous %d steps)\n",
           "loss spikes", (long long)s.spikes, s.spikes_per_1k, ECR_SPIKE_SIGMAS, ECR_SPIKE_WINDOW);
    printf("%-16s", "grad-norm CV");
    print_num(10, 4, s.grad_norm_cv);
    printf("  (mean %.4g)\n", s.grad_norm_mean);
    printf("%-16s %10lld  (%.2f%% of steps)\n", "clipped steps", (long long)s.clipped, 100.0 * s.clipped_share);
    printf("%-16s %10.4f", "final loss", s.final_loss);
    if (isfinite(s.final_val_loss)) printf("  (validation %.4f)", s.final_val_loss);
    printf("\n");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "log", path);
    cJSON_AddNumberToObject(o, "steps", (double)s.steps);
    cJSON_AddNumberToObject(o, "first_step", (double)s.first_step);
    cJSON_AddNumberToObject(o, "last_step", (double)s.last_step);
    cJSON_AddNumberToObject(o, "spikes", (double)s.spikes);
    add_num(o, "spikes_per_1k_steps", s.spikes_per_1k);
    add_num(o, "grad_norm_mean", s.grad_norm_mean);
    add_num(o, "grad_norm_cv", s.grad_norm_cv);
    cJSON_AddNumberToObject(o, "clipped_steps", (double)s.clipped);
    add_num(o, "clipped_share", s.clipped_share);
    add_num(o, "final_loss", s.final_loss);
    add_num(o, "final_val_loss", s.final_val_loss);
    *out = o;
    return ECR_OK;
}

/* ---- the command ----------------------------------------------------------------------------- */

int cmd_eval(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "ecr eval", argc, argv, usage);
    if (a.help) { cli_args_free(&a); return 0; }
    const char *log = cli_str(&a, "--log", NULL);
    const char *dir = log ? cli_str(&a, "--model", NULL) : cli_require(&a, "--model");
    const char *data = log ? cli_str(&a, "--data", NULL) : cli_require(&a, "--data");
    const char *json = cli_str(&a, "--json", NULL);
    geo_job g;
    memset(&g, 0, sizeof g);
    g.teacher_path = cli_str(&a, "--teacher-emb", NULL);
    g.anchors_path = cli_str(&a, "--anchors", NULL);
    int64_t max_texts = cli_int(&a, "--max-texts", 0, 1, 1LL << 40);
    g.seq_len = (int)cli_int(&a, "--seq-len", 0, 2, 1 << 20);
    g.tpb = cli_int(&a, "--tokens-per-batch", 4096, 2, 1LL << 30);
    int threads = (int)cli_int(&a, "--threads", 0, 0, 4096);
    ecr_precision prec;
    cli_precision(&a, &prec);
    g.quiet = cli_flag(&a, "--quiet") || cli_comm_rank() > 0; /* under mpirun, rank 0 reports */
    int ok = cli_finish(&a);
    if (ok && a.npos > 0) {
        fprintf(stderr, "ecr eval: unexpected argument '%s' (see --help)\n", a.pos[0]);
        ok = 0;
    }
    if (ok && (!dir) != (!data)) {
        fprintf(stderr, "ecr eval: --model and --data go together (see --help)\n");
        ok = 0;
    }
    if (ok && !dir && (g.teacher_path || g.anchors_path || max_texts)) {
        fprintf(stderr, "ecr eval: --teacher-emb, --anchors and --max-texts need --model and --data\n");
        ok = 0;
    }
    cli_args_free(&a);
    if (!ok) return 2;
    ecr_set_threads(threads);
    g.data_path = data;

    ecr_model *m = NULL;
    ecr_data *d = NULL;
    cJSON *root = cJSON_CreateObject(), *lm = NULL, *geo = NULL, *stab = NULL, *pca = NULL;
    float *h = NULL;
    g.notes = cJSON_CreateArray();
    ecr_status st = ECR_OK;
    if (dir) {
        st = ecr_data_open(data, &d);
        if (!st) st = ecr_model_load(dir, &m);
        if (!st) st = cli_set_precision(m, prec, "eval", g.quiet);
        ecr_data view;
        memset(&view, 0, sizeof view);
        if (!st) view = data_head(d, (size_t)max_texts);
        if (!st) st = geometry_inputs(m, d, &view, &g);
        if (!st) {
            h = malloc((view.n_texts * (size_t)ecr_model_config(m)->dim + 1) * sizeof *h);
            if (!h) st = ecr_fail(ECR_E_NOMEM, "eval: out of memory");
        }
        if (!st) st = lm_section(m, &view, g.seq_len, g.tpb, g.quiet, h, &lm);
        if (!st) st = geometry_section(m, &view, h, &g, &geo, &pca);
        if (!st) {
            cJSON_AddStringToObject(root, "model", dir);
            cJSON_AddStringToObject(root, "data", data);
            cJSON_AddNumberToObject(root, "texts", (double)view.n_texts);
            cJSON_AddStringToObject(root, "precision", ecr_precision_name(ecr_model_precision(m)));
            cJSON_AddItemToObject(root, "lm", lm);
            cJSON_AddItemToObject(root, "geometry", geo);
            if (pca) cJSON_AddItemToObject(root, "pca", pca);
            lm = geo = pca = NULL;
        }
    }
    if (!st && log) st = stability_section(log, &stab);
    if (!st && stab) cJSON_AddItemToObject(root, "stability", stab);
    if (!st && json && cli_comm_rank() == 0) st = write_json(json, root);
    if (st) {
        cJSON_Delete(lm);
        cJSON_Delete(geo);
        cJSON_Delete(pca);
    }
    cJSON_Delete(root);
    cJSON_Delete(g.notes);
    free(h);
    free(g.teacher);
    free(g.codes);
    ecr_anchors_free(g.anchors);
    ecr_model_free(m);
    ecr_data_free(d);
    return st ? cli_fail(st) : 0;
}
