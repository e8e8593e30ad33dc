/* model_internal.h — what the model's files share (model.c, model_io.c) and what the layers
 * above it (method, train, eval) may read of it beyond the public API (internal). */
#ifndef ECR_MODEL_INTERNAL_H
#define ECR_MODEL_INTERNAL_H
#include "ecr.h"

/* The model's fp32 parameters, read-only (unlike ecr_model_params, this does not mark the
 * bf16 copy stale: for readers such as the ECR projection). Borrowed. */
const float *ecr_model_params_ro(const ecr_model *m);

/* The config every preset and config.json start from (vocabulary 8,192, 256 positions,
 * rope_theta 10,000, eps 1e-5, tied head, no projection); sizes are left 0. */
void ecr_config_base(ecr_config *c);
/* A model of config `cfg` (validated) with its tensor table and views, parameters not
 * initialised, gradients zero; the shared start of ecr_model_create and ecr_model_load. */
ecr_status ecr_model_alloc(const ecr_config *cfg, ecr_model **out);

/* Intermediate pooling, for the objective's "mid" term: with layer in 1..L-1, every later
 * forward also pools the residual stream after block `layer` (the mean over a text's slots
 * with pos >= 1, as for h, before any norm) into ecr_model_pooled_mid; 0 turns it off.
 * ECR_E_INVALID outside 0..L-1. */
ecr_status ecr_model_set_mid_layer(ecr_model *m, int layer);
/* [n_texts, dim] of the last forward (borrowed, valid until the next), NULL when off. */
const float *ecr_model_pooled_mid(const ecr_model *m);
/* ecr_model_backward with dlogits_scale * dlogits in place of dlogits, plus
 * sum_i <dpooled_mid[i], pooled_mid[i]> (NULL: none; needs the intermediate pooling on for
 * the forward). */
ecr_status ecr_model_backward_mid(ecr_model *m, const ecr_batch *b, float lm_scale, const float *dpooled,
                                  const float *dlogits, float dlogits_scale, const float *dpooled_mid);

#endif
