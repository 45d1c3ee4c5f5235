/* Block product with AVX-512F (x86-64): 8 doubles or 16 floats per vector, 32 registers. */
#include "sk_bprod.h"

#if SK_BPROD_X86
#include <immintrin.h>

#define SK_TARGET __attribute__((target("avx512f,avx2,fma")))
#define SK_TILE_VECTORS 4
#define SK_PAIR_VECTORS 8
#define SK_ACCUMULATORS SK_BPROD_ACCUMULATORS_AVX512

#define SK_REAL double
#define SK_NAME(x) x##_avx512_f64
#define SK_V __m512d
#define SK_VL 8
#define SK_VZERO() _mm512_setzero_pd()
#define SK_VSET1(x) _mm512_set1_pd(x)
#define SK_VBCAST(p) _mm512_set1_pd(*(p))
#define SK_VLOAD(p) _mm512_loadu_pd(p)
#define SK_VLOADN(p, n) _mm512_maskz_loadu_pd((__mmask8)((1u << (n)) - 1u), p)
#define SK_VSTORE(p, v) _mm512_storeu_pd(p, v)
#define SK_VSTOREN(p, v, n) _mm512_mask_storeu_pd(p, (__mmask8)((1u << (n)) - 1u), v)
#define SK_VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define SK_VADD(a, b) _mm512_add_pd(a, b)
#include "sk_bprod_numeric.h"
#include "sk_bprod_undef.h"

#define SK_REAL float
#define SK_NAME(x) x##_avx512_f32
#define SK_V __m512
#define SK_VL 16
#define SK_VZERO() _mm512_setzero_ps()
#define SK_VSET1(x) _mm512_set1_ps(x)
#define SK_VBCAST(p) _mm512_set1_ps(*(p))
#define SK_VLOAD(p) _mm512_loadu_ps(p)
#define SK_VLOADN(p, n) _mm512_maskz_loadu_ps((__mmask16)((1u << (n)) - 1u), p)
#define SK_VSTORE(p, v) _mm512_storeu_ps(p, v)
#define SK_VSTOREN(p, v, n) _mm512_mask_storeu_ps(p, (__mmask16)((1u << (n)) - 1u), v)
#define SK_VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define SK_VADD(a, b) _mm512_add_ps(a, b)
#include "sk_bprod_numeric.h"
#include "sk_bprod_undef.h"
#endif
