/* util.c — status codes, the thread-local error message, files (atomic output, paths,
 * mkdir -p, whole-file input), hashing, time. */
#define _POSIX_C_SOURCE 200809L
#include "ecr.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef ECR_HAVE_OMP
#include <omp.h>
#endif

static _Thread_local char g_err[1024];

const char *ecr_last_error(void) { return g_err; }

const char *ecr_status_name(ecr_status st) {
    switch (st) {
    case ECR_OK: return "ok";
    case ECR_E_INVALID: return "invalid input";
    case ECR_E_IO: return "i/o error";
    case ECR_E_NOMEM: return "out of memory";
    case ECR_E_RUNTIME: return "runtime failure";
    }
    return "unknown status";
}

ecr_status ecr_fail(ecr_status st, const char *fmt, ...) {
    char buf[sizeof g_err]; /* the arguments may be the previous message (ecr_last_error) */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(g_err, buf, sizeof g_err);
    /* Keep the message on one line. */
    for (char *p = g_err; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return st;
}

int ecr_exit_code(ecr_status st) {
    if (st == ECR_OK) return 0;
    return st == ECR_E_INVALID ? 2 : 1;
}

/* ---- atomic output ----------------------------------------------------------------- */

ecr_status ecr_atomic_open(ecr_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path);
    af->final_path = malloc(n + 1);
    af->tmp_path = malloc(n + 32);
    if (!af->final_path || !af->tmp_path) {
        ecr_atomic_abort(af);
        return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    }
    memcpy(af->final_path, path, n + 1);
    snprintf(af->tmp_path, n + 32, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp) {
        int e = errno;
        ecr_atomic_abort(af);
        return ecr_fail(ECR_E_IO, "%s: cannot create: %s", path, strerror(e));
    }
    return ECR_OK;
}

/* The folder that holds `path` ("." for a bare name, "/" at the root) into dir; its file
 * name (after the last '/'), or NULL when dir is too small. */
static const char *parent_dir(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, cap, ".");
    else if (slash == path) snprintf(dir, cap, "/");
    else if ((size_t)(slash - path) < cap) snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    else return NULL;
    return slash ? slash + 1 : path;
}

/* fsyncs the folder that holds `path`, so that a rename into it is durable too. 0 on success
 * (or where the filesystem cannot sync a folder), -1 with errno set. */
static int sync_parent(const char *path) {
    char dir[4096];
    if (!parent_dir(path, dir, sizeof dir)) return 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return 0; /* not ours to judge: the rename itself succeeded */
    int r = fsync(fd), e = errno;
    close(fd);
    if (r != 0 && (e == EINVAL || e == EROFS)) r = 0;
    errno = e;
    return r;
}

ecr_status ecr_atomic_commit(ecr_atomic_file *af) {
    ecr_status st = ECR_OK;
    int e = 0;
    if (fflush(af->fp) != 0 || ferror(af->fp)) { e = errno; st = ECR_E_IO; }
    if (st == ECR_OK && fsync(fileno(af->fp)) != 0) { e = errno; st = ECR_E_IO; }
    if (fclose(af->fp) != 0 && st == ECR_OK) { e = errno; st = ECR_E_IO; }
    af->fp = NULL;
    if (st == ECR_OK && rename(af->tmp_path, af->final_path) != 0) { e = errno; st = ECR_E_IO; }
    if (st == ECR_OK && sync_parent(af->final_path) != 0) { e = errno; st = ECR_E_IO; }
    if (st != ECR_OK) {
        ecr_fail(st, "%s: write failed: %s", af->final_path, strerror(e));
        remove(af->tmp_path);
    }
    free(af->final_path);
    free(af->tmp_path);
    af->final_path = af->tmp_path = NULL;
    return st;
}

void ecr_atomic_abort(ecr_atomic_file *af) {
    if (!af) return;
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) remove(af->tmp_path);
    free(af->final_path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

ecr_status ecr_atomic_check(const char *path) {
    char dir[4096];
    if (!parent_dir(path, dir, sizeof dir)) return ecr_fail(ECR_E_IO, "%s: cannot write: path too long", path);
    if (access(dir, W_OK | X_OK) != 0) return ecr_fail(ECR_E_IO, "%s: cannot write: %s", path, strerror(errno));
    return ECR_OK;
}

void ecr_atomic_clean(const char *path) {
    char dir[4096], prefix[512];
    const char *name = parent_dir(path, dir, sizeof dir);
    if (!name || (size_t)snprintf(prefix, sizeof prefix, "%s.tmp.", name) >= sizeof prefix) return;
    DIR *d = opendir(dir);
    if (!d) return;
    size_t np = strlen(prefix);
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, prefix, np) != 0 || !e->d_name[np] || strspn(e->d_name + np, "0123456789") != strlen(e->d_name + np))
            continue;
        char *p = ecr_path_join(dir, e->d_name);
        if (p) remove(p);
        free(p);
    }
    closedir(d);
}

