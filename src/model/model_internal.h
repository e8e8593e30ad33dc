/* model_internal.h — what the layers above the model (method, train, eval) may read of it
 * beyond the public API (internal; model.c). */
#ifndef ECR_MODEL_INTERNAL_H
#define ECR_MODEL_INTERNAL_H
#include "ecr.h"

/* The model's fp32 parameters, read-only (unlike ecr_model_params, this does not mark the
 * bf16 copy stale: for readers such as the ECR projection). Borrowed. */
const float *ecr_model_params_ro(const ecr_model *m);

#endif
