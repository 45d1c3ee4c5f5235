/* Block product with AVX2 and FMA (x86-64): 4 doubles or 8 floats per vector, 16 registers. */
#include "sk_bprod.h"

#if SK_BPROD_X86
#include <immintrin.h>

#define SK_TARGET __attribute__((target("avx2,fma")))
#define SK_TILE_VECTORS 2
#define SK_PAIR_VECTORS 4
#define SK_ACCUMULATORS SK_BPROD_ACCUMULATORS_AVX2

/* Masks of n leading lanes, read from a sliding window. */
static const int64_t sk_mask64[8] = { -1, -1, -1, -1, 0, 0, 0, 0 };
static const int32_t sk_mask32[16] = { -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0 };
#define SK_MASK64(n) _mm256_loadu_si256((const __m256i *)(sk_mask64 + 4 - (n)))
#define SK_MASK32(n) _mm256_loadu_si256((const __m256i *)(sk_mask32 + 8 - (n)))

#define SK_REAL double
#define SK_NAME(x) x##_avx2_f64
#define SK_V __m256d
#define SK_VL 4
#define SK_VZERO() _mm256_setzero_pd()
#define SK_VSET1(x) _mm256_set1_pd(x)
#define SK_VBCAST(p) _mm256_broadcast_sd(p)
#define SK_VLOAD(p) _mm256_loadu_pd(p)
#define SK_VLOADN(p, n) _mm256_maskload_pd(p, SK_MASK64(n))
#define SK_VSTORE(p, v) _mm256_storeu_pd(p, v)
#define SK_VSTOREN(p, v, n) _mm256_maskstore_pd(p, SK_MASK64(n), v)
#define SK_VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define SK_VADD(a, b) _mm256_add_pd(a, b)
#include "sk_bprod_numeric.h"
#include "sk_bprod_undef.h"

#define SK_REAL float
#define SK_NAME(x) x##_avx2_f32
#define SK_V __m256
#define SK_VL 8
#define SK_VZERO() _mm256_setzero_ps()
#define SK_VSET1(x) _mm256_set1_ps(x)
#define SK_VBCAST(p) _mm256_broadcast_ss(p)
#define SK_VLOAD(p) _mm256_loadu_ps(p)
#define SK_VLOADN(p, n) _mm256_maskload_ps(p, SK_MASK32(n))
#define SK_VSTORE(p, v) _mm256_storeu_ps(p, v)
#define SK_VSTOREN(p, v, n) _mm256_maskstore_ps(p, SK_MASK32(n), v)
#define SK_VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define SK_VADD(a, b) _mm256_add_ps(a, b)
#include "sk_bprod_numeric.h"
#include "sk_bprod_undef.h"
#endif