ecr_status ecr_write_file(const char *path, const void *buf, size_t n) {
    ecr_atomic_file af;
    ecr_status st = ecr_atomic_open(&af, path);
    if (st) return st;
    if (n && fwrite(buf, 1, n, af.fp) != n) {
        ecr_atomic_abort(&af);
        return ecr_fail(ECR_E_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return ecr_atomic_commit(&af);
}

/* ---- one writer per folder ---------------------------------------------------------- */

ecr_status ecr_dir_lock(const char *dir, const char *who, int *fd) {
    *fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*fd < 0) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", dir, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return ECR_OK;
    int e = errno;
    close(*fd);
    *fd = -1;
    if (e == EWOULDBLOCK) return ecr_fail(ECR_E_INVALID, "%s: another ecr %s is writing to this folder", dir, who);
    return ecr_fail(ECR_E_IO, "%s: cannot lock: %s", dir, strerror(e));
}

void ecr_dir_unlock(int fd) {
    if (fd >= 0) close(fd);
}

/* ---- lines ------------------------------------------------------------------------- */

long ecr_read_line(FILE *fp, char **buf, size_t *cap, size_t max) {
    size_t n = 0;
    int c;
    flockfile(fp);
    while ((c = getc_unlocked(fp)) != EOF) {
        if (n + 2 > *cap) {
            if (n >= max) {
                funlockfile(fp);
                return -2;
            }
            size_t want = *cap ? *cap * 2 : 4096;
            if (want > max + 2) want = max + 2;
            char *p = realloc(*buf, want);
            if (!p) {
                funlockfile(fp);
                return -3;
            }
            *buf = p;
            *cap = want;
        }
        (*buf)[n++] = (char)c;
        if (c == '\n') break;
    }
    int err = ferror(fp);
    funlockfile(fp);
    if (err) {
        if (!errno) errno = EIO;
        return -1;
    }
    if (*buf) (*buf)[n] = '\0';
    return (long)n;
}

/* ---- paths and folders -------------------------------------------------------------- */

char *ecr_path_join(const char *dir, const char *name) {
    size_t nd = strlen(dir), n = nd + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s%s%s", dir, nd && dir[nd - 1] == '/' ? "" : "/", name);
    return p;
}

int ecr_file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

ecr_status ecr_make_dirs(const char *dir) {
    size_t n = strlen(dir);
    char *p = malloc(n + 1);
    if (!p) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", dir);
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            ecr_status st = ecr_fail(ECR_E_IO, "%s: cannot create directory %s: %s", dir, p, strerror(e));
            free(p);
            return st;
        }
        p[i] = c;
    }
    free(p);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ecr_fail(ECR_E_IO, "%s: not a directory", dir);
    return ECR_OK;
}

/* ---- whole-file input --------------------------------------------------------------- */

ecr_status ecr_read_file(const char *path, char **buf, size_t *len) {
    *buf = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return ecr_fail(ECR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) { /* keep room for the NUL */
            char *nb = realloc(b, cap * 2);
            if (!nb) { free(b); b = NULL; break; }
            b = nb;
            cap *= 2;
        }
        size_t got = fread(b + n, 1, cap - n - 1, fp);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!b) return ecr_fail(ECR_E_NOMEM, "%s: out of memory", path);
    if (err) { free(b); return ecr_fail(ECR_E_IO, "%s: read error", path); }
    b[n] = '\0';
    *buf = b;
    if (len) *len = n;
    return ECR_OK;
}

/* ---- misc -------------------------------------------------------------------------- */

void ecr_hash_hex(const void *buf, size_t len, char out[17]) {
    const unsigned char *p = buf;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

double ecr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ecr_free(void *p) { free(p); }

size_t ecr_struct_size(const char *type) {
    static const struct { const char *name; size_t size; } sizes[] = {
        {"ecr_config", sizeof(ecr_config)},     {"ecr_embed_opts", sizeof(ecr_embed_opts)},
        {"ecr_gen_opts", sizeof(ecr_gen_opts)}, {"ecr_lm_stats", sizeof(ecr_lm_stats)},
        {"ecr_lm_eval", sizeof(ecr_lm_eval)},
    };
    for (size_t i = 0; type && i < sizeof sizes / sizeof sizes[0]; i++)
        if (!strcmp(type, sizes[i].name)) return sizes[i].size;
    return 0;
}

double ecr_unit_row(const float *x, int d, double eps, float *y) {
    double s = 0.0;
    for (int j = 0; j < d; j++) s += (double)x[j] * x[j];
    double norm = sqrt(s), inv = norm > eps ? 1.0 / norm : eps > 0.0 ? 1.0 / eps : 0.0;
    for (int j = 0; j < d; j++) y[j] = (float)(x[j] * inv);
    return s;
}

void ecr_unit_rows(const float *x, int64_t n, int d, double eps, float *y) {
    ECR_OMP(parallel for schedule(static))
    for (int64_t i = 0; i < n; i++) ecr_unit_row(x + (size_t)i * d, d, eps, y + (size_t)i * d);
}

int ecr_thread_id(void) {
#ifdef ECR_HAVE_OMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
