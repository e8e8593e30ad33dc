/* faultshim.c — an LD_PRELOAD library that makes one file operation of a process fail or
 * kills the process just before it, for the fault tests (tests/cli_faults.sh).
 *
 *   ECR_FAULT=CALL:N:ACTION   the N-th call (from 1) of CALL in the process gets ACTION:
 *       CALL    fwrite | fputc | fflush | fclose | fsync | rename   (calls on stdout and
 *               stderr, and fflush(NULL), are not counted)
 *       ACTION  kill           SIGKILL just before the call (nothing of it happens)
 *               ENOSPC | EIO   the call fails with that errno as a failed write(2) below
 *                              stdio would: nothing is written, the stream's error
 *                              indicator is set (glibc's _IO_ERR_SEEN), fwrite returns
 *                              0, fputc/fflush/fclose EOF, fsync and rename -1; fclose
 *                              still closes the stream
 *   ECR_FAULT_COUNT=FILE      at exit, appends "CALL COUNT" per call kind to FILE
 *   ECR_FAULT_TRACE=1         prints "faultshim: CALL N FILE" on stderr for each counted call
 *                             on a stream (FILE from /proc/self/fd), to see what N hits
 *
 * Counting is per process and not thread-safe beyond what the project needs: ecr's file
 * output happens on one thread. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { F_FWRITE, F_FPUTC, F_FFLUSH, F_FCLOSE, F_FSYNC, F_RENAME, F_N };
static const char *names[F_N] = {"fwrite", "fputc", "fflush", "fclose", "fsync", "rename"};
static long counts[F_N];
static int target = -1, action_errno; /* action_errno 0: kill */
static long target_n;

static void parse(void) {
    static int done;
    if (done) return;
    done = 1;
    const char *s = getenv("ECR_FAULT");
    if (!s) return;
    char call[32], act[32];
    long n;
    if (sscanf(s, "%31[a-z]:%ld:%31s", call, &n, act) != 3) return;
    for (int i = 0; i < F_N; i++)
        if (!strcmp(call, names[i])) target = i;
    target_n = n;
    action_errno = !strcmp(act, "ENOSPC") ? ENOSPC : !strcmp(act, "EIO") ? EIO : 0;
}

/* Counts a call of kind k; 1 when this call must fail (errno set), after killing the
 * process when that is the action. */
static int hit(int k) {
    parse();
    if (++counts[k] != target_n || k != target) return 0;
    if (!action_errno) raise(SIGKILL);
    errno = action_errno;
    return 1;
}

static int counted(FILE *fp) { return fp && fp != stdout && fp != stderr; }

/* A failed write below stdio leaves the stream's error indicator set (ferror). */
static void set_error(FILE *fp) { fp->_flags |= _IO_ERR_SEEN; }

static void trace(int k, FILE *fp) {
    static int on = -1;
    if (on < 0) on = getenv("ECR_FAULT_TRACE") != NULL;
    if (!on) return;
    char link[64], path[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fileno(fp));
    ssize_t n = readlink(link, path, sizeof path - 1);
    path[n > 0 ? n : 0] = 0;
    fprintf(stderr, "faultshim: %s %ld %s\n", names[k], counts[k] + 1, path);
}

#define NEXT(ret, name, args) static ret(*next) args; if (!next) next = (ret(*) args)dlsym(RTLD_NEXT, name)

size_t fwrite(const void *p, size_t size, size_t n, FILE *fp) {
    NEXT(size_t, "fwrite", (const void *, size_t, size_t, FILE *));
    if (counted(fp)) trace(F_FWRITE, fp);
    if (counted(fp) && hit(F_FWRITE)) {
        set_error(fp);
        return 0;
    }
    return next(p, size, n, fp);
}

int fputc(int c, FILE *fp) {
    NEXT(int, "fputc", (int, FILE *));
    if (counted(fp)) trace(F_FPUTC, fp);
    if (counted(fp) && hit(F_FPUTC)) {
        set_error(fp);
        return EOF;
    }
    return next(c, fp);
}

int fflush(FILE *fp) {
    NEXT(int, "fflush", (FILE *));
    if (counted(fp)) trace(F_FFLUSH, fp);
    if (counted(fp) && hit(F_FFLUSH)) {
        set_error(fp);
        return EOF;
    }
    return next(fp);
}

int fclose(FILE *fp) {
    NEXT(int, "fclose", (FILE *));
    if (counted(fp)) trace(F_FCLOSE, fp);
    if (counted(fp) && hit(F_FCLOSE)) {
        int e = errno;
        next(fp);
        errno = e;
        return EOF;
    }
    return next(fp);
}

int fsync(int fd) {
    NEXT(int, "fsync", (int));
    if (hit(F_FSYNC)) return -1;
    return next(fd);
}

int rename(const char *from, const char *to) {
    NEXT(int, "rename", (const char *, const char *));
    if (hit(F_RENAME)) return -1;
    return next(from, to);
}

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("ECR_FAULT_COUNT");
    if (!path) return;
    FILE *fp = fopen(path, "a");
    if (!fp) return;
    for (int i = 0; i < F_N; i++) fprintf(fp, "%s %ld\n", names[i], counts[i]);
    fclose(fp); /* counted too, after the report: harmless */
}
