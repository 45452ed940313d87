/* C-ABI conformance test for libflamingo.
 *
 *   test_dlopen LIBRARY [MODEL_DIR]
 *
 * dlopen()s LIBRARY with RTLD_NOW | RTLD_LOCAL, resolves every function of
 * include/flamingo.h with dlsym and checks the conventions the header
 * promises: error statuses and messages, untouched out parameters on
 * failure, struct_size handling, per-thread last error, logging. With
 * MODEL_DIR (a fixture model directory) it also loads the model, checks that
 * its info is sane and loads it from several threads at once.
 *
 * The last line is "capi: N passed, M failed"; the exit status is 0 only
 * when M is 0.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <dirent.h>
#include <math.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the library, resolved at run time ---------------------------------- */


static int nul_terminated(const char *s, size_t cap) { return memchr(s, 0, cap) != NULL; }

/* ---- logging ------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    int count;             /* messages received */
    int bad;               /* messages with a wrong level, user_data or text */
    int min_level_seen;
    char first[256];
} log_sink;

static log_sink the_sink = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 99, ""};

static void log_cb(flamingo_log_level level, const char *message, void *user_data) {
    log_sink *s = user_data;
    if (s != &the_sink) { /* wrong user_data: count it against the global sink */
        pthread_mutex_lock(&the_sink.mu);
        the_sink.bad++;
        pthread_mutex_unlock(&the_sink.mu);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->count++;
    if ((int)level < FLAMINGO_LOG_DEBUG || (int)level >= FLAMINGO_LOG_NONE) s->bad++;
    if (message == NULL || message[0] == '\0') {
        s->bad++;
    } else {
        size_t n = strlen(message);
        if (message[n - 1] == '\n') s->bad++;
        if (s->first[0] == '\0') snprintf(s->first, sizeof s->first, "%s", message);
    }
    if ((int)level < s->min_level_seen) s->min_level_seen = (int)level;
    pthread_mutex_unlock(&s->mu);
}

static void sink_reset(void) {
    pthread_mutex_lock(&the_sink.mu);
    the_sink.count = 0;
    the_sink.bad = 0;
    the_sink.min_level_seen = 99;
    the_sink.first[0] = '\0';
    pthread_mutex_unlock(&the_sink.mu);
}

static int sink_count(int *bad, int *min_level) {
    pthread_mutex_lock(&the_sink.mu);
    int c = the_sink.count;
    if (bad) *bad = the_sink.bad;
    if (min_level) *min_level = the_sink.min_level_seen;
    pthread_mutex_unlock(&the_sink.mu);
    return c;
}

/* ---- temporary directories ---------------------------------------------- */

static char tmp_root[256];

static void write_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(2); }
    fputs(text, f);
    fclose(f);
}

static void make_tmp(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/flamingo-capi-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmp_root)) { perror("mkdtemp"); exit(2); }
    char p[512];
    snprintf(p, sizeof p, "%s/garbage", tmp_root);
    mkdir(p, 0700);
    write_file(p, "config.json", "this is { not json");
    write_file(p, "model.safetensors", "garbage");
    snprintf(p, sizeof p, "%s/empty", tmp_root);
    mkdir(p, 0700);
    write_file(tmp_root, "plain_file", "not a directory");
}

static void rm_tmp(void) {
    const char *files[] = {"garbage/config.json", "garbage/model.safetensors", "garbage",
                           "empty", "plain_file", "q8/config.json", "q8/model.safetensors",
                           "q8/tokenizer.json", "q8/reference.json", "q8"};
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", tmp_root, files[i]);
        if (remove(p) != 0 && errno != ENOENT) perror(p);
    }
    rmdir(tmp_root);
}

/* ---- tests -------------------------------------------------------------- */

static void test_versions(void) {
    const char *v = F.version();
    CHECK(v != NULL && v[0] != '\0', "flamingo_version() is NULL or empty");
    if (v) {
        unsigned a, b, c;
        CHECK(sscanf(v, "%u.%u.%u", &a, &b, &c) == 3, "flamingo_version() = \"%s\" is not x.y.z", v);
        CHECK(F.version() == v, "flamingo_version() is not static storage");
    }
    CHECK(F.abi_version() == FLAMINGO_ABI_VERSION, "flamingo_abi_version() = %u, header says %d",
          F.abi_version(), FLAMINGO_ABI_VERSION);
}

