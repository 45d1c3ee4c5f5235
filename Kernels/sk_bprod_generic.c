/* Block product for any processor: 64-byte vectors of the compiler's generic vector extension
 * (lowered to whatever the target has), the same lane counts as AVX-512. */
#include "sk_bprod.h"

typedef double sk_gd __attribute__((vector_size(64)));
typedef float sk_gf __attribute__((vector_size(64)));

/* The operations as macros (a vector of 64 bytes passed to a function would change the ABI). */
#define SK_G_SET1(V, x) ((x) - (V){0}) /* x - 0 keeps a negative zero */
#define SK_G_LOAD(V, p) ({ V v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define SK_G_LOADN(V, p, n) ({ V v_ = (V){0}; for (int i_ = 0; i_ < (n); i_++) v_[i_] = (p)[i_]; v_; })
#define SK_G_STORE(V, p, v) do { V v_ = (v); __builtin_memcpy((p), &v_, sizeof v_); } while (0)
#define SK_G_STOREN(V, p, v, n) do { V v_ = (v); for (int i_ = 0; i_ < (n); i_++) (p)[i_] = v_[i_]; } while (0)

#define SK_TARGET
#define SK_TILE_VECTORS 1
#define SK_PAIR_VECTORS 1
#define SK_ACCUMULATORS SK_BPROD_ACCUMULATORS_GENERIC

#define SK_REAL double
#define SK_NAME(x) x##_generic_f64
#define SK_V sk_gd
#define SK_VL 8
#define SK_VZERO() SK_G_SET1(sk_gd, 0)
#define SK_VSET1(x) SK_G_SET1(sk_gd, x)
#define SK_VBCAST(p) SK_G_SET1(sk_gd, *(p))
#define SK_VLOAD(p) SK_G_LOAD(sk_gd, p)
#define SK_VLOADN(p, n) SK_G_LOADN(sk_gd, p, n)
#define SK_VSTORE(p, v) SK_G_STORE(sk_gd, p, v)
#define SK_VSTOREN(p, v, n) SK_G_STOREN(sk_gd, p, v, n)
#define SK_VFMA(a, b, c) ((a) * (b) + (c))
#define SK_VADD(a, b) ((a) + (b))
#include "sk_bprod_numeric.h"
#include "sk_bprod_undef.h"

#define SK_REAL float
#define SK_NAME(x) x##_generic_f32
#define SK_V sk_gf
#define SK_VL 16
#define SK_VZERO() SK_G_SET1(sk_gf, 0)
#define SK_VSET1(x) SK_G_SET1(sk_gf, x)
#define SK_VBCAST(p) SK_G_SET1(sk_gf, *(p))
#define SK_VLOAD(p) SK_G_LOAD(sk_gf, p)
#define SK_VLOADN(p, n) SK_G_LOADN(sk_gf, p, n)
#define SK_VSTORE(p, v) SK_G_STORE(sk_gf, p, v)
#define SK_VSTOREN(p, v, n) SK_G_STOREN(sk_gf, p, v, n)
#define SK_VFMA(a, b, c) ((a) * (b) + (c))
#define SK_VADD(a, b) ((a) + (b))
#include "sk_bprod_numeric.h"
#include "sk_bprod_undef.h"
