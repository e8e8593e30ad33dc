/* util.h — internal helpers shared by the library's source files. */
#ifndef ECR_UTIL_H
#define ECR_UTIL_H
#include "ecr.h"

/* Reads the whole file at `path` into a malloc'd, NUL-terminated buffer (*buf, caller
 * frees; *len, if non-NULL, is the byte count without the NUL). Fails with ECR_E_IO
 * ("path: cannot open: reason" / "path: read error") or ECR_E_NOMEM; *buf is NULL then. */
ecr_status ecr_read_file(const char *path, char **buf, size_t *len);

/* The calling thread's number in the current OpenMP team (0 outside a parallel region or
 * without OpenMP); with ecr_get_threads() it sizes and indexes per-thread scratch. */
int ecr_thread_id(void);
#endif
