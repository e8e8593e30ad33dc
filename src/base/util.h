/* util.h — the base layer's internal helpers, shared by every source file of the library:
 * OpenMP pragmas, the normalisation eps, the thread number. */
#ifndef ECR_UTIL_H
#define ECR_UTIL_H
#include "ecr.h"

/* OpenMP pragmas that vanish (without -Wunknown-pragmas noise) when built with NO_OMP=1. */
#ifdef ECR_HAVE_OMP
#define ECR_PRAGMA_(x) _Pragma(#x)
#define ECR_OMP(x) ECR_PRAGMA_(omp x)
#else
#define ECR_OMP(x)
#endif

/* F.normalize's eps: the objective terms and the embeddings take unit rows as
 * v / max(|v|, ECR_NORM_EPS). */
#define ECR_NORM_EPS 1e-12

/* The calling thread's number in the current OpenMP team (0 outside a parallel region or
 * without OpenMP); with ecr_get_threads() it sizes and indexes per-thread scratch. */
int ecr_thread_id(void);
#endif
