/* strmap.h — internal: a string -> int open-addressing hash map (keys copied, owned). */
#ifndef ECR_STRMAP_H
#define ECR_STRMAP_H
#include <stddef.h>

typedef struct ecr_strmap {
    char **keys;              /* [cap], NULL = empty slot */
    int *vals;                /* [cap]                    */
    size_t cap, count;
} ecr_strmap;

/* Initialises an empty map; returns 0 on success, -1 on allocation failure. */
int ecr_strmap_init(ecr_strmap *m, size_t expected);
void ecr_strmap_free(ecr_strmap *m);
/* Value for `key`, or -1 when absent. */
int ecr_strmap_get(const ecr_strmap *m, const char *key);
/* Value for `key`; when absent inserts it with value m->count (so values number keys in
 * order of first insertion). Returns -1 on allocation failure. */
int ecr_strmap_intern(ecr_strmap *m, const char *key);
#endif
