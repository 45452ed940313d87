/* A persistent worker pool for the CPU kernels (Sources/FlamingoCore/CPU drives it through
 * parallelTasks). Internal to libflamingo, not exported.
 *
 * Why not libdispatch: its workers sleep between jobs and take tens of microseconds to wake, so a
 * job of a few hundred microseconds (an NFNet activation, a squeeze-excite product) often ran on
 * the calling thread alone. Workers here spin briefly after each job, then sleep on a condition
 * variable, so back-to-back jobs find them awake and an idle process costs nothing. */
#ifndef FLAMINGO_POOL_H
#define FLAMINGO_POOL_H

typedef void (*fk_pool_fn)(void *ctx, long index);

/* Calls fn(ctx, i) once for every i in [0, n), on the calling thread and up to threads − 1
 * workers, and returns 0 once all calls have returned. Returns −1 without calling fn when the pool
 * is in use (a nested call from inside fn, or another thread's job) or its workers cannot be
 * started: the caller then runs the indices itself. */
int fk_pool_run(long n, fk_pool_fn fn, void *ctx, int threads);

#endif
