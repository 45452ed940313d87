/* Threads through the C ABI (run under ThreadSanitizer by tools/sanitize.sh):
 *  - eight threads share one model, each with its own sessions, generating greedily and
 *    by seeded sampling, on the CPU backend and on every OpenCL device: every result must
 *    equal the same work done sequentially;
 *  - eight threads load, use and free different models at once;
 *  - the log callback is replaced over and over while other threads log.
 *
 *   test_threads LIBRARY IMAGE MODEL_DIR [MODEL_DIR ...]
 */
#include "common.h"

#include <sched.h>
#include <stdatomic.h>

enum { THREADS = 8, REPEATS = 2, MAX_NEW = 8 };

static const char *image_path;

/* One thread's work: a prompt with one image and a decoding setting. */
typedef struct {
    flamingo_model *model;
    int job;             /* selects the prompt and the decoding */
    int32_t tokens[MAX_NEW];
    size_t count;
    flamingo_status st;
    char err[256];
} gen_job;

static const char *prompts[] = {"<image>Output:", "<image>A photo of", "<image>Question: What is it? Short answer:",
                                "<image>An image of two"};

static void run_job(gen_job *j) {
    flamingo_session *s = NULL;
    j->count = 0;
    j->st = F.session_init(j->model, NULL, &s);
    flamingo_media m;
    memset(&m, 0, sizeof m);
    m.struct_size = sizeof m;
    m.kind = FLAMINGO_MEDIA_FILE;
    m.path = image_path;
    if (j->st == FLAMINGO_OK) j->st = F.session_set_prompt(s, prompts[j->job % 4], &m, 1, NULL, 0);
    flamingo_generate_params p;
    F.generate_default_params(&p, sizeof p);
    p.max_new_tokens = MAX_NEW;
    p.stop_at_endofchunk = 0;
    p.stop_at_eos = 0;
    if (j->job % 2) { /* odd jobs sample, each with its own seed */
        p.do_sample = 1;
        p.temperature = 0.8f;
        p.top_k = 40;
        p.seed = 1000 + (uint64_t)j->job;
    }
    if (j->st == FLAMINGO_OK) j->st = F.session_generate(s, &p, j->tokens, MAX_NEW, &j->count, NULL);
    if (j->st != FLAMINGO_OK) snprintf(j->err, sizeof j->err, "%s", F.last_error());
    F.session_free(s);
}

typedef struct {
    gen_job work;
    const gen_job *want;
    int mismatches;
} gen_thread;

static void *generate_thread(void *arg) {
    gen_thread *t = arg;
    for (int r = 0; r < REPEATS; r++) {
        run_job(&t->work);
        if (t->work.st != FLAMINGO_OK) return NULL;
        if (t->work.count != t->want->count ||
            memcmp(t->work.tokens, t->want->tokens, t->work.count * sizeof(int32_t)) != 0)
            t->mismatches++;
    }
    return NULL;
}

static void test_shared_model(const char *dir, const flamingo_model_params *mp, const char *label) {
    flamingo_model *m = NULL;
    flamingo_status st = F.model_load(dir, mp, &m);
    CHECK_STATUS(st, FLAMINGO_OK, label);
    if (st != FLAMINGO_OK) return;
    gen_job want[THREADS];
    for (int k = 0; k < THREADS; k++) { /* the sequential reference */
        memset(&want[k], 0, sizeof want[k]);
        want[k].model = m;
        want[k].job = k;
        run_job(&want[k]);
        CHECK(want[k].st == FLAMINGO_OK && want[k].count == MAX_NEW, "%s: job %d alone: %s %s", label, k,
              sname(want[k].st), want[k].err);
    }
    gen_thread t[THREADS];
    pthread_t id[THREADS];
    for (int k = 0; k < THREADS; k++) {
        memset(&t[k], 0, sizeof t[k]);
        t[k].work.model = m;
        t[k].work.job = k;
        t[k].want = &want[k];
        pthread_create(&id[k], NULL, generate_thread, &t[k]);
    }
    for (int k = 0; k < THREADS; k++) pthread_join(id[k], NULL);
    for (int k = 0; k < THREADS; k++) {
        CHECK(t[k].work.st == FLAMINGO_OK, "%s: thread %d: %s: %s", label, k, sname(t[k].work.st), t[k].work.err);
        CHECK(t[k].mismatches == 0, "%s: thread %d (%s): %d of %d runs differ from the sequential run", label, k,
              k % 2 ? "sampled" : "greedy", t[k].mismatches, REPEATS);
    }
    printf("threads: %s%s%s: %d threads x %d runs checked against the sequential results\n", current_fixture,
           current_fixture[0] ? " " : "", label, THREADS, REPEATS);
    F.model_free(m);
}

/* ---- loads and frees of different models at once ---------------------- */

typedef struct {
    const char *dir;
    const flamingo_model_info *want;
    flamingo_status st;
    int same;
    char err[256];
} load_job;

static void *load_thread(void *arg) {
    load_job *j = arg;
    j->same = 1;
    for (int r = 0; r < 3 && j->st == FLAMINGO_OK; r++) {
        flamingo_model *m = NULL;
        j->st = F.model_load(j->dir, NULL, &m);
        if (j->st != FLAMINGO_OK) { snprintf(j->err, sizeof j->err, "%s", F.last_error()); break; }
        flamingo_model_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        j->st = F.model_get_info(m, &info);
        j->same &= j->st == FLAMINGO_OK && info.vocab_size == j->want->vocab_size &&
                   strcmp(info.lm_family, j->want->lm_family) == 0;
        int32_t ids[16];
        size_t n = 0;
        if (j->st == FLAMINGO_OK) j->st = F.tokenize(m, "A photo of a cat.", 17, 0, ids, 16, &n);
        if (j->st != FLAMINGO_OK) snprintf(j->err, sizeof j->err, "%s", F.last_error());
        F.model_free(m);
    }
    return NULL;
}

