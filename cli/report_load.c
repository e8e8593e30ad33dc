/* report_load.c — `ecr report`: reading a run folder (run.json, config.json, log.jsonl through
 * the one log reader, eval.json), each field checked, into a run (report.h). */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- growable arrays -------------------------------------------------------------------- */


ecr_status rp_dvec_push(dvec *a, double x) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        double *v = realloc(a->v, (size_t)cap * sizeof *v);
        if (!v) return ecr_fail(ECR_E_NOMEM, "ecr report: out of memory");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return ECR_OK;
}

void rp_dvec_free(dvec *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* The last finite value, NaN if none. */
double rp_dvec_last(const dvec *a) {
    for (int i = a->n - 1; i >= 0; i--)
        if (isfinite(a->v[i])) return a->v[i];
    return NAN;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void free_strs(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

void rp_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ecr report: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void pca_free(pca_data *p) {
    free(p->x);
    free(p->y);
    for (int k = 0; k < 2; k++) {
        free(p->cat[k]);
        free_strs(p->names[k], p->n_names[k]);
    }
    memset(p, 0, sizeof *p);
}

void rp_run_free(run *u) {
    free(u->preset);
    free(u->method);
    free(u->tag);
    free(u->diverged);
    dvec *v[] = {&u->step, &u->loss, &u->gnorm, &u->clip, &u->vstep, &u->vloss, &u->vbpb,
                 &u->ver, &u->veru, &u->vp1};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) rp_dvec_free(v[i]);
    for (int sp = 0; sp < SP_N; sp++) {
        free_strs(u->geo[sp].p1_lang, u->geo[sp].n_p1);
        free(u->geo[sp].p1);
    }
    pca_free(&u->pca);
}

/* ---- JSON input ----------------------------------------------------------------------- */

/* Line and column (1-based) of byte offset `at` of text. */
static void line_col(const char *text, size_t at, int *line, int *col) {
    *line = 1, *col = 1;
    for (size_t i = 0; i < at && text[i]; i++) {
        if (text[i] == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

/* Parses the JSON file at path (*root NULL and ECR_OK when the file does not exist).
 * Malformed: ECR_E_INVALID "path:LINE:COL: not valid JSON (byte N)". */
static ecr_status read_json(const char *path, cJSON **root) {
    char *text = NULL;
    size_t len = 0;
    *root = NULL;
    if (!ecr_file_exists(path)) return ECR_OK;
    ecr_status st = ecr_read_file(path, &text, &len);
    if (st) return st;
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    size_t at = len;
    if (!*root) {
        const char *e = cJSON_GetErrorPtr();
        at = e && e >= text && e <= text + len ? (size_t)(e - text) : 0;
    } else {
        for (at = (size_t)(end - text); at < len && strchr(" \t\r\n", text[at]); at++) {}
    }
    if (at < len || !*root) {
        int line, col;
        line_col(text, at, &line, &col);
        st = ecr_fail(ECR_E_INVALID, "%s:%d:%d: %s (byte %zu)", path, line, col,
                      *root ? "data after the JSON value" : "not valid JSON", at);
        cJSON_Delete(*root);
        *root = NULL;
    }
    free(text);
    return st;
}

/* obj[key] as a number; NaN when absent or null; ECR_E_INVALID naming the field
 * ("path<place>: field '<prefix><key>': ...") for another type. */
static ecr_status get_num(const char *path, const char *place, const char *prefix,
                          const cJSON *obj, const char *key, double *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *v = NAN;
    if (!it || cJSON_IsNull(it)) return ECR_OK;
    if (!cJSON_IsNumber(it))
        return ecr_fail(ECR_E_INVALID, "%s%s: field '%s%s': expected a number or null", path,
                        place, prefix, key);
    *v = it->valuedouble;
    return ECR_OK;
}

/* obj[key] as an object (*out NULL when absent or null); ECR_E_INVALID for another type. */
static ecr_status get_obj(const char *path, const char *prefix, const cJSON *obj,
                          const char *key, const cJSON **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!it || cJSON_IsNull(it)) return ECR_OK;
    if (!cJSON_IsObject(it))
        return ecr_fail(ECR_E_INVALID, "%s: field '%s%s': expected an object or null", path,
                        prefix, key);
    *out = it;
    return ECR_OK;
}

/* obj[key] as a string copy (*out NULL when absent or null); ECR_E_INVALID otherwise. */
static ecr_status get_str(const char *path, const cJSON *obj, const char *key, char **out) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!it || cJSON_IsNull(it)) return ECR_OK;
    if (!cJSON_IsString(it))
        return ecr_fail(ECR_E_INVALID, "%s: field '%s': expected a string or null", path, key);
    if (!(*out = xstrdup(it->valuestring))) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    return ECR_OK;
}

/* ---- run.json and config.json ------------------------------------------------------------- */

static ecr_status load_run_json(run *u, const char *path, const cJSON *j) {
    if (!cJSON_IsObject(j)) return ecr_fail(ECR_E_INVALID, "%s: expected a JSON object", path);
    double seed, steps;
    ecr_status st = get_str(path, j, "preset", &u->preset);
    if (!st) st = get_str(path, j, "method", &u->method);
    if (!st) st = get_str(path, j, "tag", &u->tag);
    if (!st) st = get_str(path, j, "diverged", &u->diverged);
    if (!st) st = get_num(path, "", "", j, "seed", &seed);
    if (!st) st = get_num(path, "", "", j, "steps", &steps);
    if (st) return st;
    if (fabs(seed) < 9e18) u->seed = (long long)seed;     /* NaN (absent) fails the test */
    if (fabs(steps) < 9e18) u->steps = (long long)steps;
    return ECR_OK;
}

/* preset "LxD" from config.json (num_hidden_layers x hidden_size), when it is there. */
static ecr_status load_config(run *u, const char *path, const cJSON *j) {
    if (!cJSON_IsObject(j)) return ecr_fail(ECR_E_INVALID, "%s: expected a JSON object", path);
    double layers, width;
    ecr_status st = get_num(path, "", "", j, "num_hidden_layers", &layers);
    if (!st) st = get_num(path, "", "", j, "hidden_size", &width);
    if (st || !isfinite(layers) || !isfinite(width)) return st;
    char b[64];
    snprintf(b, sizeof b, "%.0fx%.0f", layers, width);
    if (!(u->preset = xstrdup(b))) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    return ECR_OK;
}

/* ---- log.jsonl --------------------------------------------------------------------------- */

/* One record of the log: step records feed the loss, gradient-norm and clipping curves and
 * the seconds per step; validation records the validation curves. Others are ignored. */
static ecr_status log_record(run *u, const ecr_log_record *r) {
    ecr_status st = ECR_OK;
    if (!isfinite(r->step)) return ECR_OK;
    if (r->is_step) {
        if (isfinite(r->elapsed_s)) u->el_step = r->step, u->el_s = r->elapsed_s;
        if (!isfinite(r->grad_norm)) u->gnorm_ok = 0;
        if (!st) st = rp_dvec_push(&u->step, r->step);
        if (!st) st = rp_dvec_push(&u->loss, r->loss);
        if (!st) st = rp_dvec_push(&u->gnorm, r->grad_norm);
        if (!st) st = rp_dvec_push(&u->clip, r->clipped == 1 ? 1 : 0);
    } else if (r->is_valid) {
        if (!st) st = rp_dvec_push(&u->vstep, r->step);
        if (!st) st = rp_dvec_push(&u->vloss, r->val_loss);
        if (!st) st = rp_dvec_push(&u->vbpb, r->val_bpb);
        if (!st) st = rp_dvec_push(&u->ver, r->val_eff_rank);
        if (!st) st = rp_dvec_push(&u->veru, r->val_eff_rank_u);
        if (!st) st = rp_dvec_push(&u->vp1, r->val_p1);
    }
    return st;
}

/* Reads the run's log.jsonl (none is fine) by the rule of ecr.h's ecr_log_next. */
static ecr_status load_log(run *u, const char *path) {
    if (!ecr_file_exists(path)) return ECR_OK;
    ecr_log_reader *r = NULL;
    ecr_status st = ecr_log_open(path, &r);
    if (st) return st;
    u->has_log = 1;
    u->gnorm_ok = 1;
    ecr_log_record rec;
    int more = 1;
    while (!st && more && !(st = ecr_log_next(r, &rec, &more)) && more) st = log_record(u, &rec);
    if (!st && ecr_log_torn(r)) rp_warn("%s:%ld: truncated last line skipped", path, ecr_log_torn(r));
    ecr_log_close(r);
    return st;
}

/* ---- eval.json ------------------------------------------------------------------------------ */

/* P@1 per language of one geometry space ("p1": {"per_lang": {...}}) into gs. */
static ecr_status load_p1_langs(geo_space *gs, const char *path, const char *prefix,
                                const cJSON *p1) {
    const cJSON *per;
    char pre[64];
    snprintf(pre, sizeof pre, "%sp1.", prefix);
    ecr_status st = get_obj(path, pre, p1, "per_lang", &per);
    if (st || !per) return st;
    int n = cJSON_GetArraySize(per);
    gs->p1_lang = calloc((size_t)n + 1, sizeof *gs->p1_lang);
    gs->p1 = calloc((size_t)n + 1, sizeof *gs->p1);
    if (!gs->p1_lang || !gs->p1) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    snprintf(pre, sizeof pre, "%sp1.per_lang.", prefix);
    for (const cJSON *c = per->child; c && !st; c = c->next) {
        st = get_num(path, "", pre, per, c->string, &gs->p1[gs->n_p1]);
        if (!st && !(gs->p1_lang[gs->n_p1++] = xstrdup(c->string)))
            st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    }
    return st;
}

/* geometry.<space> (GEOM in cli/cmd_eval.c) into u->geo[sp]; absent or null leaves it
 * empty (and, for u, marks the run as having no projection). */
static ecr_status load_space(run *u, const char *path, const cJSON *geo, int sp) {
    const cJSON *g = NULL, *p1 = NULL, *lt = NULL;
    geo_space *gs = &u->geo[sp];
    const char key[2] = {space_name[sp], 0};
    ecr_status st = get_obj(path, "geometry.", geo, key, &g);
    if (st || !g) return st;
    gs->has = 1;
    char pre[32];
    snprintf(pre, sizeof pre, "geometry.%c.", space_name[sp]);
    static const struct { int m; const char *key; } keys[] = {
        {G_ER, "effective_rank"}, {G_ANISO, "anisotropy"}, {G_SIL, "silhouette"},
        {G_CKA, "cka"}, {G_KNN, "knn_overlap10"}, {G_AGREE, "anchor_agreement"},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !st; i++)
        st = get_num(path, "", pre, g, keys[i].key, &gs->m[keys[i].m]);
    if (!st) st = get_obj(path, pre, g, "p1", &p1);
    if (!st) st = get_obj(path, pre, g, "label_transfer", &lt);
    char sub[48];
    snprintf(sub, sizeof sub, "%sp1.", pre);
    if (!st && p1) st = get_num(path, "", sub, p1, "mean", &gs->m[G_P1]);
    snprintf(sub, sizeof sub, "%slabel_transfer.", pre);
    if (!st && lt) st = get_num(path, "", sub, lt, "mean", &gs->m[G_LT]);
    if (!st && p1) st = load_p1_langs(gs, path, pre, p1);
    return st;
}

/* A numeric array field of pca: exactly n entries when n >= 0 (else any length, *n set). */
static ecr_status pca_array(const char *path, const cJSON *pca, const char *key, int *n,
                            const cJSON **out) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(pca, key);
    *out = NULL;
    if (!a || cJSON_IsNull(a)) return ECR_OK;
    if (!cJSON_IsArray(a))
        return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s': expected an array", path, key);
    int len = cJSON_GetArraySize(a);
    if (*n >= 0 && len != *n)
        return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s': %d entries, expected %d", path, key,
                        len, *n);
    *n = len;
    *out = a;
    return ECR_OK;
}

