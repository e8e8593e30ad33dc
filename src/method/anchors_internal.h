/* anchors_internal.h — what anchors.c (the fit, the controls) and anchors_io.c (the file)
 * share (internal). */
#ifndef ECR_ANCHORS_INTERNAL_H
#define ECR_ANCHORS_INTERNAL_H
#include "ecr.h"

/* An anchors object with its arrays allocated for k anchors of d dims, n codes and m soft
 * codes per row (contents unset; `source` copied, may be NULL), or NULL when out of memory. */
ecr_anchors *ecr_anchors_alloc(int k, int d, int64_t n, int m, const char *source);

#endif
