// A small pool of worker threads that spin briefly between jobs.
//
// Decoding issues ~60 matrix-vector products per token, each a fraction of a millisecond. Waking a
// sleeping thread for each (libdispatch) costs about as much as the second core gains, so these
// workers keep polling for a short while after a job before they sleep on a condition variable.
//
// Every thread, the caller included, claims the next part not yet started from a shared ticket
// until none is left, and the caller waits only for the parts claimed to finish. So when another
// process holds a core and a worker is descheduled (or wakes late), the caller runs the parts it
// has not started instead of spinning until it is scheduled again; with more parts than threads
// (`vlm_pool_run_parts`) a descheduled worker holds up at most the one part it is running.
#include "vlm_kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_WORKERS 63
#define SPIN_NANOSECONDS 200000  // 0.2 ms: longer than the gaps between products in a decoding step

static struct {
    pthread_once_t once;
    int workers;                   // threads besides the caller
    pthread_mutex_t lock;          // guards sleeping workers (callers are serialised by submit_lock)
    pthread_cond_t wake;
    _Atomic uint64_t generation;   // bumped once per job, to wake the workers
    _Atomic int sleepers;
    // The current job: its id (bits 32–63), part count (16–31) and next unclaimed part (0–15). A
    // thread that claims a part of job j by compare-and-swap sees task and context as j's caller
    // wrote them before publishing the ticket, and the caller does not return (so no later job
    // overwrites them) until that part is done.
    _Atomic uint64_t ticket;
    _Atomic int done;              // parts of the current job finished
    vlm_pool_task task;
    void *context;
} pool = { .once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER };

#define MAX_PARTS 32767

static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

// Claims and runs parts of the current job until none is left.
static void run_parts(void) {
    uint64_t ticket = atomic_load(&pool.ticket);
    for (;;) {
        const int next = (int)(ticket & 0xFFFF), parts = (int)((ticket >> 16) & 0xFFFF);
        if (next >= parts) return;
        if (!atomic_compare_exchange_weak(&pool.ticket, &ticket, ticket + 1)) continue;
        pool.task(pool.context, next, parts);
        atomic_fetch_add(&pool.done, 1);
        ticket = atomic_load(&pool.ticket);
    }
}

static void *worker_main(void *argument) {
    (void)argument;
    uint64_t seen = 0;
    for (;;) {
        uint64_t generation = atomic_load(&pool.generation);
        if (generation == seen) {
            const uint64_t deadline = now_ns() + SPIN_NANOSECONDS;
            while ((generation = atomic_load(&pool.generation)) == seen && now_ns() < deadline) cpu_relax();
        }
        if (generation == seen) {
            pthread_mutex_lock(&pool.lock);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((generation = atomic_load(&pool.generation)) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = generation;
        run_parts();
    }
    return 0;
}

static _Atomic int configured_threads = 0;  // 0 until configured

static void start_workers(void) {
    int workers = configured_threads - 1 > MAX_WORKERS ? MAX_WORKERS : configured_threads - 1;
    pool.workers = workers;
    for (int i = 0; i < workers; i++) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attributes, worker_main, (void *)(intptr_t)(i + 1));
        pthread_attr_destroy(&attributes);
        if (failed) {
            pool.workers = i;  // run with the workers that did start
            break;
        }
    }
}

void vlm_pool_configure(int threads) {
    int unset = 0;
    atomic_compare_exchange_strong(&configured_threads, &unset, threads < 1 ? 1 : threads);
}

// Publishes the job, runs parts on the caller while any is left, then waits for the parts the
// workers claimed. The caller holds submit_lock.
static void dispatch(vlm_pool_task task, void *context, int parts) {
    static uint32_t job;
    job++;
    atomic_store(&pool.done, 0);
    pool.task = task;
    pool.context = context;
    atomic_store(&pool.ticket, (uint64_t)job << 32 | (uint64_t)parts << 16);
    atomic_fetch_add(&pool.generation, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
    run_parts();
    while (atomic_load(&pool.done) < parts) cpu_relax();
}

// With `submit_lock` held: runs `parts` parts on the pool (one part: here), then releases the lock.
static int dispatch_and_release(vlm_pool_task task, void *context, int parts) {
    if (parts <= 1) {
        pthread_mutex_unlock(&submit_lock);
        task(context, 0, 1);
        return 1;
    }
    dispatch(task, context, parts);
    pthread_mutex_unlock(&submit_lock);
    return parts;
}

int vlm_pool_run(vlm_pool_task task, void *context, int parts) {
    const int threads = atomic_load(&configured_threads);
    if (parts > threads) parts = threads;
    if (parts <= 1 || pthread_mutex_trylock(&submit_lock) != 0) {
        // One part, or another thread is using the pool: run everything here.
        task(context, 0, 1);
        return 1;
    }
    pthread_once(&pool.once, start_workers);
    if (parts > pool.workers + 1) parts = pool.workers + 1;
    return dispatch_and_release(task, context, parts);
}

int vlm_pool_run_parts(vlm_pool_task task, void *context, int parts) {
    if (parts > MAX_PARTS) parts = MAX_PARTS;
    if (parts <= 1 || atomic_load(&configured_threads) <= 1 || pthread_mutex_trylock(&submit_lock) != 0) {
        task(context, 0, 1);
        return 1;
    }
    pthread_once(&pool.once, start_workers);
    return dispatch_and_release(task, context, pool.workers < 1 ? 1 : parts);
}