static ecr_status pca_coords(const char *path, const cJSON *a, const char *key, int n,
                             double **out) {
    if (!(*out = malloc(((size_t)n + 1) * sizeof **out)))
        return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    int i = 0;
    for (const cJSON *c = a->child; c; c = c->next, i++) {
        if (!cJSON_IsNumber(c))
            return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s[%d]': expected a number", path,
                            key, i);
        (*out)[i] = c->valuedouble;
    }
    return ECR_OK;
}

/* Category k (0 lang, 1 label): names from pca[names_key], indices from pca[key]. */
static ecr_status pca_category(pca_data *p, const char *path, const cJSON *pca, int k) {
    static const char *keys[2] = {"lang", "label"}, *name_keys[2] = {"langs", "labels"};
    const cJSON *idx, *names;
    int n = p->n, m = -1;
    ecr_status st = pca_array(path, pca, keys[k], &n, &idx);
    if (!st) st = pca_array(path, pca, name_keys[k], &m, &names);
    if (st || !idx || !names) return st;
    p->names[k] = calloc((size_t)m + 1, sizeof *p->names[k]);
    p->cat[k] = malloc(((size_t)n + 1) * sizeof *p->cat[k]);
    if (!p->names[k] || !p->cat[k]) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    for (const cJSON *c = names->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s[%d]': expected a string", path,
                            name_keys[k], p->n_names[k]);
        if (!(p->names[k][p->n_names[k]++] = xstrdup(c->valuestring)))
            return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    }
    int i = 0;
    for (const cJSON *c = idx->child; c; c = c->next, i++) {
        if (!cJSON_IsNumber(c) || !(c->valuedouble >= 0 && c->valuedouble < m) ||
            c->valuedouble != floor(c->valuedouble))
            return ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s[%d]': expected an index into "
                            "pca.%s (0..%d)", path, keys[k], i, name_keys[k], m - 1);
        p->cat[k][i] = (int)c->valuedouble;
    }
    return ECR_OK;
}