static void test_status_strings(void) {
    const char *seen[11];
    for (int i = 0; i <= 10; i++) {
        const char *s = F.status_string((flamingo_status)i);
        seen[i] = s;
        CHECK(s != NULL && s[0] != '\0', "flamingo_status_string(%d) is NULL or empty", i);
        if (!s) continue;
        CHECK(strcmp(s, "unknown status") != 0, "flamingo_status_string(%d) = \"unknown status\"", i);
        for (int j = 0; j < i; j++)
            CHECK(seen[j] == NULL || strcmp(seen[j], s) != 0,
                  "flamingo_status_string(%d) == flamingo_status_string(%d) = \"%s\"", i, j, s);
    }
    const int unknown[] = {11, 12, 100, -1, 0x7fffffff};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        const char *s = F.status_string((flamingo_status)unknown[i]);
        CHECK(s != NULL && strcmp(s, "unknown status") == 0,
              "flamingo_status_string(%d) = \"%s\", want \"unknown status\"", unknown[i],
              s ? s : "(null)");
    }
}

static void *fresh_thread_last_error(void *arg) {
    const char *m = F.last_error();
    *(int *)arg = (m != NULL && m[0] == '\0');
    return NULL;
}

static void test_last_error_initially_empty(void) {
    int ok = 0;
    pthread_t t;
    pthread_create(&t, NULL, fresh_thread_last_error, &ok);
    pthread_join(t, NULL);
    CHECK(ok, "flamingo_last_error() is not \"\" on a thread where nothing failed yet");
}

