/* In-place block-diagonal product in column-scaled form, instantiated for double and float, and
 * one call split over the worker pool by block ranges. */
#include "CSparseKernels.h"

#include "sk_hot.h"

#define SK_REAL double
#define SK_NAME(x) x##_f64
#include "sk_scaled_block.h"
#undef SK_REAL
#undef SK_NAME

#define SK_REAL float
#define SK_NAME(x) x##_f32
#include "sk_scaled_block.h"
#undef SK_REAL
#undef SK_NAME

static void sk_scaled_block_part(void *context, int thread, int nthreads)
{
    (void)nthreads;
    const sk_scaled_block_call *c = context;
    const int32_t b0 = c->bounds[thread], b1 = c->bounds[thread + 1];
    const size_t scratch = (size_t)c->plan->max_block_values, columns = (size_t)c->plan->max_block_columns;
    const size_t edges = (size_t)c->plan->max_block_edges;
    int64_t done = 0;
    c->changed[thread] = 0;
    if (b0 < b1) {
        if (c->single) {
            done = sk_scaled_block_update_f32(c->plan, c->Bv, c->active, c->Y, c->s, c->w, c->g,
                                              (float)c->lo, (float)c->hi, b0, b1,
                                              (float *)c->scratch + thread * scratch,
                                              (float *)c->source_scale + thread * columns,
                                              c->sources + thread * columns, c->written + thread * columns,
                                              c->heads + thread * columns, c->links + thread * edges,
                                              c->link_source + thread * edges, (float *)c->link_coef + thread * edges,
                                              c->changed + thread);
        } else {
            done = sk_scaled_block_update_f64(c->plan, c->Bv, c->active, c->Y, c->s, c->w, c->g,
                                              c->lo, c->hi, b0, b1,
                                              (double *)c->scratch + thread * scratch,
                                              (double *)c->source_scale + thread * columns,
                                              c->sources + thread * columns, c->written + thread * columns,
                                              c->heads + thread * columns, c->links + thread * edges,
                                              c->link_source + thread * edges, (double *)c->link_coef + thread * edges,
                                              c->changed + thread);
        }
    }
    c->done[thread] = done;
}

void sk_scaled_block_execute(sk_pool *pool, const sk_scaled_block_call *call)
{
    sk_pool_run(pool, sk_scaled_block_part, (void *)call);
}
