/* model_io.c — the model folder, Hugging Face's layout: config.json (LlamaConfig keys) +
 * model.safetensors (Llama tensor names, F32/F16/BF16) + tokenizer.json; save and load
 * (contracts: ecr.h, ecr_model_save, ecr_model_load). */
#include "ecr.h"
#include "model_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Shortest decimal that reads back as the same float (e.g. 1e-05, not 9.99999975e-06). */
static cJSON *json_float(float v) {
    char buf[48];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    if (strpbrk(buf, "eE") && fabsf(v) >= 1.0f && fabsf(v) < 1e15f && v == floorf(v))
        snprintf(buf, sizeof buf, "%.1f", (double)v); /* 10000.0, not 1e+04 */
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");    /* keep it a float for Python readers */
    return cJSON_CreateRaw(buf);
}

static char *config_json(const ecr_config *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    if (arch) cJSON_AddItemToArray(arch, cJSON_CreateString("LlamaForCausalLM"));
    cJSON_AddStringToObject(o, "model_type", "llama");
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(o, "hidden_size", c->dim);
    cJSON_AddNumberToObject(o, "intermediate_size", c->hidden_dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "num_key_value_heads", c->n_heads);
    cJSON_AddNumberToObject(o, "max_position_embeddings", c->max_seq_len);
    cJSON_AddItemToObject(o, "rms_norm_eps", json_float(c->norm_eps));
    cJSON_AddItemToObject(o, "rope_theta", json_float(c->rope_theta));
    cJSON_AddNullToObject(o, "rope_scaling");
    cJSON_AddBoolToObject(o, "tie_word_embeddings", c->tied);
    cJSON_AddStringToObject(o, "hidden_act", "silu");
    cJSON_AddBoolToObject(o, "attention_bias", 0);
    cJSON_AddNumberToObject(o, "initializer_range", 0.02);
    cJSON_AddNumberToObject(o, "bos_token_id", 0);
    cJSON_AddNumberToObject(o, "eos_token_id", 0);
    cJSON_AddNumberToObject(o, "pad_token_id", 1);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    cJSON_AddNumberToObject(o, "ecr_dim", c->ecr_dim);
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

ecr_status ecr_model_save(const ecr_model *m, const char *dir, const char *tokenizer_path,
                          const char *const *meta) {
    return ecr_model_save_as(m, dir, tokenizer_path, meta, ECR_F32);
}

/* The parameters converted to 16-bit `dtype` (F16 or BF16), or NULL when out of memory. */
static uint16_t *params_to_16(const ecr_model *m, ecr_dtype dtype) {
    size_t n = ecr_model_num_params(m);
    const float *p = ecr_model_params_ro(m);
    uint16_t *h = malloc(n * sizeof *h);
    if (!h) return NULL;
    for (size_t i = 0; i < n; i++) h[i] = dtype == ECR_F16 ? ecr_f32_to_f16(p[i]) : ecr_f32_to_bf16(p[i]);
    return h;
}

ecr_status ecr_model_save_as(const ecr_model *m, const char *dir, const char *tokenizer_path,
                             const char *const *meta, ecr_dtype dtype) {
    if (dtype != ECR_F32 && dtype != ECR_F16 && dtype != ECR_BF16)
        return ecr_fail(ECR_E_INVALID, "%s: models are saved as F32, F16 or BF16, not %s", dir,
                        ecr_dtype_name(dtype));
    uint16_t *half = NULL;
    if (dtype != ECR_F32 && !(half = params_to_16(m, dtype)))
        return ecr_fail(ECR_E_NOMEM, "%s: out of memory", dir);
    ecr_status dst = ecr_make_dirs(dir);
    if (dst != ECR_OK) {
        free(half);
        return dst;
    }
    char *cfg_path = ecr_path_join(dir, "config.json"), *st_path = ecr_path_join(dir, "model.safetensors");
    char *tok_path = ecr_path_join(dir, "tokenizer.json");
    char *json = config_json(ecr_model_config(m));
    ecr_st_writer *w = NULL;
    ecr_status st = ECR_OK;
    if (!cfg_path || !st_path || !tok_path || !json) {
        st = ecr_fail(ECR_E_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if ((st = ecr_st_writer_create(&w)) != ECR_OK) goto done;
    const float *params = ecr_model_params_ro(m);
    for (size_t i = 0; i < ecr_model_num_tensors(m) && st == ECR_OK; i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        const void *data = half ? (const void *)(half + t->offset) : (const void *)(params + t->offset);
        st = ecr_st_writer_add(w, t->name, dtype, t->ndim, t->shape, data);
    }
    if (st == ECR_OK) st = ecr_st_writer_meta(w, "format", "pt");
    for (size_t i = 0; meta && meta[i] && meta[i + 1] && st == ECR_OK; i += 2)
        st = ecr_st_writer_meta(w, meta[i], meta[i + 1]);
    if (st == ECR_OK) st = ecr_st_writer_write(w, st_path);
    if (st == ECR_OK) {
        size_t n = strlen(json);
        json[n] = '\n'; /* cJSON_Print leaves no final newline; reuse the NUL's byte */
        st = ecr_write_file(cfg_path, json, n + 1);
        json[n] = 0;
    }
    if (st == ECR_OK && tokenizer_path) {
        char *tok;
        size_t tl;
        st = ecr_read_file(tokenizer_path, &tok, &tl);
        if (st == ECR_OK) {
            st = ecr_write_file(tok_path, tok, tl);
            free(tok);
        }
    }
done:
    free(half);
    ecr_st_writer_free(w);
    free(json);
    free(cfg_path);
    free(st_path);
    free(tok_path);
    return st;
}

/* Reads an integer config key; `required` = 0 keeps *v when the key is absent. */
static ecr_status json_int(const cJSON *o, const char *path, const char *key, int required, int *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) {
        if (required) return ecr_fail(ECR_E_INVALID, "%s: missing key \"%s\"", path, key);
        return ECR_OK;
    }
    double x = it->valuedouble;
    if (!cJSON_IsNumber(it) || x != floor(x) || fabs(x) > 2147483647.0)
        return ecr_fail(ECR_E_INVALID, "%s: \"%s\" must be an integer", path, key);
    *v = (int)x;
    return ECR_OK;
}

static ecr_status json_float_key(const cJSON *o, const char *path, const char *key, float *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) return ECR_OK;
    if (!cJSON_IsNumber(it)) return ecr_fail(ECR_E_INVALID, "%s: \"%s\" must be a number", path, key);
    *v = (float)it->valuedouble;
    return ECR_OK;
}

/* Parses a Hugging Face LlamaConfig (config.json) into *c. */
static ecr_status parse_config(const char *path, const char *text, ecr_config *c) {
    cJSON *o = cJSON_Parse(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return ecr_fail(ECR_E_INVALID, "%s: not a JSON object", path);
    }
    ecr_config_base(c);
    c->norm_eps = 1e-6f; /* LlamaConfig's defaults when the keys are absent */
    c->tied = 0;
    c->max_seq_len = 2048;
    ecr_status st = ECR_OK;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(o, "model_type");
    if (mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "llama")))
        st = ecr_fail(ECR_E_INVALID, "%s: model_type must be \"llama\"", path);
    int kv = -1;
    if (st == ECR_OK) st = json_int(o, path, "vocab_size", 1, &c->vocab_size);
    if (st == ECR_OK) st = json_int(o, path, "hidden_size", 1, &c->dim);
    if (st == ECR_OK) st = json_int(o, path, "intermediate_size", 1, &c->hidden_dim);
    if (st == ECR_OK) st = json_int(o, path, "num_hidden_layers", 1, &c->n_layers);
    if (st == ECR_OK) st = json_int(o, path, "num_attention_heads", 1, &c->n_heads);
    if (st == ECR_OK) st = json_int(o, path, "num_key_value_heads", 0, &kv);
    if (st == ECR_OK) st = json_int(o, path, "max_position_embeddings", 0, &c->max_seq_len);
    if (st == ECR_OK) st = json_int(o, path, "ecr_dim", 0, &c->ecr_dim);
    if (st == ECR_OK) st = json_float_key(o, path, "rms_norm_eps", &c->norm_eps);
    if (st == ECR_OK) st = json_float_key(o, path, "rope_theta", &c->rope_theta);
    if (st == ECR_OK && kv != -1 && kv != c->n_heads)
        st = ecr_fail(ECR_E_INVALID, "%s: num_key_value_heads %d != num_attention_heads %d "
                                     "(grouped-query attention is not supported)", path, kv, c->n_heads);
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(o, "tie_word_embeddings");
    if (st == ECR_OK && tie) {
        if (!cJSON_IsBool(tie))
            st = ecr_fail(ECR_E_INVALID, "%s: \"tie_word_embeddings\" must be true or false", path);
        else
            c->tied = cJSON_IsTrue(tie);
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(o, "hidden_act");
    if (st == ECR_OK && act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        st = ecr_fail(ECR_E_INVALID, "%s: hidden_act must be \"silu\"", path);
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    if (st == ECR_OK && rs && !cJSON_IsNull(rs))
        st = ecr_fail(ECR_E_INVALID, "%s: rope_scaling is not supported", path);
    const cJSON *ab = cJSON_GetObjectItemCaseSensitive(o, "attention_bias");
    if (st == ECR_OK && ab && cJSON_IsTrue(ab))
        st = ecr_fail(ECR_E_INVALID, "%s: attention_bias is not supported", path);
    cJSON_Delete(o);
    if (st == ECR_OK && ecr_config_validate(c) != ECR_OK)
        st = ecr_fail(ECR_E_INVALID, "%s: %s", path, ecr_last_error());
    return st;
}

/* Copies one tensor of the file into the parameter block, converting to fp32. */
static ecr_status load_tensor(const char *path, const ecr_tensor_view *v, const ecr_param_info *t,
                              float *dst) {
    int ok = v->ndim == t->ndim;
    for (int i = 0; ok && i < t->ndim; i++) ok = v->shape[i] == t->shape[i];
    if (!ok) {
        if (t->ndim == 1)
            return ecr_fail(ECR_E_INVALID, "%s: tensor '%s': wrong shape (config.json wants [%lld])",
                            path, t->name, (long long)t->shape[0]);
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%s': wrong shape (config.json wants [%lld, %lld])",
                        path, t->name, (long long)t->shape[0], (long long)t->shape[1]);
    }
    if (v->dtype == ECR_F32) {
        memcpy(dst, v->data, t->numel * sizeof(float));
    } else if (v->dtype == ECR_F16 || v->dtype == ECR_BF16) {
        const uint8_t *src = v->data;
        for (size_t i = 0; i < t->numel; i++) {
            uint16_t u;
            memcpy(&u, src + 2 * i, 2);
            dst[i] = v->dtype == ECR_F16 ? ecr_f16_to_f32(u) : ecr_bf16_to_f32(u);
        }
    } else {
        return ecr_fail(ECR_E_INVALID, "%s: tensor '%s': dtype %s (expected F32, F16 or BF16)", path,
                        t->name, ecr_dtype_name(v->dtype));
    }
    return ECR_OK;
}