static void test_concurrent_loads(char **dirs, int n_dirs) {
    flamingo_model_info want[THREADS];
    for (int d = 0; d < n_dirs && d < THREADS; d++) {
        flamingo_model *m = NULL;
        memset(&want[d], 0, sizeof want[d]);
        want[d].struct_size = sizeof want[d];
        if (F.model_load(dirs[d], NULL, &m) == FLAMINGO_OK) F.model_get_info(m, &want[d]);
        F.model_free(m);
    }
    load_job j[THREADS];
    pthread_t id[THREADS];
    for (int k = 0; k < THREADS; k++) {
        memset(&j[k], 0, sizeof j[k]);
        j[k].dir = dirs[k % n_dirs];
        j[k].want = &want[k % n_dirs];
        pthread_create(&id[k], NULL, load_thread, &j[k]);
    }
    for (int k = 0; k < THREADS; k++) pthread_join(id[k], NULL);
    for (int k = 0; k < THREADS; k++) {
        CHECK(j[k].st == FLAMINGO_OK, "loads: thread %d (%s): %s: %s", k, j[k].dir, sname(j[k].st), j[k].err);
        CHECK(j[k].same, "loads: thread %d (%s): info differs from a sequential load", k, j[k].dir);
    }
}

/* ---- the log callback replaced while other threads log ----------------- */

static atomic_int seen_a, seen_b, bad_messages;
static atomic_int stop_logging, loads_done;

static void log_a(flamingo_log_level level, const char *message, void *user) {
    (void)level;
    if (!message || user != &seen_a) atomic_fetch_add(&bad_messages, 1);
    atomic_fetch_add(&seen_a, 1);
}

static void log_b(flamingo_log_level level, const char *message, void *user) {
    (void)level;
    if (!message || user != &seen_b) atomic_fetch_add(&bad_messages, 1);
    atomic_fetch_add(&seen_b, 1);
}

static void *logging_thread(void *arg) {
    const char *dir = arg;
    while (!atomic_load(&stop_logging)) { /* loads log at INFO; failed loads log their error */
        flamingo_model *m = NULL;
        if (F.model_load(dir, NULL, &m) == FLAMINGO_OK) F.model_free(m);
        F.model_load("/nonexistent/flamingo-model", NULL, &m);
        atomic_fetch_add(&loads_done, 1);
    }
    return NULL;
}

static void test_log_callback_swaps(const char *dir) {
    F.log_set_level(FLAMINGO_LOG_DEBUG);
    F.log_set(log_a, &seen_a);
    pthread_t id[4];
    for (int k = 0; k < 4; k++) pthread_create(&id[k], NULL, logging_thread, (void *)dir);
    for (int r = 0; atomic_load(&loads_done) < 40; r++) { /* swap while the threads load */
        if (r % 2) F.log_set(log_a, &seen_a);
        else F.log_set(log_b, &seen_b);
        if (r % 50 == 0) F.log_set_level(r % 100 ? FLAMINGO_LOG_DEBUG : FLAMINGO_LOG_INFO);
        sched_yield();
    }
    atomic_store(&stop_logging, 1);
    for (int k = 0; k < 4; k++) pthread_join(id[k], NULL);
    F.log_set(NULL, NULL);
    F.log_set_level(FLAMINGO_LOG_WARN);
    CHECK(atomic_load(&seen_a) + atomic_load(&seen_b) > 0, "log swaps: no message reached a callback");
    CHECK(atomic_load(&bad_messages) == 0, "log swaps: %d messages with the wrong user_data or no text",
          atomic_load(&bad_messages));
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s LIBRARY IMAGE MODEL_DIR [MODEL_DIR ...]\n", argv[0]);
        return 2;
    }
    void *lib = open_api(argv[1], "threads");
    if (!lib) return 1;
    image_path = argv[2];

    size_t n = 0;
    F.device_count(&n);
    for (int a = 3; a < argc; a++) {
        current_fixture = argv[a];
        flamingo_model_params mp;
        F.model_default_params(&mp, sizeof mp);
        test_shared_model(argv[a], &mp, "cpu");
        for (size_t d = 0; d < n; d++) {
            flamingo_device_info info;
            memset(&info, 0, sizeof info);
            info.struct_size = sizeof info;
            if (F.device_get_info(d, &info) != FLAMINGO_OK || info.backend != FLAMINGO_BACKEND_OPENCL) continue;
            F.model_default_params(&mp, sizeof mp);
            mp.backend = FLAMINGO_BACKEND_OPENCL;
            mp.device_index = (int32_t)d;
            char label[64];
            snprintf(label, sizeof label, "opencl device %zu", d);
            test_shared_model(argv[a], &mp, label);
        }
    }
    current_fixture = "";
    test_concurrent_loads(argv + 3, argc - 3);
    test_log_callback_swaps(argv[3]);

    if (dlclose(lib) != 0) fprintf(stderr, "note: dlclose: %s\n", dlerror());
    printf("threads: %d passed, %d failed\n", n_passed, n_failed);
    return n_failed == 0 ? 0 : 1;
}
