/* test.h — a minimal check harness. Every check counts; a test program exits 1 if any
 * check failed, so `make test` cannot pass on a test that asserts nothing wrong. */
#ifndef ECR_TEST_H
#define ECR_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "ecr.h"

static int t_checks, t_failed;

#define CHECK(cond) do { t_checks++; if (!(cond)) { t_failed++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { t_checks++; if (!(cond)) { t_failed++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)
#define CHECK_OK(expr) do { ecr_status st_ = (expr); t_checks++; if (st_ != ECR_OK) { t_failed++; \
    fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr, \
            ecr_status_name(st_), ecr_last_error()); } } while (0)
#define CHECK_STATUS(expr, want) do { ecr_status st_ = (expr); t_checks++; if (st_ != (want)) { \
    t_failed++; fprintf(stderr, "%s:%d: %s returned %s, wanted %s (%s)\n", __FILE__, __LINE__, \
    #expr, ecr_status_name(st_), ecr_status_name(want), ecr_last_error()); } } while (0)
#define CHECK_CLOSE(a, b, tol) do { double a_ = (a), b_ = (b); t_checks++; \
    if (!(fabs(a_ - b_) <= (tol))) { t_failed++; fprintf(stderr, \
    "%s:%d: %s = %.9g, %s = %.9g, |diff| %.3g > %.3g\n", __FILE__, __LINE__, #a, a_, #b, b_, \
    fabs(a_ - b_), (double)(tol)); } } while (0)

#define RUN(fn) do { int f0_ = t_failed; fn(); \
    fprintf(stderr, "  %-40s %s\n", #fn, t_failed == f0_ ? "pass" : "FAIL"); } while (0)

static inline int test_finish(const char *name) {
    fprintf(stderr, "%s: %d checks, %d failed\n", name, t_checks, t_failed);
    return (t_failed || t_checks == 0) ? 1 : 0;
}
#endif
