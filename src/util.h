/* util.h — internal helpers shared by the library's source files. */
#ifndef ECR_UTIL_H
#define ECR_UTIL_H
#include "ecr.h"

/* The calling thread's number in the current OpenMP team (0 outside a parallel region or
 * without OpenMP); with ecr_get_threads() it sizes and indexes per-thread scratch. */
int ecr_thread_id(void);
#endif
