/*
 * Block product, one panel: a template included by sk_bprod_numeric.h once per panel width
 * SK_NV (in vectors of SK_VL scalars), with the vector operations of one instruction set and
 * scalar type defined (SK_V, SK_VZERO, SK_VLOAD, SK_VLOADN, SK_VSTORE, SK_VSTOREN, SK_VSET1,
 * SK_VBCAST, SK_VFMA, SK_VADD, SK_TARGET) and SK_ACCUMULATORS, the vector registers the
 * instruction set leaves for accumulators.
 *
 * The panel is columns c0 .. c0+width-1 of a dense block X (m rows, row stride n), with
 * (SK_NV-1)*SK_VL < width <= SK_NV*SK_VL. In place:
 *
 *     X(:, panel) <- S * X(:, panel)        S: m x m sparse, by rows (rowptr, col, sv)
 *
 * 1. The old panel is copied into `pack` (rows SK_NV*SK_VL scalars apart, 64-byte aligned),
 *    which stays in the L1 or L2 cache while every output row reads it — unless `packed`: then
 *    `pack` is the old panel itself, elsewhere than X (shifting panels, sk_bprod_plan), rows
 *    SK_NV*SK_VL apart too, and nothing is copied. The weighted column sums
 *    of the new rows go into gout one of two ways: with `u` (= S' w, from the caller), the copy
 *    accumulates u' * X_old(:, panel), which is w' * S * X_old, in registers: cheap when a
 *    block has many panels to share the cost of u; with `wrow` (w by local row), each new row is
 *    added, times its weight, to a running sum as it is stored: cheap when rows are long. The
 *    running sum stays in SK_NV registers of its own where the accumulators leave room for them
 *    (SK_SUM_REGISTERS), otherwise in `gsum`; tiles always add to `gsum`, so around a tile the
 *    registers are stored there and reloaded, and either way the sum is taken in the same order.
 * 2. Each output row q is accumulated in SK_NV vector registers over the entries of row q of S
 *    (one broadcast of S(q,j) and SK_NV loads from row j of the pack per entry) and stored once.
 *    Rows come in tiles (`tiles`: first row, height, entries per row, where the tile's columns
 *    and values start): a tile of rows with the same columns reuses every vector it loads for
 *    each of them — two rows (an LSTM unit's h and c), or up to SK_BPROD_TILE_ROWS (a dense S)
 *    as a GEMM micro-kernel does — sub-panel by sub-panel (sk_bprod_tile.h); its values are
 *    stored two, or SK_BPROD_TILE_ROWS (zero-padded), to a column.
 *    Single rows use `chains` sets of accumulators (1 to 3: the block's, sk_bprod_chains; no more
 *    than SK_ACCUMULATORS holds at this width, SK_MOST_CHAINS), which take the entries in turn,
 *    so that the multiply-add latency is hidden; the loop takes two entries per set at a time
 *    (four with one set: fewer branches per multiply-add), and the sets are added at the end:
 *    (a + b) + c. The number comes from the block, not from this panel's width, so that a
 *    column's sums do not depend on how the block's columns are cut into panels.
 * 3. While row q is computed, row q of the next panel is prefetched (`next`: its first value,
 *    row stride, rows and bytes per row), so that its packing does not wait on memory.
 *
 * The sum for each output is taken in a fixed order (entries of row q in storage order, dealt to
 * the sets in turn), so results do not depend on how panels go to threads.
 */
#include "sk_each.h"

/* The most sets of accumulators the registers allow at this width: three, two or one. */
#if 3 * SK_NV <= SK_ACCUMULATORS
#define SK_MOST_CHAINS 3
#elif 2 * SK_NV <= SK_ACCUMULATORS
#define SK_MOST_CHAINS 2
#else
#define SK_MOST_CHAINS 1
#endif

/* The running column sum of the new rows in registers, when they fit beside the accumulators:
 * that saves a load and a store of SK_NV vectors per row (3% of the whole product on gru k = 256
 * SnAp-2 with AVX-512: Docs/BENCHMARKS.md). */
