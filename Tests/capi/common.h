/* Shared by the C-ABI tests: the API table `F` and `open_api`, pass/fail
 * reporting, status checks, sentinel buffers, allocation and raw reference
 * files. Header-only; each test is one translation unit. */
#ifndef FLAMINGO_CAPI_TEST_COMMON_H
#define FLAMINGO_CAPI_TEST_COMMON_H

#include "flamingo.h"

#include <dlfcn.h>
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

/* The C API as the tests call it: every function through F, resolved with dlsym from the
 * dlopen()ed library (the tests link nothing, as a host that loads the library would), each
 * field typed from the header's own declaration. */
#define FLAMINGO_API(X)                                                                              \
    X(version) X(abi_version) X(status_string) X(last_error) X(log_set) X(log_set_level)             \
    X(device_count) X(device_get_info) X(model_default_params) X(model_load) X(model_free)           \
    X(model_get_info) X(model_encode_images) X(model_preprocess_image) X(session_default_params)     \
    X(session_init) X(session_free) X(session_copy) X(session_set_media) X(session_set_images)       \
    X(session_set_prompt) X(session_eval) X(session_length) X(session_truncate)                      \
    X(generate_default_params) X(session_generate) X(batch_generate) X(tokenize) X(detokenize)       \
    X(detokenizer_init) X(detokenizer_free) X(detokenizer_push) X(quantize_default_params)          \
    X(model_quantize)
#define API_FIELD(name) __typeof__(&flamingo_##name) name;
static struct {
    FLAMINGO_API(API_FIELD)
} F;
#undef API_FIELD

/* dlopen()s the library at `path` and resolves F (one check per function). On failure prints
 * why and "<suite>: P passed, F failed", and returns NULL. */
static inline void *open_api(const char *path, const char *suite) {
    /* Sanitizer runs keep the library mapped after dlclose, so that LeakSanitizer, which
     * looks at exit, can name the frames of what it reports. */
    int mode = RTLD_NOW | RTLD_LOCAL | (getenv("FLAMINGO_TEST_NODELETE") ? RTLD_NODELETE : 0);
    void *lib = dlopen(path, mode);
    if (!lib) {
        fprintf(stderr, "dlopen(%s): %s\n", path, dlerror());
        printf("%s: 0 passed, 1 failed\n", suite);
        return NULL;
    }
    int missing = 0;
#define API_RESOLVE(name)                                                                  \
    {                                                                                      \
        void *p_ = dlsym(lib, "flamingo_" #name);                                          \
        CHECK(p_ != NULL, "dlsym(flamingo_%s): %s", #name, p_ ? "" : dlerror());           \
        if (!p_) missing++;                                                                \
        memcpy(&F.name, &p_, sizeof p_); /* object -> function pointer */                  \
    }
    FLAMINGO_API(API_RESOLVE)
#undef API_RESOLVE
    if (missing) {
        printf("%s: %d passed, %d failed\n", suite, n_passed, n_failed);
        return NULL;
    }
    return lib;
}

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