static ecr_status load_pca(run *u, const char *path, const cJSON *pca) {
    pca_data *p = &u->pca;
    const cJSON *x, *y, *ex, *sp = cJSON_GetObjectItemCaseSensitive(pca, "space");
    int n = -1, two = -1;
    p->space = cJSON_IsString(sp) && strlen(sp->valuestring) == 1 ? sp->valuestring[0] : '?';
    p->explained[0] = p->explained[1] = NAN;
    ecr_status st = pca_array(path, pca, "x", &n, &x);
    if (!st) st = pca_array(path, pca, "y", &n, &y);
    if (!st && (!x || !y))
        st = ecr_fail(ECR_E_INVALID, "%s: field 'pca.%s': missing", path, x ? "y" : "x");
    if (st) return st;
    p->n = n;
    st = pca_coords(path, x, "x", n, &p->x);
    if (!st) st = pca_coords(path, y, "y", n, &p->y);
    if (!st) st = pca_array(path, pca, "explained", &two, &ex);
    for (int i = 0; !st && ex && i < 2 && i < two; i++) {
        const cJSON *e = cJSON_GetArrayItem(ex, i);
        if (cJSON_IsNumber(e)) p->explained[i] = e->valuedouble;
    }
    if (!st) st = pca_category(p, path, pca, 0);
    if (!st) st = pca_category(p, path, pca, 1);
    if (!st) u->has_pca = n > 0;
    return st;
}

