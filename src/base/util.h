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

/* y[d] = x / max(|x|, eps): the squared norm summed in double, column by column; eps = 0
 * leaves a zero row zero (any eps does). y may be x. Returns the squared norm. The one row
 * normalisation of the library's float rows (embeddings, anchors, metrics). */
double ecr_unit_row(const float *x, int d, double eps, float *y);
/* ecr_unit_row on each of n rows of x [n, d] into y, in parallel over rows. */
void ecr_unit_rows(const float *x, int64_t n, int d, double eps, float *y);

/* The calling thread's number in the current OpenMP team (0 outside a parallel region or
 * without OpenMP); with ecr_get_threads() it sizes and indexes per-thread scratch. */
int ecr_thread_id(void);

/* Longest line the line readers accept (corpus JSONL, log.jsonl): 64 MiB, far beyond any
 * text ecr trains on, far below what would exhaust memory. */
#define ECR_MAX_LINE ((size_t)64 << 20)
/* Reads the next line of fp into *buf (grown as needed, at most to max + 2 bytes; the
 * caller frees it), '\n' kept, NUL-terminated; a line may hold NUL bytes. Returns its
 * length in bytes, 0 at the end of the file, -1 on a read error (errno set), -2 when the
 * line is longer than max bytes (what follows of it is not read), -3 out of memory. */
long ecr_read_line(FILE *fp, char **buf, size_t *cap, size_t max);
#endif
