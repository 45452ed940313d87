/* The worker pool of flamingo_pool.h.
 *
 * One job at a time (the caller holds `busy`). A job is published seqlock-style: the caller makes
 * `gen` odd, waits until no worker is inside the previous job, writes the job, then makes `gen`
 * even again. A worker that sees a new even generation registers in `active` and re-reads `gen`
 * before reading the job, so it never reads a job being written; indices are claimed from `next`,
 * and the caller returns once `done` reaches n (a worker arriving after that claims nothing). */
#include "flamingo_pool.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define MAX_WORKERS 255
#define SPIN_NS 200000L  /* how long an idle worker stays awake for the next job */

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_flag busy;
    atomic_ulong gen;       /* even: the job below is complete; odd: being written */
    atomic_int active;      /* workers between joining a generation and leaving it */
    atomic_int sleepers;    /* workers waiting on `wake` */
    atomic_int quit;
    atomic_long next, done;
    fk_pool_fn fn;          /* the job: written only while gen is odd and active is 0 */
    void *ctx;
    long n;
    int limit;              /* workers with id < limit − 1 take part */
    int started;            /* workers created (guarded by busy) */
    pthread_t threads[MAX_WORKERS];
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, ATOMIC_FLAG_INIT};

static long elapsed_ns(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000000000L + (t.tv_nsec - t0->tv_nsec);
}

static void claim(fk_pool_fn fn, void *ctx, long n) {
    long i;
    while ((i = atomic_fetch_add(&P.next, 1)) < n) {
        fn(ctx, i);
        atomic_fetch_add(&P.done, 1);
    }
}

/* Returns the next published generation other than `seen`, or 0 on quit. */
static unsigned long await_job(unsigned long seen) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (unsigned spins = 0;; spins++) {
        const unsigned long g = atomic_load(&P.gen);
        if (atomic_load(&P.quit)) return 0;
        if (g != seen && !(g & 1)) return g;
        _mm_pause();
        if ((spins & 255) != 255 || elapsed_ns(&t0) < SPIN_NS) continue;
        pthread_mutex_lock(&P.mutex);
        atomic_fetch_add(&P.sleepers, 1);
        while (atomic_load(&P.gen) == g && !atomic_load(&P.quit)) pthread_cond_wait(&P.wake, &P.mutex);
        atomic_fetch_sub(&P.sleepers, 1);
        pthread_mutex_unlock(&P.mutex);
        clock_gettime(CLOCK_MONOTONIC, &t0);
    }
}

static void *worker(void *arg) {
    const int id = (int)(intptr_t)arg;
    unsigned long seen = 0;  /* generations start at 0, the first job is 2 */
    for (;;) {
        const unsigned long g = await_job(seen);
        if (g == 0) return NULL;
        atomic_fetch_add(&P.active, 1);
        if (atomic_load(&P.gen) != g) {  /* a newer job is being written: wait for it */
            atomic_fetch_sub(&P.active, 1);
            continue;
        }
        seen = g;
        if (id < P.limit - 1) claim(P.fn, P.ctx, P.n);
        atomic_fetch_sub(&P.active, 1);
    }
}

int fk_pool_run(long n, fk_pool_fn fn, void *ctx, int threads) {
    if (n <= 0) return 0;
    if (threads < 2 || atomic_flag_test_and_set(&P.busy)) return -1;
    const int want = threads - 1 < MAX_WORKERS ? threads - 1 : MAX_WORKERS;
    while (P.started < want && !atomic_load(&P.quit)) {
        if (pthread_create(&P.threads[P.started], NULL, worker, (void *)(intptr_t)P.started) != 0) break;
        P.started++;
    }
    if (P.started == 0 || atomic_load(&P.quit)) {
        atomic_flag_clear(&P.busy);
        return -1;
    }
    const unsigned long g = atomic_load(&P.gen);
    atomic_store(&P.gen, g + 1);
    while (atomic_load(&P.active) != 0) _mm_pause();
    P.fn = fn;
    P.ctx = ctx;
    P.n = n;
    P.limit = threads;
    atomic_store(&P.next, 0);
    atomic_store(&P.done, 0);
    atomic_store(&P.gen, g + 2);
    if (atomic_load(&P.sleepers) > 0) {
        pthread_mutex_lock(&P.mutex);
        pthread_cond_broadcast(&P.wake);
        pthread_mutex_unlock(&P.mutex);
    }
    claim(fn, ctx, n);
    while (atomic_load(&P.done) < n) _mm_pause();
    atomic_flag_clear(&P.busy);
    return 0;
}

/* At exit or dlclose the workers must not be left running (or about to run) unmapped code. */
__attribute__((destructor)) static void pool_stop(void) {
    pthread_mutex_lock(&P.mutex);
    atomic_store(&P.quit, 1);
    pthread_cond_broadcast(&P.wake);
    pthread_mutex_unlock(&P.mutex);
    for (int i = 0; i < P.started; i++) pthread_join(P.threads[i], NULL);
    P.started = 0;
}