/* Tensors a Llama checkpoint may carry that this model does not need. */
static int ignorable(const ecr_model *m, const char *name) {
    size_t n = strlen(name), s = strlen("rotary_emb.inv_freq");
    if (n >= s && !strcmp(name + n - s, "rotary_emb.inv_freq")) return 1;
    return ecr_model_config(m)->tied && !strcmp(name, "lm_head.weight"); /* a tied head saved explicitly */
}

ecr_status ecr_model_load(const char *dir, ecr_model **out) {
    *out = NULL;
    char *cfg_path = ecr_path_join(dir, "config.json"), *st_path = ecr_path_join(dir, "model.safetensors");
    char *text = NULL;
    ecr_st_file *f = NULL;
    ecr_model *m = NULL;
    ecr_config cfg;
    ecr_status st = (!cfg_path || !st_path) ? ecr_fail(ECR_E_NOMEM, "%s: out of memory", dir) : ECR_OK;
    if (st == ECR_OK) st = ecr_read_file(cfg_path, &text, NULL);
    if (st == ECR_OK) st = parse_config(cfg_path, text, &cfg);
    if (st == ECR_OK) st = ecr_model_alloc(&cfg, &m);
    if (st == ECR_OK) st = ecr_st_open(st_path, &f);
    float *params = m ? ecr_model_params(m) : NULL;
    for (size_t i = 0; st == ECR_OK && i < ecr_model_num_tensors(m); i++) {
        const ecr_param_info *t = ecr_model_tensor(m, i);
        const ecr_tensor_view *v = ecr_st_find(f, t->name);
        if (!v)
            st = ecr_fail(ECR_E_INVALID, "%s: tensor '%s' missing (config.json needs it)", st_path, t->name);
        else
            st = load_tensor(st_path, v, t, params + t->offset);
    }
    for (size_t i = 0; st == ECR_OK && i < ecr_st_count(f); i++) {
        const char *name = ecr_st_at(f, i)->name;
        if (!ecr_model_find_tensor(m, name) && !ignorable(m, name))
            st = ecr_fail(ECR_E_INVALID, "%s: tensor '%s' is not part of the model in config.json",
                          st_path, name);
    }
    ecr_st_close(f);
    free(text);
    free(cfg_path);
    free(st_path);
    if (st != ECR_OK) {
        ecr_model_free(m);
        return st;
    }
    *out = m;
    return ECR_OK;
}