static ecr_status load_eval(run *u, const char *path, const cJSON *j) {
    if (!cJSON_IsObject(j)) return ecr_fail(ECR_E_INVALID, "%s: expected a JSON object", path);
    const cJSON *lm, *overall = NULL, *geo, *stab, *pca;
    ecr_status st = get_obj(path, "", j, "lm", &lm);
    if (!st && lm) st = get_obj(path, "lm.", lm, "overall", &overall);
    if (!st && overall) st = get_num(path, "", "lm.overall.", overall, "bpb", &u->lm[L_BPB]);
    if (!st && overall) st = get_num(path, "", "lm.overall.", overall, "loss", &u->lm[L_LOSS]);
    if (!st) st = get_obj(path, "", j, "geometry", &geo);
    for (int sp = 0; sp < SP_N && !st && geo; sp++) st = load_space(u, path, geo, sp);
    if (!st) st = get_obj(path, "", j, "stability", &stab);
    if (!st && stab)
        st = get_num(path, "", "stability.", stab, "spikes_per_1k_steps", &u->lm[L_SPIKES]);
    if (!st && stab) st = get_num(path, "", "stability.", stab, "grad_norm_cv", &u->lm[L_GCV]);
    if (!st && stab) st = get_num(path, "", "stability.", stab, "clipped_share", &u->lm[L_CLIP]);
    if (!st) st = get_obj(path, "", j, "pca", &pca);
    if (!st && pca) st = load_pca(u, path, pca);
    return st;
}