static void test_devices(size_t *count_out) {
    CHECK_STATUS(F.device_count(NULL), FLAMINGO_ERROR_INVALID_ARGUMENT, "device_count(NULL)");

    size_t n = 0;
    flamingo_status st = F.device_count(&n);
    CHECK(st == FLAMINGO_OK || st == FLAMINGO_ERROR_BACKEND, "device_count: %s: %s", sname(st),
          F.last_error());
    if (st != FLAMINGO_OK) {
        /* The header says the CPU is still usable, but out_count is untouched
         * on error, so the caller cannot learn the count: carry on with 1. */
        fprintf(stderr, "note: device_count returned BACKEND (%s)\n", F.last_error());
        n = 1;
    }
    CHECK(n >= 1, "device_count = %zu, want >= 1 (device 0 is the CPU)", n);
    *count_out = n;

    size_t n2 = 0;
    if (F.device_count(&n2) == FLAMINGO_OK) CHECK(n2 == n, "device_count changed: %zu then %zu", n, n2);

    flamingo_device_info d;

    CHECK_STATUS(F.device_get_info(0, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT, "device_get_info(0, NULL)");

    const uint32_t small[] = {0, 4, (uint32_t)offsetof(flamingo_device_info, name),
                              (uint32_t)sizeof d - 1};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        fill(&d, sizeof d);
        d.struct_size = small[i];
        char what[64];
        snprintf(what, sizeof what, "device_get_info(struct_size=%u)", small[i]);
        CHECK_STATUS(F.device_get_info(0, &d), FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(d.struct_size == small[i] && untouched((char *)&d + 4, sizeof d - 4),
              "%s: out parameter modified on error", what);
    }

    const size_t bad_index[] = {n, n + 1, (size_t)1 << 20, SIZE_MAX};
    for (size_t i = 0; i < sizeof bad_index / sizeof *bad_index; i++) {
        fill(&d, sizeof d);
        d.struct_size = sizeof d;
        char what[64];
        snprintf(what, sizeof what, "device_get_info(index=%zu)", bad_index[i]);
        CHECK_STATUS(F.device_get_info(bad_index[i], &d), FLAMINGO_ERROR_NOT_FOUND, what);
        CHECK(d.struct_size == sizeof d && untouched((char *)&d + 4, sizeof d - 4),
              "%s: out parameter modified on error", what);
    }

    fill(&d, sizeof d);
    d.struct_size = sizeof d;
    CHECK_STATUS(F.device_get_info(0, &d), FLAMINGO_OK, "device_get_info(0)");
    CHECK(d.struct_size == sizeof d, "device 0: struct_size changed to %u", d.struct_size);
    CHECK(d.backend == FLAMINGO_BACKEND_CPU, "device 0: backend %d, want CPU", (int)d.backend);
    CHECK(d.type == FLAMINGO_DEVICE_CPU, "device 0: type %d, want CPU", (int)d.type);
    CHECK(d.platform_index == -1 && d.device_index == -1,
          "device 0: platform_index %d device_index %d, want -1 -1", d.platform_index, d.device_index);
    CHECK(d.compute_units >= 1, "device 0: compute_units = %u", d.compute_units);
    CHECK(d.memory_bytes > 0 && d.memory_bytes != 0xA5A5A5A5A5A5A5A5ull,
          "device 0: memory_bytes = %llu", (unsigned long long)d.memory_bytes);
    CHECK(nul_terminated(d.name, sizeof d.name) && d.name[0] != '\0', "device 0: bad name");
    CHECK(nul_terminated(d.platform_name, sizeof d.platform_name) && d.platform_name[0] == '\0',
          "device 0: platform_name is not \"\"");
    CHECK(nul_terminated(d.vendor, sizeof d.vendor), "device 0: vendor not NUL-terminated");
    CHECK(nul_terminated(d.driver_version, sizeof d.driver_version),
          "device 0: driver_version not NUL-terminated");

    for (size_t i = 1; i < n; i++) {
        fill(&d, sizeof d);
        d.struct_size = sizeof d;
        char what[64];
        snprintf(what, sizeof what, "device_get_info(%zu)", i);
        CHECK_STATUS(F.device_get_info(i, &d), FLAMINGO_OK, what);
        CHECK(d.backend == FLAMINGO_BACKEND_OPENCL, "device %zu: backend %d, want OPENCL", i, (int)d.backend);
        CHECK((int)d.type >= 0 && (int)d.type <= 3, "device %zu: type %d", i, (int)d.type);
        CHECK(d.platform_index >= 0 && d.device_index >= 0, "device %zu: negative indices", i);
        CHECK(nul_terminated(d.name, sizeof d.name) && nul_terminated(d.platform_name, sizeof d.platform_name) &&
              nul_terminated(d.vendor, sizeof d.vendor) && nul_terminated(d.driver_version, sizeof d.driver_version),
              "device %zu: string not NUL-terminated", i);
    }

    /* A caller compiled against a newer header passes a larger struct: the
     * library may accept it (writing only what it knows) or refuse it, but
     * must never write past the struct it knows. */
    struct {
        flamingo_device_info d;
        unsigned char tail[64];
    } big;
    fill(&big, sizeof big);
    big.d.struct_size = sizeof big;
    st = F.device_get_info(0, &big.d);
    CHECK(st == FLAMINGO_OK || st == FLAMINGO_ERROR_INVALID_ARGUMENT,
          "device_get_info(struct_size=%zu): %s", sizeof big, sname(st));
    CHECK(untouched(big.tail, sizeof big.tail), "device_get_info wrote past sizeof(flamingo_device_info)");
}

static void test_default_params(void) {
    flamingo_model_params p;
    CHECK_STATUS(F.model_default_params(NULL, sizeof p), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_default_params(NULL)");
    const size_t small[] = {0, 4, sizeof p - 1};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        fill(&p, sizeof p);
        char what[64];
        snprintf(what, sizeof what, "model_default_params(size=%zu)", small[i]);
        CHECK_STATUS(F.model_default_params(&p, small[i]), FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(untouched(&p, sizeof p), "%s: params modified on error", what);
    }
    fill(&p, sizeof p);
    CHECK_STATUS(F.model_default_params(&p, sizeof p), FLAMINGO_OK, "model_default_params");
    CHECK(p.struct_size == sizeof p, "default params: struct_size %u", p.struct_size);
    CHECK(p.backend == FLAMINGO_BACKEND_CPU, "default params: backend %d", (int)p.backend);
    CHECK(p.device_index == -1, "default params: device_index %d", p.device_index);
    CHECK(p.n_threads == 0, "default params: n_threads %u", p.n_threads);

    struct {
        flamingo_model_params p;
        unsigned char tail[32];
    } big;
    fill(&big, sizeof big);
    flamingo_status st = F.model_default_params(&big.p, sizeof big);
    CHECK(st == FLAMINGO_OK || st == FLAMINGO_ERROR_INVALID_ARGUMENT,
          "model_default_params(size=%zu): %s", sizeof big, sname(st));
    if (st == FLAMINGO_OK)
        CHECK(big.p.struct_size == sizeof big && big.p.device_index == -1,
              "model_default_params(size=%zu): struct_size %u", sizeof big, big.p.struct_size);
}

static flamingo_model *const MODEL_SENTINEL = (flamingo_model *)(uintptr_t)0xA5A5A5A5u;

static void expect_load_error(const char *path, const flamingo_model_params *params,
                              flamingo_status want, const char *what) {
    flamingo_model *m = MODEL_SENTINEL;
    flamingo_status st = F.model_load(path, params, &m);
    CHECK_STATUS(st, want, what);
    CHECK(m == MODEL_SENTINEL, "%s: out_model modified on error", what);
    if (st == FLAMINGO_OK && m != MODEL_SENTINEL) F.model_free(m);
}

static void test_load_errors(void) {
    char p[512];
    flamingo_model *m = MODEL_SENTINEL;

    CHECK_STATUS(F.model_load(NULL, NULL, &m), FLAMINGO_ERROR_INVALID_ARGUMENT, "model_load(path=NULL)");
    CHECK(m == MODEL_SENTINEL, "model_load(path=NULL): out_model modified");
    CHECK_STATUS(F.model_load(tmp_root, NULL, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT,
                 "model_load(out_model=NULL)");

    snprintf(p, sizeof p, "%s/does-not-exist", tmp_root);
    expect_load_error(p, NULL, FLAMINGO_ERROR_IO, "model_load(missing dir)");
    expect_load_error("", NULL, FLAMINGO_ERROR_IO, "model_load(\"\")");

    snprintf(p, sizeof p, "%s/empty", tmp_root);
    expect_load_error(p, NULL, FLAMINGO_ERROR_IO, "model_load(dir without config.json)");

    snprintf(p, sizeof p, "%s/garbage", tmp_root);
    expect_load_error(p, NULL, FLAMINGO_ERROR_INVALID_FORMAT, "model_load(garbage config.json)");

    /* A regular file where a directory is expected: the header does not say
     * which status; accept IO or INVALID_FORMAT. */
    snprintf(p, sizeof p, "%s/plain_file", tmp_root);
    m = MODEL_SENTINEL;
    flamingo_status st = F.model_load(p, NULL, &m);
    CHECK(st == FLAMINGO_ERROR_IO || st == FLAMINGO_ERROR_INVALID_FORMAT,
          "model_load(regular file): %s, want IO or INVALID_FORMAT", sname(st));
    CHECK(m == MODEL_SENTINEL, "model_load(regular file): out_model modified on error");

    /* Bad params are caught whatever the path. */
    flamingo_model_params params;
    F.model_default_params(&params, sizeof params);
    params.struct_size = 0;
    expect_load_error(tmp_root, &params, FLAMINGO_ERROR_INVALID_ARGUMENT, "model_load(params.struct_size=0)");

    F.model_free(NULL); /* must be a no-op */
    CHECK(1, "model_free(NULL)");
}

static void test_model_info_errors(flamingo_model *model) {
    flamingo_model_info info;
    fill(&info, sizeof info);
    info.struct_size = sizeof info;
    CHECK_STATUS(F.model_get_info(NULL, &info), FLAMINGO_ERROR_INVALID_ARGUMENT, "model_get_info(NULL model)");
    CHECK(info.struct_size == sizeof info && untouched((char *)&info + 4, sizeof info - 4),
          "model_get_info(NULL model): out modified on error");
    if (!model) return;
    CHECK_STATUS(F.model_get_info(model, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT, "model_get_info(out=NULL)");
    /* Below the first published version of the struct, which ended before
     * visual_dim (callers built against that header pass its size). */
    const uint32_t small[] = {0, 4, (uint32_t)offsetof(flamingo_model_info, num_parameters),
                              (uint32_t)offsetof(flamingo_model_info, visual_dim) - 1};
    for (size_t i = 0; i < sizeof small / sizeof *small; i++) {
        fill(&info, sizeof info);
        info.struct_size = small[i];
        char what[64];
        snprintf(what, sizeof what, "model_get_info(struct_size=%u)", small[i]);
        CHECK_STATUS(F.model_get_info(model, &info), FLAMINGO_ERROR_INVALID_ARGUMENT, what);
        CHECK(info.struct_size == small[i] && untouched((char *)&info + 4, sizeof info - 4),
              "%s: out modified on error", what);
    }
}

/* ---- per-thread last error ---------------------------------------------- */

typedef struct {
    int fresh_empty;
    int got_status;
    char msg[512];
} thread_err;

static void *second_thread_error(void *arg) {
    thread_err *r = arg;
    r->fresh_empty = F.last_error()[0] == '\0';
    flamingo_device_info d;
    d.struct_size = sizeof d;
    r->got_status = F.device_get_info((size_t)1 << 30, &d);
    snprintf(r->msg, sizeof r->msg, "%s", F.last_error());
    return NULL;
}

static void test_last_error_per_thread(void) {
    CHECK_STATUS(F.device_count(NULL), FLAMINGO_ERROR_INVALID_ARGUMENT, "device_count(NULL)");
    const char *mine = F.last_error();
    char copy[512];
    snprintf(copy, sizeof copy, "%s", mine);

    /* Successful calls do not clear it. */
    size_t n;
    F.device_count(&n);
    (void)F.version();
    CHECK(strcmp(F.last_error(), copy) == 0, "a successful call changed flamingo_last_error()");

    thread_err r;
    memset(&r, 0, sizeof r);
    pthread_t t;
    pthread_create(&t, NULL, second_thread_error, &r);
    pthread_join(t, NULL);
    CHECK(r.fresh_empty, "second thread: last error not \"\" before its first failure");
    CHECK(r.got_status == FLAMINGO_ERROR_NOT_FOUND, "second thread: got %s, want NOT_FOUND", sname(r.got_status));
    CHECK(r.msg[0] != '\0', "second thread: empty message");
    CHECK(strcmp(r.msg, copy) != 0, "second thread's message equals the main thread's (\"%s\")", copy);
    CHECK(strcmp(F.last_error(), copy) == 0,
          "main thread's last error changed by a failure on another thread: \"%s\" -> \"%s\"", copy,
          F.last_error());
    CHECK(strcmp(mine, copy) == 0, "main thread's last-error string was overwritten by another thread");
}

/* ---- logging ------------------------------------------------------------ */

static void test_log_basics(void) {
    /* Setting and clearing must work at any time; out-of-range levels clamp. */
    F.log_set(log_cb, &the_sink);
    F.log_set_level((flamingo_log_level)99);
    F.log_set_level((flamingo_log_level)-1);
    F.log_set_level(FLAMINGO_LOG_WARN);
    F.log_set(NULL, NULL);
    CHECK(1, "log_set/log_set_level");
}

/* ---- fixture model ------------------------------------------------------ */

static uint64_t weight_file_bytes(const char *dir) {
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 12 && strcmp(e->d_name + n - 12, ".safetensors") == 0) {
            char p[1024];
            struct stat st;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (stat(p, &st) == 0) total += (uint64_t)st.st_size;
        }
    }
    closedir(d);
    return total;
}

static void check_info_sane(const flamingo_model_info *i, const char *dir) {
    CHECK(i->struct_size == sizeof *i, "info: struct_size changed to %u", i->struct_size);
    CHECK(nul_terminated(i->architecture, sizeof i->architecture) &&
          strcmp(i->architecture, "openflamingo") == 0, "info: architecture \"%.32s\"", i->architecture);
    CHECK(nul_terminated(i->vision_kind, sizeof i->vision_kind), "info: vision_kind not terminated");
    int fam_ok = nul_terminated(i->lm_family, sizeof i->lm_family) &&
                 (strcmp(i->lm_family, "mpt") == 0 || strcmp(i->lm_family, "mosaic_gpt") == 0 ||
                  strcmp(i->lm_family, "gpt_neox") == 0 || strcmp(i->lm_family, "llama") == 0);
    CHECK(fam_ok, "info: lm_family \"%.32s\"", i->lm_family);

    CHECK(i->image_size > 0 && i->patch_size > 0 && i->image_size % i->patch_size == 0,
          "info: image_size %u patch_size %u", i->image_size, i->patch_size);
    if (i->patch_size) {
        uint32_t g = i->image_size / i->patch_size;
        CHECK(i->vision_tokens == g * g || i->vision_tokens == g * g + 1,
              "info: vision_tokens %u for a %ux%u grid", i->vision_tokens, g, g);
    }
    int nfnet = strcmp(i->vision_kind, "nfnet") == 0;
    CHECK(nfnet || strcmp(i->vision_kind, "clip_vit") == 0, "info: vision_kind \"%.32s\"", i->vision_kind);
    CHECK(i->vision_width > 0 && i->vision_layers > 0 &&
          (nfnet ? i->vision_heads == 0 : i->vision_heads > 0 && i->vision_width % i->vision_heads == 0),
          "info: vision width %u layers %u heads %u", i->vision_width, i->vision_layers, i->vision_heads);
    CHECK(i->resampler_depth > 0 && i->resampler_heads > 0 && i->resampler_dim_head > 0 && i->num_latents > 0,
          "info: resampler depth %u heads %u dim_head %u latents %u", i->resampler_depth,
          i->resampler_heads, i->resampler_dim_head, i->num_latents);
    CHECK(i->hidden_size > 0 && i->num_layers > 0 && i->num_heads > 0 && i->hidden_size % i->num_heads == 0,
          "info: hidden %u layers %u heads %u", i->hidden_size, i->num_layers, i->num_heads);
    CHECK(i->intermediate_size > 0 && i->max_seq_len > 0 && i->vocab_size > 0,
          "info: intermediate %u max_seq_len %u vocab %u", i->intermediate_size, i->max_seq_len, i->vocab_size);
    CHECK(i->cross_attn_every_n_layers >= 1 && i->num_cross_attn_layers >= 1 &&
          i->cross_attn_every_n_layers > 0 && i->num_cross_attn_layers == i->num_layers / i->cross_attn_every_n_layers,
          "info: cross-attention every %u of %u layers, %u blocks", i->cross_attn_every_n_layers,
          i->num_layers, i->num_cross_attn_layers);

    const int32_t ids[] = {i->image_token_id, i->endofchunk_token_id, i->pad_token_id, i->bos_token_id,
                           i->eos_token_id};
    const char *names[] = {"image", "endofchunk", "pad", "bos", "eos"};
    for (int k = 0; k < 5; k++)
        CHECK(ids[k] >= -1 && ids[k] < (int64_t)i->vocab_size, "info: %s_token_id %d (vocab %u)", names[k],
              ids[k], i->vocab_size);
    CHECK(i->image_token_id >= 0 && i->endofchunk_token_id >= 0 && i->image_token_id != i->endofchunk_token_id,
          "info: image_token_id %d endofchunk_token_id %d", i->image_token_id, i->endofchunk_token_id);
    for (int k = 0; k < 3; k++) {
        CHECK(i->image_mean[k] > 0.0f && i->image_mean[k] < 1.0f, "info: image_mean[%d] = %g", k,
              (double)i->image_mean[k]);
        CHECK(i->image_std[k] > 0.0f && i->image_std[k] < 1.0f, "info: image_std[%d] = %g", k,
              (double)i->image_std[k]);
    }
    CHECK(i->visual_dim > 0 && i->visual_dim != 0xA5A5A5A5u, "info: visual_dim %u", i->visual_dim);
    CHECK(i->num_parameters > 0, "info: num_parameters 0");
    CHECK(i->weight_bytes >= 2 * i->num_parameters && i->weight_bytes <= 4 * i->num_parameters,
          "info: weight_bytes %llu not 2..4 bytes per parameter (%llu)", (unsigned long long)i->weight_bytes,
          (unsigned long long)i->num_parameters);
    uint64_t files = weight_file_bytes(dir);
    CHECK(files == 0 || i->weight_bytes <= files, "info: weight_bytes %llu > size of the .safetensors files %llu",
          (unsigned long long)i->weight_bytes, (unsigned long long)files);
}

typedef struct {
    const char *dir;
    const flamingo_model_info *expect;
    const flamingo_model *shared;
    int load_status;
    int info_status;
    int same_info;
    int shared_ok;
    char err[256];
} load_job;

static void *load_thread(void *arg) {
    load_job *j = arg;
    flamingo_model *m = NULL;
    flamingo_model_params p;
    F.model_default_params(&p, sizeof p);
    p.n_threads = 1;
    j->load_status = F.model_load(j->dir, &p, &m);
    if (j->load_status != FLAMINGO_OK) {
        snprintf(j->err, sizeof j->err, "%s", F.last_error());
        return NULL;
    }
    flamingo_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    j->info_status = F.model_get_info(m, &info);
    j->same_info = memcmp(&info, j->expect, sizeof info) == 0;
    F.model_free(m);

    /* The model loaded by the main thread is shared with this one. */
    flamingo_model_info info2;
    memset(&info2, 0, sizeof info2);
    info2.struct_size = sizeof info2;
    j->shared_ok = F.model_get_info(j->shared, &info2) == FLAMINGO_OK &&
                   memcmp(&info2, j->expect, sizeof info2) == 0;
    return NULL;
}

static void test_fixture(const char *dir) {
    flamingo_model *m = MODEL_SENTINEL;
    int bad = 0, min_level = 99;

    /* Default level is WARN: a successful load logs nothing at INFO or below. */
    sink_reset();
    F.log_set(log_cb, &the_sink);
    F.log_set_level(FLAMINGO_LOG_WARN);
    flamingo_status st = F.model_load(dir, NULL, &m);
    CHECK_STATUS(st, FLAMINGO_OK, "model_load(fixture, params=NULL)");
    if (st != FLAMINGO_OK) { F.log_set(NULL, NULL); return; }
    CHECK(m != NULL && m != MODEL_SENTINEL, "model_load: no model returned");
    sink_count(&bad, &min_level);
    CHECK(min_level >= FLAMINGO_LOG_WARN, "a message below WARN (level %d) arrived at level WARN", min_level);
    F.model_free(m);

    /* At INFO the load is logged through the callback with our user_data. */
    sink_reset();
    F.log_set_level(FLAMINGO_LOG_INFO);
    m = NULL;
    CHECK_STATUS(F.model_load(dir, NULL, &m), FLAMINGO_OK, "model_load(fixture) at log level INFO");
    int got = sink_count(&bad, &min_level);
    CHECK(got > 0, "no log message arrived at level INFO while loading a model");
    CHECK(bad == 0, "%d malformed log messages (level, user_data, empty or trailing newline)", bad);
    CHECK(got == 0 || min_level >= FLAMINGO_LOG_INFO, "a DEBUG message arrived at level INFO");
    F.model_free(m);

    /* NONE and an out-of-range level (clamped to NONE) silence everything. */
    const int silent[] = {FLAMINGO_LOG_NONE, 1000};
    for (int k = 0; k < 2; k++) {
        sink_reset();
        F.log_set_level((flamingo_log_level)silent[k]);
        m = NULL;
        CHECK_STATUS(F.model_load(dir, NULL, &m), FLAMINGO_OK, "model_load(fixture) at log level NONE");
        F.model_free(m);
        CHECK(sink_count(NULL, NULL) == 0, "log messages arrived at level %d", silent[k]);
    }

    /* A NULL callback restores the default sink, which writes to stderr:
     * ours is no longer called, and the message lands in fd 2 (captured). */
    F.log_set_level(FLAMINGO_LOG_INFO);
    F.log_set(NULL, NULL);
    sink_reset();
    m = NULL;
    char captured[512];
    long n_captured = -1;
    fflush(stderr);
    int saved = dup(2);
    FILE *cap = tmpfile();
    if (saved >= 0 && cap && dup2(fileno(cap), 2) >= 0) {
        st = F.model_load(dir, NULL, &m);
        fflush(stderr);
        dup2(saved, 2);
        rewind(cap);
        n_captured = (long)fread(captured, 1, sizeof captured - 1, cap);
        captured[n_captured] = '\0';
    } else {
        st = F.model_load(dir, NULL, &m);
    }
    if (saved >= 0) close(saved);
    if (cap) fclose(cap);
    CHECK_STATUS(st, FLAMINGO_OK, "model_load(fixture) with the default sink");
    F.model_free(m);
    CHECK(sink_count(NULL, NULL) == 0, "the callback was called after flamingo_log_set(NULL, NULL)");
    CHECK(n_captured != 0, "the default sink wrote nothing to stderr at level INFO");
    if (n_captured > 0) printf("default sink wrote: %s", captured);
    F.log_set_level(FLAMINGO_LOG_WARN);

    /* Explicit params. */
    flamingo_model_params p;
    F.model_default_params(&p, sizeof p);
    p.n_threads = 1;
    m = NULL;
    st = F.model_load(dir, &p, &m);
    CHECK_STATUS(st, FLAMINGO_OK, "model_load(fixture, n_threads=1)");
    if (st != FLAMINGO_OK) return;

    flamingo_model_info info;
    fill(&info, sizeof info);
    info.struct_size = sizeof info;
    st = F.model_get_info(m, &info);
    CHECK_STATUS(st, FLAMINGO_OK, "model_get_info");
    if (st == FLAMINGO_OK) check_info_sane(&info, dir);
    test_model_info_errors(m);

    struct {
        flamingo_model_info i;
        unsigned char tail[64];
    } big;
    fill(&big, sizeof big);
    big.i.struct_size = sizeof big;
    st = F.model_get_info(m, &big.i);
    CHECK(st == FLAMINGO_OK || st == FLAMINGO_ERROR_INVALID_ARGUMENT, "model_get_info(larger struct): %s",
          sname(st));
    CHECK(untouched(big.tail, sizeof big.tail), "model_get_info wrote past sizeof(flamingo_model_info)");

    /* Invalid params with a valid directory. */
    flamingo_model_params bp;
    F.model_default_params(&bp, sizeof bp);
    bp.backend = (flamingo_backend)77;
    expect_load_error(dir, &bp, FLAMINGO_ERROR_INVALID_ARGUMENT, "model_load(backend=77)");
    F.model_default_params(&bp, sizeof bp);
    bp.device_index = 1 << 20;
    expect_load_error(dir, &bp, FLAMINGO_ERROR_INVALID_ARGUMENT, "model_load(device_index=2^20)");
    F.model_default_params(&bp, sizeof bp);
    bp.struct_size = 4;
    expect_load_error(dir, &bp, FLAMINGO_ERROR_INVALID_ARGUMENT, "model_load(params.struct_size=4)");

    /* Concurrent loads; each thread also reads the shared model. */
    enum { N = 4 };
    load_job jobs[N];
    pthread_t t[N];
    for (int k = 0; k < N; k++) {
        memset(&jobs[k], 0, sizeof jobs[k]);
        jobs[k].dir = dir;
        jobs[k].expect = &info;
        jobs[k].shared = m;
        pthread_create(&t[k], NULL, load_thread, &jobs[k]);
    }
    for (int k = 0; k < N; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < N; k++) {
        CHECK(jobs[k].load_status == FLAMINGO_OK, "thread %d: model_load: %s: %s", k,
              sname(jobs[k].load_status), jobs[k].err);
        if (jobs[k].load_status != FLAMINGO_OK) continue;
        CHECK(jobs[k].info_status == FLAMINGO_OK, "thread %d: model_get_info: %s", k, sname(jobs[k].info_status));
        CHECK(jobs[k].same_info, "thread %d: info differs from the main thread's", k);
        CHECK(jobs[k].shared_ok, "thread %d: info of the shared model differs", k);
    }
    F.model_free(m);
}

/* ---- converting a model to another storage type ------------------------ */

/* The fixture at q8 (groups of 32) loads and reports its storage; bad
 * parameters are errors that leave nothing half-written behind. */
static void test_quantize(const char *dir) {
    char out[512];
    snprintf(out, sizeof out, "%s/q8", tmp_root);
    flamingo_quantize_params qp;
    CHECK_STATUS(F.quantize_default_params(&qp, sizeof qp), FLAMINGO_OK, "quantize_default_params");
    CHECK(strcmp(qp.type, "q4") == 0 && qp.group_size == 64 && qp.search == 1 && qp.overwrite == 0 && qp.keep == NULL,
          "quantize_default_params: unexpected defaults");
    CHECK_STATUS(F.quantize_default_params(&qp, 4), FLAMINGO_ERROR_INVALID_ARGUMENT, "quantize_default_params(size 4)");
    CHECK_STATUS(F.model_quantize(NULL, out, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT, "model_quantize(input NULL)");
    CHECK_STATUS(F.model_quantize(dir, NULL, NULL), FLAMINGO_ERROR_INVALID_ARGUMENT, "model_quantize(output NULL)");

    F.quantize_default_params(&qp, sizeof qp);
    snprintf(qp.type, sizeof qp.type, "q3");
    CHECK_STATUS(F.model_quantize(dir, out, &qp), FLAMINGO_ERROR_INVALID_ARGUMENT, "model_quantize(type q3)");
    CHECK(strstr(F.last_error(), "q3") != NULL, "model_quantize(type q3): message lacks the type: %s", F.last_error());
    snprintf(qp.type, sizeof qp.type, "q8");
    qp.group_size = 48;
    CHECK_STATUS(F.model_quantize(dir, out, &qp), FLAMINGO_ERROR_INVALID_ARGUMENT, "model_quantize(group 48)");
    qp.group_size = 32;
    qp.keep = "vision_encoder.*";
    CHECK_STATUS(F.model_quantize(dir, out, &qp), FLAMINGO_ERROR_INVALID_ARGUMENT, "model_quantize(keep without =TYPE)");
    qp.keep = "vision_encoder.*=bf16\nlang_encoder.*.wte=q8";
    CHECK_STATUS(F.model_quantize(dir, out, &qp), FLAMINGO_OK, "model_quantize(q8, group 32)");
    CHECK_STATUS(F.model_quantize(dir, out, &qp), FLAMINGO_ERROR_IO, "model_quantize(into a non-empty directory)");
    qp.overwrite = 1;
    CHECK_STATUS(F.model_quantize(dir, out, &qp), FLAMINGO_OK, "model_quantize(overwrite)");

    flamingo_model *m = NULL;
    CHECK_STATUS(F.model_load(out, NULL, &m), FLAMINGO_OK, "model_load(quantized)");
    if (!m) return;
    flamingo_model_info info;
    info.struct_size = sizeof info;
    CHECK_STATUS(F.model_get_info(m, &info), FLAMINGO_OK, "model_get_info(quantized)");
    CHECK(strcmp(info.weight_type, "q8") == 0, "weight_type %s, expected q8", info.weight_type);
    CHECK(info.quant_bits == 8 && info.quant_group_size == 32, "quant_bits %u, group %u", info.quant_bits,
          info.quant_group_size);
    flamingo_model *f = NULL;
    CHECK_STATUS(F.model_load(dir, NULL, &f), FLAMINGO_OK, "model_load(float)");
    if (f) {
        flamingo_model_info fi;
        fi.struct_size = sizeof fi;
        F.model_get_info(f, &fi);
        CHECK(fi.quant_bits == 0 && fi.quant_group_size == 0, "a float model reports quantization");
        CHECK(strcmp(fi.weight_type, "f32") == 0 || strcmp(fi.weight_type, "f16") == 0 || strcmp(fi.weight_type, "bf16") == 0,
              "float model weight_type %s", fi.weight_type);
        CHECK(fi.num_parameters == info.num_parameters, "parameters %llu (float) vs %llu (q8)",
              (unsigned long long)fi.num_parameters, (unsigned long long)info.num_parameters);
        CHECK(info.weight_bytes < fi.weight_bytes || strcmp(fi.weight_type, "f32") != 0, "q8 is not smaller than f32");
        F.model_free(f);
    }
    /* A session on the quantized model generates. */
    flamingo_session *s = NULL;
    CHECK_STATUS(F.session_init(m, NULL, &s), FLAMINGO_OK, "session_init(quantized)");
    if (s) {
        int32_t tok = 1;
        float *logits = malloc(sizeof(float) * info.vocab_size);
        CHECK_STATUS(F.session_eval(s, &tok, 1, 0, logits, info.vocab_size), FLAMINGO_OK, "session_eval(quantized)");
        CHECK(logits && isfinite(logits[0]), "quantized logits are not finite");
        free(logits);
        F.session_free(s);
    }
    F.model_free(m);
}

/* ---- main --------------------------------------------------------------- */


int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s LIBRARY [MODEL_DIR]\n", argv[0]);
        return 2;
    }
    void *lib = open_api(argv[1], "capi");
    if (!lib) return 1;

    make_tmp();
    test_last_error_initially_empty();
    test_versions();
    test_status_strings();
    size_t n_devices = 0;
    test_devices(&n_devices);
    test_default_params();
    test_load_errors();
    test_model_info_errors(NULL);
    test_last_error_per_thread();
    test_log_basics();
    if (argc == 3) test_fixture(argv[2]);
    if (argc == 3) test_quantize(argv[2]);
    rm_tmp();

    if (dlclose(lib) != 0) fprintf(stderr, "note: dlclose: %s\n", dlerror());
    printf("capi: %d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