#if (SK_MOST_CHAINS + 1) * SK_NV <= SK_ACCUMULATORS
#define SK_SUM_REGISTERS 1
#else
#define SK_SUM_REGISTERS 0
#endif


static SK_TARGET void SK_PASTE(SK_NAME(sk_bprod_panel), SK_NV)(
    int32_t m, int64_t n, SK_REAL *restrict X, int32_t width, int32_t ntiles, const sk_bprod_tile *restrict tiles,
    const int32_t *restrict col, const SK_REAL *restrict sv, const SK_REAL *restrict u,
    const SK_REAL *restrict wrow, SK_REAL *restrict gsum, SK_REAL *restrict gout, SK_REAL *restrict pack,
    int packed, const sk_bprod_next *next, int32_t chains)
{
    enum { W = SK_NV * SK_VL };
    /* Lanes used in the last vector (1 .. SK_VL); the others are full. */
    const int32_t rem = width - (SK_NV - 1) * SK_VL;
    const int partial = rem < SK_VL;

#define SK_LOAD_K(k, p) ((k) == SK_NV - 1 && partial ? SK_VLOADN((p) + (k) * SK_VL, rem) : SK_VLOAD((p) + (k) * SK_VL))
#define SK_STORE_K(k, p, v)                                                                      \
    do {                                                                                         \
        if ((k) == SK_NV - 1 && partial) SK_VSTOREN((p) + (k) * SK_VL, v, rem);                  \
        else SK_VSTORE((p) + (k) * SK_VL, v);                                                    \
    } while (0)

    /* 1. Pack the old panel (and accumulate u' X_old). */
    if (u != NULL) {
#define SK_G_DECL(k) SK_V g##k = SK_VZERO();
        SK_EACH(SK_G_DECL)
        for (int32_t j = 0; j < m; j++) {
            const SK_REAL *restrict x = X + (int64_t)j * n;
            SK_REAL *restrict p = pack + (int64_t)j * W;
            const SK_V uj = SK_VSET1(u[j]);
#define SK_G_ROW(k)                                                                              \
            {                                                                                    \
                const SK_V t = SK_LOAD_K(k, x);                                                  \
                SK_VSTORE(p + (k) * SK_VL, t);                                                   \
                g##k = SK_VFMA(uj, t, g##k);                                                     \
            }
#define SK_G_READ(k) g##k = SK_VFMA(uj, SK_LOAD_K(k, p), g##k);
            if (packed) { SK_EACH(SK_G_READ) } else { SK_EACH(SK_G_ROW) }
        }
#define SK_G_OUT(k) SK_STORE_K(k, gout, SK_VADD(SK_LOAD_K(k, gout), g##k));
        SK_EACH(SK_G_OUT)
    } else if (!packed) {
        for (int32_t j = 0; j < m; j++) {
            const SK_REAL *restrict x = X + (int64_t)j * n;
            SK_REAL *restrict p = pack + (int64_t)j * W;
#define SK_P_ROW(k) SK_VSTORE(p + (k) * SK_VL, SK_LOAD_K(k, x));
            SK_EACH(SK_P_ROW)
        }
    }

#if SK_SUM_REGISTERS
#define SK_S_DECL(k) SK_V s##k = SK_VZERO();
    SK_EACH(SK_S_DECL)
#else
    if (wrow != NULL) {
#define SK_ROW_ZERO(k) SK_VSTORE(gsum + (k) * SK_VL, SK_VZERO());
        SK_EACH(SK_ROW_ZERO)
    }
#endif

    /* 2. New rows, accumulated in registers (and the next panel prefetched, a share per row). */
    const int32_t sets = chains < 1 ? 1 : chains < SK_MOST_CHAINS ? chains : SK_MOST_CHAINS;
    (void)sets;
    const int32_t prefetch_lines = (next->bytes + 63) / 64;
    for (int32_t ti = 0; ti < ntiles; ti++) {
        const int32_t q = tiles[ti].row, height = tiles[ti].height, len = tiles[ti].length;
        const int32_t *restrict tc = col + tiles[ti].column;
        const SK_REAL *restrict tv = sv + tiles[ti].value;
        for (int32_t r = q; r < q + height && r < next->rows; r++) {
            /* Row r of the next panel: a fixed number of lines per row, then its last byte. */
            const char *begin = (const char *)next->x + (int64_t)r * next->stride;
            for (int32_t l = 0; l < prefetch_lines; l++) __builtin_prefetch(begin + 64 * l, 0, 3);
            __builtin_prefetch(begin + next->bytes - 1, 0, 3);
        }
        if (height > 1) {
            /* Rows sharing their columns (tiles; a pair when two), sub-panel by sub-panel: the
             * kernels' accumulators and loaded vectors fit the registers whatever SK_NV is. */
            const int32_t last = partial ? SK_NV - 1 : -1;
            int32_t k0 = 0;
#if SK_SUM_REGISTERS
#define SK_S_SPILL(k) SK_VSTORE(gsum + (k) * SK_VL, s##k);
            if (wrow != NULL) { SK_EACH(SK_S_SPILL) }
#endif
            if (height == 2) {
#if SK_PAIR_VECTORS >= 8
                for (; k0 + 8 <= SK_NV; k0 += 8)
                    SK_PASTE(SK_NAME(sk_bprod_pair), 8)(pack, W, tc, tv, len, X, n, q, k0, last, rem, wrow, gsum);
#endif
#if SK_PAIR_VECTORS >= 4
                for (; k0 + 4 <= SK_NV; k0 += 4)
                    SK_PASTE(SK_NAME(sk_bprod_pair), 4)(pack, W, tc, tv, len, X, n, q, k0, last, rem, wrow, gsum);
#endif
                for (; k0 + 2 <= SK_NV; k0 += 2)
                    SK_PASTE(SK_NAME(sk_bprod_pair), 2)(pack, W, tc, tv, len, X, n, q, k0, last, rem, wrow, gsum);
                for (; k0 < SK_NV; k0++)
                    SK_PASTE(SK_NAME(sk_bprod_pair), 1)(pack, W, tc, tv, len, X, n, q, k0, last, rem, wrow, gsum);
            } else {
#if SK_TILE_VECTORS >= 4
                for (; k0 + 4 <= SK_NV; k0 += 4)
                    SK_PASTE(SK_NAME(sk_bprod_tile), 4)(pack, W, tc, tv, len, X, n, q, height, k0, last, rem, wrow, gsum);
#endif
#if SK_TILE_VECTORS >= 2
                for (; k0 + 2 <= SK_NV; k0 += 2)
                    SK_PASTE(SK_NAME(sk_bprod_tile), 2)(pack, W, tc, tv, len, X, n, q, height, k0, last, rem, wrow, gsum);
#endif
                for (; k0 < SK_NV; k0++)
                    SK_PASTE(SK_NAME(sk_bprod_tile), 1)(pack, W, tc, tv, len, X, n, q, height, k0, last, rem, wrow, gsum);
            }
#if SK_SUM_REGISTERS
#define SK_S_FILL(k) s##k = SK_VLOAD(gsum + (k) * SK_VL);
            if (wrow != NULL) { SK_EACH(SK_S_FILL) }
#endif
            continue;
        }
        int32_t e = 0;
        const int32_t e1 = len;
#define SK_A_DECL(k) SK_V a##k = SK_VZERO();
#define SK_B_DECL(k) SK_V b##k = SK_VZERO();
#define SK_C_DECL(k) SK_V c##k = SK_VZERO();
#define SK_FMA_A(k) a##k = SK_VFMA(v, SK_VLOAD(p + (k) * SK_VL), a##k);
#define SK_FMA_B(k) b##k = SK_VFMA(v, SK_VLOAD(p + (k) * SK_VL), b##k);
#define SK_FMA_C(k) c##k = SK_VFMA(v, SK_VLOAD(p + (k) * SK_VL), c##k);
/* Entry e + i into the accumulators SET. */
#define SK_ENTRY(i, SET)                                                                         \
        {                                                                                        \
            const SK_V v = SK_VBCAST(tv + e + (i));                                              \
            const SK_REAL *restrict p = pack + (int64_t)tc[e + (i)] * W;                         \
            SK_EACH(SET)                                                                         \
        }
#define SK_ADD_B(k) a##k = SK_VADD(a##k, b##k);
#define SK_ADD_C(k) a##k = SK_VADD(a##k, c##k);
        SK_EACH(SK_A_DECL)
#if SK_MOST_CHAINS == 3
        if (sets == 3) {
            SK_EACH(SK_B_DECL)
            SK_EACH(SK_C_DECL)
            for (; e + 5 < e1; e += 6) {
                SK_ENTRY(0, SK_FMA_A) SK_ENTRY(1, SK_FMA_B) SK_ENTRY(2, SK_FMA_C)
                SK_ENTRY(3, SK_FMA_A) SK_ENTRY(4, SK_FMA_B) SK_ENTRY(5, SK_FMA_C)
            }
            for (; e < e1; e++) SK_ENTRY(0, SK_FMA_A)
            SK_EACH(SK_ADD_B)
            SK_EACH(SK_ADD_C)
        } else
#endif
#if SK_MOST_CHAINS >= 2
        if (sets == 2) {
            SK_EACH(SK_B_DECL)
            for (; e + 3 < e1; e += 4) {
                SK_ENTRY(0, SK_FMA_A) SK_ENTRY(1, SK_FMA_B) SK_ENTRY(2, SK_FMA_A) SK_ENTRY(3, SK_FMA_B)
            }
            for (; e < e1; e++) SK_ENTRY(0, SK_FMA_A)
            SK_EACH(SK_ADD_B)
        } else
#endif
        {
            for (; e + 3 < e1; e += 4) {
                SK_ENTRY(0, SK_FMA_A) SK_ENTRY(1, SK_FMA_A) SK_ENTRY(2, SK_FMA_A) SK_ENTRY(3, SK_FMA_A)
            }
            for (; e < e1; e++) SK_ENTRY(0, SK_FMA_A)
        }
        SK_REAL *restrict o = X + (int64_t)q * n;
#define SK_A_OUT(k) SK_STORE_K(k, o, a##k);
        SK_EACH(SK_A_OUT)
        if (wrow != NULL) {
            const SK_V wq = SK_VSET1(wrow[q]);
#if SK_SUM_REGISTERS
#define SK_ROW_SUM(k) s##k = SK_VFMA(wq, a##k, s##k);
#else
#define SK_ROW_SUM(k) SK_VSTORE(gsum + (k) * SK_VL, SK_VFMA(wq, a##k, SK_VLOAD(gsum + (k) * SK_VL)));
#endif
            SK_EACH(SK_ROW_SUM)
        }
    }
    if (wrow != NULL) {
#if SK_SUM_REGISTERS
#define SK_ROW_OUT(k) SK_STORE_K(k, gout, SK_VADD(SK_LOAD_K(k, gout), s##k));
#else
#define SK_ROW_OUT(k) SK_STORE_K(k, gout, SK_VADD(SK_LOAD_K(k, gout), SK_VLOAD(gsum + (k) * SK_VL)));
#endif
        SK_EACH(SK_ROW_OUT)
    }

#undef SK_LOAD_K
#undef SK_STORE_K
#undef SK_G_DECL
#undef SK_G_ROW
#undef SK_G_READ
#undef SK_G_OUT
#undef SK_P_ROW
#undef SK_A_DECL
#undef SK_B_DECL
#undef SK_C_DECL
#undef SK_FMA_A
#undef SK_FMA_B
#undef SK_FMA_C
#undef SK_ENTRY
#undef SK_ADD_B
#undef SK_ADD_C
#undef SK_A_OUT
#undef SK_ROW_ZERO
#undef SK_ROW_SUM
#undef SK_ROW_OUT
#undef SK_S_DECL
#undef SK_S_SPILL
#undef SK_S_FILL
}

#undef SK_MOST_CHAINS
#undef SK_SUM_REGISTERS
