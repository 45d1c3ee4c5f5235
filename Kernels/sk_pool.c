/* A persistent worker pool: nthreads-1 pthreads plus the caller, one task at a time. Callers on
 * different threads may share a pool: sk_pool_run holds `running` for the whole task, so a second
 * caller waits until the first task has finished (a task must not call sk_pool_run on its own
 * pool). */
#include "CSparseKernels.h"
#include <pthread.h>
#include <stdlib.h>

struct sk_pool {
    int nthreads;
    pthread_t *threads;
    pthread_mutex_t running;    /* held by the caller of sk_pool_run for its whole task */
    pthread_mutex_t lock;
    pthread_cond_t start;       /* signalled when a new generation begins */
    pthread_cond_t done;        /* signalled when the last worker finishes */
    unsigned long generation;   /* incremented once per task */
    int pending;                /* workers still running the current task */
    int stopping;
    sk_task task;
    void *context;
};

typedef struct {
    sk_pool *pool;
    int thread;
} sk_worker;

static void *sk_worker_main(void *arg)
{
    sk_worker *w = arg;
    sk_pool *pool = w->pool;
    int thread = w->thread;
    free(w);
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        while (pool->generation == seen && !pool->stopping) pthread_cond_wait(&pool->start, &pool->lock);
        if (pool->stopping) {
            pthread_mutex_unlock(&pool->lock);
            return NULL;
        }
        seen = pool->generation;
        sk_task task = pool->task;
        void *context = pool->context;
        pthread_mutex_unlock(&pool->lock);

        task(context, thread, pool->nthreads);

        pthread_mutex_lock(&pool->lock);
        if (--pool->pending == 0) pthread_cond_signal(&pool->done);
        pthread_mutex_unlock(&pool->lock);
    }
}

sk_pool *sk_pool_new(int nthreads)
{
    if (nthreads < 1) nthreads = 1;
    sk_pool *pool = calloc(1, sizeof(sk_pool));
    if (pool == NULL) return NULL;
    pool->nthreads = nthreads;
    pool->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (pool->threads == NULL) {
        free(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->running, NULL);
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->start, NULL);
    pthread_cond_init(&pool->done, NULL);
    for (int t = 1; t < nthreads; t++) {
        sk_worker *w = malloc(sizeof(sk_worker));
        if (w == NULL || (w->pool = pool, w->thread = t,
                          pthread_create(&pool->threads[t], NULL, sk_worker_main, w) != 0)) {
            free(w);
            pool->nthreads = t; /* keep the threads that started */
            break;
        }
    }
    return pool;
}

void sk_pool_free(sk_pool *pool)
{
    if (pool == NULL) return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->start);
    pthread_mutex_unlock(&pool->lock);
    for (int t = 1; t < pool->nthreads; t++) pthread_join(pool->threads[t], NULL);
    pthread_mutex_destroy(&pool->running);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->start);
    pthread_cond_destroy(&pool->done);
    free(pool->threads);
    free(pool);
}

int sk_pool_threads(const sk_pool *pool) { return pool ? pool->nthreads : 1; }

void sk_pool_run(sk_pool *pool, sk_task task, void *context)
{
    if (pool == NULL || pool->nthreads == 1) {
        task(context, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool->running);
    pthread_mutex_lock(&pool->lock);
    pool->task = task;
    pool->context = context;
    pool->pending = pool->nthreads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->start);
    pthread_mutex_unlock(&pool->lock);

    task(context, 0, pool->nthreads);

    pthread_mutex_lock(&pool->lock);
    while (pool->pending > 0) pthread_cond_wait(&pool->done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    pthread_mutex_unlock(&pool->running);
}