/* ---- one run ---------------------------------------------------------------------------------- */

/* Fills what eval.json did not give from log.jsonl: seconds per training step (eval.json
 * has none), loss, bits/byte and the effective ranks of h and u of the last validation
 * record (val_eff_rank_u also marks the run as having u), stability of the step records.
 * h exists for every model. */
static void fill_from_log(run *u) {
    if (!isfinite(u->lm[L_BPB]) && isfinite(rp_dvec_last(&u->vbpb)))
        u->lm[L_BPB] = rp_dvec_last(&u->vbpb), u->bpb_from_log = 1;
    if (!isfinite(u->lm[L_LOSS]) && isfinite(rp_dvec_last(&u->vloss)))
        u->lm[L_LOSS] = rp_dvec_last(&u->vloss), u->loss_from_log = 1;
    if (u->el_step > 0 && u->el_s >= 0) u->lm[L_SPS] = u->el_s / u->el_step;
    u->geo[SP_H].has = 1;
    if (isfinite(rp_dvec_last(&u->veru))) u->geo[SP_U].has = 1;
    const dvec *er[SP_N] = {&u->ver, &u->veru};
    for (int sp = 0; sp < SP_N; sp++) {
        geo_space *gs = &u->geo[sp];
        if (!isfinite(gs->m[G_ER]) && isfinite(rp_dvec_last(er[sp])))
            gs->m[G_ER] = rp_dvec_last(er[sp]), gs->er_from_log = 1;
    }
    if (!isfinite(u->lm[L_SPIKES]) && !isfinite(u->lm[L_GCV]) && !isfinite(u->lm[L_CLIP]) &&
        u->step.n > 0 && u->gnorm_ok) {
        uint8_t *c = malloc((size_t)u->step.n);
        ecr_stability s;
        for (int i = 0; c && i < u->step.n; i++) c[i] = u->clip.v[i] != 0;
        if (c && !ecr_stability_compute(u->loss.v, u->gnorm.v, c, u->step.n, &s)) {
            u->lm[L_SPIKES] = s.spikes_per_1k, u->lm[L_GCV] = s.grad_norm_cv;
            u->lm[L_CLIP] = s.clipped_share;
            u->stab_from_log = 1;
        }
        free(c);
    }
}

/* Reads and parses `name` in the run folder, hands it to fn. *found: the file exists. */
static ecr_status load_json_file(run *u, const char *name, int *found,
                                 ecr_status (*fn)(run *, const char *, const cJSON *)) {
    cJSON *j = NULL;
    char *path = ecr_path_join(u->dir, name);
    if (!path) return ecr_fail(ECR_E_NOMEM, "out of memory");
    ecr_status st = read_json(path, &j);
    *found = j != NULL;
    if (!st && j) st = fn(u, path, j);
    cJSON_Delete(j);
    free(path);
    return st;
}

