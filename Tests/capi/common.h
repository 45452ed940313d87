/* Shared by the C-ABI tests: pass/fail reporting, status checks, sentinel
 * buffers, allocation and raw reference files. Header-only; each test is one
 * translation unit. CHECK_STATUS expects the test's resolved function table
 * `F` with `F.last_error` in scope. */
#ifndef FLAMINGO_CAPI_TEST_COMMON_H
#define FLAMINGO_CAPI_TEST_COMMON_H

#include "flamingo.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_passed, n_failed;
static pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;
/* Prefixed to failure messages while a fixture is being tested. */
static const char *current_fixture = "";

static inline void check_(int ok, const char *file, int line, const char *fmt, ...) {
    pthread_mutex_lock(&report_mu);
    if (ok) {
        n_passed++;
    } else {
        va_list ap;
        n_failed++;
        fprintf(stderr, "FAIL %s:%d: %s%s", file, line, current_fixture, current_fixture[0] ? ": " : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&report_mu);
}
#define CHECK(cond, ...) check_((cond) ? 1 : 0, __FILE__, __LINE__, __VA_ARGS__)

static inline const char *sname(flamingo_status s) {
    static const char *names[] = {
        "OK", "INVALID_ARGUMENT", "IO", "INVALID_FORMAT", "UNSUPPORTED", "OUT_OF_MEMORY",
        "BACKEND", "NOT_FOUND", "BUFFER_TOO_SMALL", "CANCELLED", "INTERNAL"};
    return ((int)s >= 0 && (int)s <= 10) ? names[s] : "<unknown>";
}

/* Checks that `got` is `want` and, for an error, that a message is set. */
#define CHECK_STATUS(got, want, what)                                                      \
    do {                                                                                   \
        flamingo_status got_ = (got), want_ = (want);                                      \
        CHECK(got_ == want_, "%s: got %s (%d), want %s [last error: %s]", (what),          \
              sname(got_), (int)got_, sname(want_), F.last_error());                       \
        if (want_ != FLAMINGO_OK && got_ == want_) {                                       \
            const char *m_ = F.last_error();                                               \
            CHECK(m_ != NULL && m_[0] != '\0', "%s: empty flamingo_last_error()", (what)); \
        }                                                                                  \
    } while (0)

/* Resolves F.field from the dlopen()ed `lib`, counting failures in `missing`. */
#define RESOLVE(field, name)                                                   \
    do {                                                                       \
        void *p_ = dlsym(lib, name);                                           \
        CHECK(p_ != NULL, "dlsym(%s): %s", name, p_ ? "" : dlerror());         \
        if (!p_) missing++;                                                    \
        memcpy(&F.field, &p_, sizeof p_); /* object -> function pointer */     \
    } while (0)

/* A recognisable byte pattern for "untouched" checks. */
#define SENTINEL 0xA5
static inline void fill(void *p, size_t n) { memset(p, SENTINEL, n); }
static inline int untouched(const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != SENTINEL) return 0;
    return 1;
}

static inline void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { perror("malloc"); exit(2); }
    return p;
}

/* max|a - ref| / max|ref|; +inf when a value is not finite. */
static inline double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        double d = fabs((double)a[i] - (double)ref[i]);
        if (d > num) num = d;
        if (fabs((double)ref[i]) > den) den = fabs((double)ref[i]);
    }
    return den > 0 ? num / den : num;
}

/* The whole file dir/name, which must be exactly want_bytes long (exit 2 otherwise). */
static inline void *read_bin(const char *dir, const char *name, size_t want_bytes) {
    char p[1024];
    if (snprintf(p, sizeof p, "%s/%s", dir, name) >= (int)sizeof p) {
        fprintf(stderr, "%s/%s: path too long\n", dir, name);
        exit(2);
    }
    FILE *f = fopen(p, "rb");
    if (!f) { perror(p); exit(2); }
    void *buf = xmalloc(want_bytes);
    size_t got = fread(buf, 1, want_bytes, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != want_bytes || extra) {
        fprintf(stderr, "%s: expected %zu bytes\n", p, want_bytes);
        exit(2);
    }
    return buf;
}

#endif
