/* strmap.c — string -> int hash map used for string tables (groups, languages, labels). */
#include "strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

int ecr_strmap_init(ecr_strmap *m, size_t expected) {
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    m->cap = cap;
    m->count = 0;
    if (!m->keys || !m->vals) {
        ecr_strmap_free(m);
        return -1;
    }
    return 0;
}

void ecr_strmap_free(ecr_strmap *m) {
    if (!m) return;
    if (m->keys)
        for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* Slot holding `key`, or the empty slot where it would go. */
static size_t find_slot(const ecr_strmap *m, const char *key) {
    size_t i = (size_t)str_hash(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

int ecr_strmap_get(const ecr_strmap *m, const char *key) {
    size_t i = find_slot(m, key);
    return m->keys[i] ? m->vals[i] : -1;
}

static int grow(ecr_strmap *m) {
    ecr_strmap bigger;
    if (ecr_strmap_init(&bigger, m->cap) != 0) return -1; /* doubles the capacity */
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = find_slot(&bigger, m->keys[i]);
        bigger.keys[j] = m->keys[i];
        bigger.vals[j] = m->vals[i];
        m->keys[i] = NULL;
    }
    bigger.count = m->count;
    ecr_strmap_free(m);
    *m = bigger;
    return 0;
}

int ecr_strmap_intern(ecr_strmap *m, const char *key) {
    size_t i = find_slot(m, key);
    if (m->keys[i]) return m->vals[i];
    if ((m->count + 1) * 2 > m->cap) {
        if (grow(m) != 0) return -1;
        i = find_slot(m, key);
    }
    m->keys[i] = strdup(key);
    if (!m->keys[i]) return -1;
    m->vals[i] = (int)m->count++;
    return m->vals[i];
}
