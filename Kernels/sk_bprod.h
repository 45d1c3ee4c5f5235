/* Block product: what the instruction-set variants (sk_bprod_*.c) and the dispatcher share. */
#ifndef SK_BPROD_H
#define SK_BPROD_H
#include "CSparseKernels.h"

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define SK_BPROD_X86 1
#else
#define SK_BPROD_X86 0
#endif

#define SK_BPROD_MAX_VECTORS 15
/* Rows of a tile (rows sharing their columns, computed together). */
#define SK_BPROD_TILE_ROWS 6
/* Vector registers each instruction set leaves a panel's accumulators (the rest hold the
 * broadcast value and the vectors loaded): they bound the sets of accumulators of a width. */
#define SK_BPROD_ACCUMULATORS_AVX512 26
#define SK_BPROD_ACCUMULATORS_AVX2 12
#define SK_BPROD_ACCUMULATORS_GENERIC 6

#define SK_PASTE2(a, b) a##_##b
#define SK_PASTE(a, b) SK_PASTE2(a, b)

/* count scalars of `size` bytes rounded up to a whole number of 64-byte lines, in scalars. */
static inline int64_t sk_bprod_align(int64_t count, size_t size)
{
    const int64_t per_line = 64 / (int64_t)size;
    return (count + per_line - 1) / per_line * per_line;
}

/* The panel after the current one, for prefetching: rows of `bytes` bytes, `stride` values apart. */
typedef struct {
    const void *x;
    int64_t stride;
    int32_t rows;
    int32_t bytes;
} sk_bprod_next;

#define SK_BPROD_UNITS(NAME, REAL)                                                               \
    void NAME(const sk_bprod_plan *P, const REAL *restrict Av, REAL *restrict X, const REAL *restrict E, \
              const REAL *restrict w, REAL *restrict g, int32_t u0, int32_t u1, int placement, void *scratch);
SK_BPROD_UNITS(sk_bprod_units_generic_f64, double)
SK_BPROD_UNITS(sk_bprod_units_generic_f32, float)
#if SK_BPROD_X86
SK_BPROD_UNITS(sk_bprod_units_avx2_f64, double)
SK_BPROD_UNITS(sk_bprod_units_avx2_f32, float)
SK_BPROD_UNITS(sk_bprod_units_avx512_f64, double)
SK_BPROD_UNITS(sk_bprod_units_avx512_f32, float)
#endif
#undef SK_BPROD_UNITS

#endif
