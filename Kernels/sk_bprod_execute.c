/* Block product: the instruction set in use, panel sizes, and one numeric call split over the
 * worker pool by work units. */
#include "sk_bprod.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int sk_cpu_level(void)
{
#if SK_BPROD_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return SK_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SK_ISA_AVX2;
#endif
    return SK_ISA_GENERIC;
}

int32_t sk_bprod_lanes(int level, int single)
{
    switch (level) {
    case SK_ISA_AVX2: return single ? 8 : 4;
    default: return single ? 16 : 8; /* AVX-512, and the generic 64-byte vectors */
    }
}

/* The L1 data cache in bytes (32 KiB if the system does not say). */
static int64_t sk_l1_bytes(void)
{
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long bytes = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    if (bytes >= 8192 && bytes <= (1L << 22)) return bytes;
#endif
    return 32768;
}

int32_t sk_bprod_max_vectors(int level, int single, int32_t rows)
{
    (void)single;
    /* Registers: up to 15 accumulators and the broadcast value (16 on AVX2); the generic vectors
     * are 64 bytes on whatever registers the target has, so they stay narrow. */
    int32_t most = level == SK_ISA_GENERIC ? 2 : SK_BPROD_MAX_VECTORS;
    /* The packed panel (rows x vectors) should fit the L1 cache (measured best against three
     * quarters of it, twice and four times it: Docs/BENCHMARKS.md), but blocks of more rows than
     * that allows take a floor instead: with AVX2 four vectors, the two-row kernel's sub-panel, so
     * that an LSTM's pairs of rows are not cut into a two-vector and a one-vector pass (1.2-2.3x
     * faster than three on exact RTRL for an LSTM of k = 256, 512 rows; as fast or faster on an
     * rnn of k = 512: Docs/BENCHMARKS.md). */
    int32_t least = level == SK_ISA_AVX2 ? 4 : level == SK_ISA_AVX512 ? 2 : 1;
    int64_t vector_bytes = level == SK_ISA_AVX2 ? 32 : 64;
    int64_t fit = rows > 0 ? sk_l1_bytes() / ((int64_t)rows * vector_bytes) : most;
    if (fit > most) fit = most;
    if (fit < least) fit = least;
    if (fit > SK_BPROD_MAX_VECTORS) fit = SK_BPROD_MAX_VECTORS;
    return (int32_t)fit;
}

int32_t sk_bprod_tile_rows(void) { return SK_BPROD_TILE_ROWS; }

int32_t sk_bprod_chains(int level, int32_t vectors)
{
    /* SK_ACCUMULATORS of each instruction set, as the panel kernels choose SK_MOST_CHAINS. */
    int32_t registers = level == SK_ISA_AVX512 ? SK_BPROD_ACCUMULATORS_AVX512
                        : level == SK_ISA_AVX2 ? SK_BPROD_ACCUMULATORS_AVX2 : SK_BPROD_ACCUMULATORS_GENERIC;
    if (vectors < 1) vectors = 1;
    return 3 * vectors <= registers ? 3 : 2 * vectors <= registers ? 2 : 1;
}

int32_t sk_bprod_tile_vectors(int level, int pairs)
{
    /* SK_TILE_VECTORS and SK_PAIR_VECTORS of each instruction set. */
    switch (level) {
    case SK_ISA_AVX512: return pairs ? 8 : 4;
    case SK_ISA_AVX2: return pairs ? 4 : 2;
    default: return 1;
    }
}

size_t sk_bprod_scratch_bytes(const sk_bprod_plan *plan, int level, int single)
{
    size_t size = single ? sizeof(float) : sizeof(double);
    int64_t lanes = sk_bprod_lanes(level, single);
    int64_t scalars = sk_bprod_align((int64_t)plan->max_rows * plan->max_vectors * lanes, size)
                      + sk_bprod_align(plan->max_entries, size) + 2 * sk_bprod_align(plan->max_rows, size)
                      + sk_bprod_align((int64_t)plan->max_vectors * lanes, size);
    return (size_t)scalars * size;
}

static void sk_bprod_part(void *context, int thread, int nthreads)
{
    (void)nthreads;
    const sk_bprod_call *c = context;
    int32_t u0 = c->bounds[thread], u1 = c->bounds[thread + 1];
    if (u0 >= u1) return;
    void *scratch = (char *)c->scratch + (size_t)thread * c->scratch_stride;
    switch (c->level) {
#if SK_BPROD_X86
    case SK_ISA_AVX512:
        if (c->single) sk_bprod_units_avx512_f32(c->plan, c->Av, c->X, c->E, c->w, c->g, u0, u1, c->placement, scratch);
        else sk_bprod_units_avx512_f64(c->plan, c->Av, c->X, c->E, c->w, c->g, u0, u1, c->placement, scratch);
        return;
    case SK_ISA_AVX2:
        if (c->single) sk_bprod_units_avx2_f32(c->plan, c->Av, c->X, c->E, c->w, c->g, u0, u1, c->placement, scratch);
        else sk_bprod_units_avx2_f64(c->plan, c->Av, c->X, c->E, c->w, c->g, u0, u1, c->placement, scratch);
        return;
#endif
    default:
        if (c->single) sk_bprod_units_generic_f32(c->plan, c->Av, c->X, c->E, c->w, c->g, u0, u1, c->placement, scratch);
        else sk_bprod_units_generic_f64(c->plan, c->Av, c->X, c->E, c->w, c->g, u0, u1, c->placement, scratch);
        return;
    }
}

void sk_bprod_execute(sk_pool *pool, const sk_bprod_call *call)
{
    sk_pool_run(pool, sk_bprod_part, (void *)call);
}