ecr_status rp_load_run(run *u, const char *dir) {
    struct stat sb;
    memset(u, 0, sizeof *u);
    u->dir = dir;
    u->steps = -1;
    for (int i = 0; i < L_N; i++) u->lm[i] = NAN;
    for (int sp = 0; sp < SP_N; sp++)
        for (int i = 0; i < G_N; i++) u->geo[sp].m[i] = NAN;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ecr_fail(ECR_E_INVALID, "%s: not a directory", dir);
    ecr_status st = load_json_file(u, "run.json", &u->has_run_json, load_run_json);
    if (!st && !u->preset) st = load_json_file(u, "config.json", &u->has_config, load_config);
    if (!st) st = load_json_file(u, "eval.json", &u->has_eval, load_eval);
    if (!st) {
        char *path = ecr_path_join(dir, "log.jsonl");
        st = path ? load_log(u, path) : ecr_fail(ECR_E_NOMEM, "out of memory");
        free(path);
    }
    if (st) return st;
    if (!u->has_run_json && !u->has_eval)
        return ecr_fail(ECR_E_INVALID, "%s: neither run.json nor eval.json (not a finished "
                        "ecr train --out folder?)", dir);
    if (!u->preset && !(u->preset = xstrdup("?"))) return ecr_fail(ECR_E_NOMEM, "out of memory");
    if (!u->method && !(u->method = xstrdup("?"))) return ecr_fail(ECR_E_NOMEM, "out of memory");
    u->label = u->tag ? u->tag : u->method;
    fill_from_log(u);
    return ECR_OK;
}

/* One stderr line per run listing the plots it is left out of, and why. group_pca: some
 * run of its group has a PCA (only one run per group is drawn). */
void rp_warn_missing(const run *u, int group_pca) {
    char why[512] = "", out[512] = "";
    int has_er = isfinite(rp_dvec_last(&u->ver)) || isfinite(rp_dvec_last(&u->veru));
    int has_u = u->geo[SP_U].has, bpb = isfinite(u->lm[L_BPB]);
#define MISSING(cond, reason, plots)                                                        \
    if (cond) {                                                                              \
        snprintf(why + strlen(why), sizeof why - strlen(why), "%s%s", *why ? ", " : "", reason); \
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", *out ? ", " : "", plots);  \
    }
    MISSING(!u->has_log, "no log.jsonl", "loss_train, loss_valid, eff_rank")
    MISSING(u->has_log && u->step.n == 0, "no step records", "loss_train")
    MISSING(u->has_log && u->vstep.n == 0, "no validation records", "loss_valid, eff_rank")
    MISSING(u->has_log && u->vstep.n > 0 && !has_er, "no val_eff_rank", "eff_rank")
    MISSING(!u->has_eval, "no eval.json",
            has_u ? "pca_lang, pca_label, p1_bars, p1_bars_u, tradeoff, tradeoff_u"
                  : "pca_lang, pca_label, p1_bars, tradeoff")
    MISSING(u->has_eval && !group_pca, "no \"pca\" in eval.json", "pca_lang, pca_label")
    MISSING(u->has_eval && u->geo[SP_H].n_p1 == 0, "no P@1 per language on h", "p1_bars")
    MISSING(u->has_eval && has_u && u->geo[SP_U].n_p1 == 0, "no P@1 per language on u",
            "p1_bars_u")
    MISSING(u->has_eval && !bpb, "no bits/byte", has_u ? "tradeoff, tradeoff_u" : "tradeoff")
    MISSING(u->has_eval && bpb && !isfinite(u->geo[SP_H].m[G_P1]), "no P@1 mean on h",
            "tradeoff")
    MISSING(u->has_eval && bpb && has_u && !isfinite(u->geo[SP_U].m[G_P1]),
            "no P@1 mean on u", "tradeoff_u")
#undef MISSING
    if (*why) rp_warn("%s: %s: left out of %s", u->dir, why, out);
}
