/*
 * Block product, rows that share their columns: a template included by sk_bprod_numeric.h once
 * per sub-panel width SK_TV (vectors) for tiles of up to SK_BPROD_TILE_ROWS rows, and once per
 * width SK_PV for pairs, with the vector operations of one instruction set defined. A panel
 * calls these for consecutive sub-panels of its pack (k0: the first vector), so that the
 * accumulators of all the rows, and the vectors loaded, fit the registers whatever the panel's
 * width.
 *
 * Arguments: the pack (rows W scalars apart) and the tile's columns tc, values tv (SK_BPROD_TILE_ROWS
 * or 2 per column) and length; the output rows from X + q n; `last`, the panel's vector whose
 * lanes are only partly used (-1 if none) and `rem`, its lanes; wrow and gsum for the row-by-row
 * column sums (wrow NULL: none).
 */
#include "sk_each_tile.h"

#define SK_TILE_STORE(kk, row, v)                                                                \
    do {                                                                                         \
        SK_REAL *restrict o_ = X + (int64_t)(row) * n + (int64_t)(k0 + (kk)) * SK_VL;            \
        if (k0 + (kk) == last) SK_VSTOREN(o_, v, rem);                                           \
        else SK_VSTORE(o_, v);                                                                   \
    } while (0)

#if defined(SK_TV)
/* Up to six rows: each vector loaded serves six accumulators (a GEMM micro-kernel); the rows
 * beyond the tile's height have zero values and are not stored. */
