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

#endif