static inline __attribute__((always_inline)) SK_TARGET void SK_PASTE(SK_NAME(sk_bprod_tile), SK_TV)(
    const SK_REAL *restrict pack, int32_t W, const int32_t *restrict tc, const SK_REAL *restrict tv, int32_t len,
    SK_REAL *restrict X, int64_t n, int32_t q, int32_t height, int32_t k0, int32_t last, int32_t rem,
    const SK_REAL *restrict wrow, SK_REAL *restrict gsum)
{
#define SK_T_DECL(k) SK_V t0##k = SK_VZERO(), t1##k = SK_VZERO(), t2##k = SK_VZERO(), t3##k = SK_VZERO(), \
                          t4##k = SK_VZERO(), t5##k = SK_VZERO();
#define SK_T_LOAD(k) const SK_V x##k = SK_VLOAD(p + (k) * SK_VL);
#define SK_T_FMA(r) { const SK_V b = SK_VBCAST(vl + r); SK_TEACH(SK_T_FMA_##r) }
#define SK_T_FMA_0(k) t0##k = SK_VFMA(b, x##k, t0##k);
#define SK_T_FMA_1(k) t1##k = SK_VFMA(b, x##k, t1##k);
#define SK_T_FMA_2(k) t2##k = SK_VFMA(b, x##k, t2##k);
#define SK_T_FMA_3(k) t3##k = SK_VFMA(b, x##k, t3##k);
#define SK_T_FMA_4(k) t4##k = SK_VFMA(b, x##k, t4##k);
#define SK_T_FMA_5(k) t5##k = SK_VFMA(b, x##k, t5##k);
    SK_TEACH(SK_T_DECL)
    for (int32_t l = 0; l < len; l++) {
        const SK_REAL *restrict p = pack + (int64_t)tc[l] * W + (int64_t)k0 * SK_VL;
        const SK_REAL *restrict vl = tv + SK_BPROD_TILE_ROWS * l;
        SK_TEACH(SK_T_LOAD)
        SK_T_FMA(0) SK_T_FMA(1) SK_T_FMA(2) SK_T_FMA(3) SK_T_FMA(4) SK_T_FMA(5)
    }
#define SK_T_OUT(k)                                                                              \
    SK_TILE_STORE(k, q, t0##k);                                                                  \
    SK_TILE_STORE(k, q + 1, t1##k);                                                              \
    if (height > 2) SK_TILE_STORE(k, q + 2, t2##k);                                              \
    if (height > 3) SK_TILE_STORE(k, q + 3, t3##k);                                              \
    if (height > 4) SK_TILE_STORE(k, q + 4, t4##k);                                              \
    if (height > 5) SK_TILE_STORE(k, q + 5, t5##k);
    SK_TEACH(SK_T_OUT)
    if (wrow != NULL) {
        const SK_REAL wq[SK_BPROD_TILE_ROWS] = { wrow[q], wrow[q + 1], height > 2 ? wrow[q + 2] : 0,
                                                 height > 3 ? wrow[q + 3] : 0, height > 4 ? wrow[q + 4] : 0,
                                                 height > 5 ? wrow[q + 5] : 0 };
#define SK_T_SUM(k)                                                                              \
        {                                                                                        \
            SK_REAL *restrict s_ = gsum + (int64_t)(k0 + (k)) * SK_VL;                           \
            SK_V sum = SK_VLOAD(s_);                                                             \
            sum = SK_VFMA(SK_VSET1(wq[0]), t0##k, sum);                                          \
            sum = SK_VFMA(SK_VSET1(wq[1]), t1##k, sum);                                          \
            sum = SK_VFMA(SK_VSET1(wq[2]), t2##k, sum);                                          \
            sum = SK_VFMA(SK_VSET1(wq[3]), t3##k, sum);                                          \
            sum = SK_VFMA(SK_VSET1(wq[4]), t4##k, sum);                                          \
            sum = SK_VFMA(SK_VSET1(wq[5]), t5##k, sum);                                          \
            SK_VSTORE(s_, sum);                                                                  \
        }
        SK_TEACH(SK_T_SUM)
    }
#undef SK_T_DECL
#undef SK_T_LOAD
#undef SK_T_FMA
#undef SK_T_FMA_0
#undef SK_T_FMA_1
#undef SK_T_FMA_2
#undef SK_T_FMA_3
#undef SK_T_FMA_4
#undef SK_T_FMA_5
#undef SK_T_OUT
#undef SK_T_SUM
}
#endif

#if defined(SK_PV)
/* Two rows (an LSTM unit's h and c): each vector loaded serves both. */
static inline __attribute__((always_inline)) SK_TARGET void SK_PASTE(SK_NAME(sk_bprod_pair), SK_PV)(
    const SK_REAL *restrict pack, int32_t W, const int32_t *restrict tc, const SK_REAL *restrict tv, int32_t len,
    SK_REAL *restrict X, int64_t n, int32_t q, int32_t k0, int32_t last, int32_t rem,
    const SK_REAL *restrict wrow, SK_REAL *restrict gsum)
{
#define SK_P_DECL(k) SK_V r0##k = SK_VZERO(), r1##k = SK_VZERO();
#define SK_P_STEP(k)                                                                             \
        {                                                                                        \
            const SK_V x = SK_VLOAD(p + (k) * SK_VL);                                            \
            r0##k = SK_VFMA(b0, x, r0##k);                                                       \
            r1##k = SK_VFMA(b1, x, r1##k);                                                       \
        }
    SK_TEACH(SK_P_DECL)
    for (int32_t l = 0; l < len; l++) {
        const SK_REAL *restrict p = pack + (int64_t)tc[l] * W + (int64_t)k0 * SK_VL;
        const SK_V b0 = SK_VBCAST(tv + 2 * l), b1 = SK_VBCAST(tv + 2 * l + 1);
        SK_TEACH(SK_P_STEP)
    }
#define SK_P_OUT(k) SK_TILE_STORE(k, q, r0##k); SK_TILE_STORE(k, q + 1, r1##k);
    SK_TEACH(SK_P_OUT)
    if (wrow != NULL) {
        const SK_V w0 = SK_VSET1(wrow[q]), w1 = SK_VSET1(wrow[q + 1]);
#define SK_P_SUM(k)                                                                              \
        {                                                                                        \
            SK_REAL *restrict s_ = gsum + (int64_t)(k0 + (k)) * SK_VL;                           \
            SK_VSTORE(s_, SK_VFMA(w1, r1##k, SK_VFMA(w0, r0##k, SK_VLOAD(s_))));                 \
        }
        SK_TEACH(SK_P_SUM)
    }
#undef SK_P_DECL
#undef SK_P_STEP
#undef SK_P_OUT
#undef SK_P_SUM
}
#endif

#undef SK_TILE_STORE
