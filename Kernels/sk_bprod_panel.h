/*
 * Block product, one panel: a template included by sk_bprod_numeric.h once per panel width
 * SK_NV (in vectors of SK_VL scalars), with the vector operations of one instruction set and
 * scalar type defined (SK_V, SK_VZERO, SK_VLOAD, SK_VLOADN, SK_VSTORE, SK_VSTOREN, SK_VSET1,
 * SK_VBCAST, SK_VFMA, SK_VADD, SK_TARGET) and SK_DUAL_MAX, the widest panel that still has
 * registers for two sets of accumulators.
 *
 * The panel is columns c0 .. c0+width-1 of a dense block X (m rows, row stride n), with
 * (SK_NV-1)*SK_VL < width <= SK_NV*SK_VL. In place:
 *
 *     X(:, panel) <- S * X(:, panel)        S: m x m sparse, by rows (rowptr, col, sv)
 *
 * 1. The old panel is copied into `pack` (rows SK_NV*SK_VL scalars apart, 64-byte aligned),
 *    which stays in the L1 or L2 cache while every output row reads it. With `u`, the copy also
 *    accumulates u' * X_old(:, panel) into gout (the caller passes u = S' w, so this adds
 *    w' * S * X_old, the weighted column sums of the new rows, without another pass).
 * 2. Each output row q is accumulated in SK_NV vector registers over the entries of row q of S
 *    (one broadcast of S(q,j) and SK_NV loads from row j of the pack per entry) and stored once.
 *    Up to SK_DUAL_MAX vectors, two sets of accumulators take alternate entries, so that the
 *    multiply-add latency is hidden when there are few vectors per row; they are added at the end.
 *
 * 3. While the rows are computed, the next panel's rows are prefetched (`next`: its first value,
 *    row stride, rows and bytes per row), so that its packing does not wait on memory.
 *
 * The sum for each output is taken in a fixed order (entries of row q in storage order, even and
 * odd positions apart when dual), so results do not depend on how panels go to threads.
 */
#include "sk_each.h"

#define SK_PANEL_DUAL (SK_NV <= SK_DUAL_MAX)

static SK_TARGET void SK_PASTE(SK_NAME(sk_bprod_panel), SK_NV)(
    int32_t m, int64_t n, SK_REAL *restrict X, int32_t width, const int32_t *restrict rowptr,
    const int32_t *restrict col, const SK_REAL *restrict sv, const SK_REAL *restrict u,
    SK_REAL *restrict gout, SK_REAL *restrict pack, const sk_bprod_next *next)
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
            SK_EACH(SK_G_ROW)
        }
#define SK_G_OUT(k) SK_STORE_K(k, gout, SK_VADD(SK_LOAD_K(k, gout), g##k));
        SK_EACH(SK_G_OUT)
    } else {
        for (int32_t j = 0; j < m; j++) {
            const SK_REAL *restrict x = X + (int64_t)j * n;
            SK_REAL *restrict p = pack + (int64_t)j * W;
#define SK_P_ROW(k) SK_VSTORE(p + (k) * SK_VL, SK_LOAD_K(k, x));
            SK_EACH(SK_P_ROW)
        }
    }

    /* 2. New rows, accumulated in registers (and the next panel prefetched, a share per row). */
    const int32_t prefetch_step = m > 0 ? (next->rows + m - 1) / m : 0;
    int32_t prefetch_row = 0;
    for (int32_t q = 0; q < m; q++) {
        if (prefetch_row < next->rows) {
            const int32_t r1 = prefetch_row + prefetch_step < next->rows ? prefetch_row + prefetch_step : next->rows;
            for (; prefetch_row < r1; prefetch_row++) {
                const char *begin = (const char *)next->x + (int64_t)prefetch_row * next->stride, *end = begin + next->bytes;
                for (const char *line = (const char *)((uintptr_t)begin & ~(uintptr_t)63); line < end; line += 64) {
                    __builtin_prefetch(line, 0, 3);
                }
            }
        }
        int32_t e = rowptr[q];
        const int32_t e1 = rowptr[q + 1];
#define SK_A_DECL(k) SK_V a##k = SK_VZERO();
        SK_EACH(SK_A_DECL)
#if SK_PANEL_DUAL
#define SK_B_DECL(k) SK_V b##k = SK_VZERO();
        SK_EACH(SK_B_DECL)
        for (; e + 1 < e1; e += 2) {
            const SK_V v0 = SK_VBCAST(sv + e), v1 = SK_VBCAST(sv + e + 1);
            const SK_REAL *restrict p0 = pack + (int64_t)col[e] * W;
            const SK_REAL *restrict p1 = pack + (int64_t)col[e + 1] * W;
#define SK_FMA2(k)                                                                               \
            a##k = SK_VFMA(v0, SK_VLOAD(p0 + (k) * SK_VL), a##k);                                \
            b##k = SK_VFMA(v1, SK_VLOAD(p1 + (k) * SK_VL), b##k);
            SK_EACH(SK_FMA2)
        }
#endif
        for (; e < e1; e++) {
            const SK_V v0 = SK_VBCAST(sv + e);
            const SK_REAL *restrict p0 = pack + (int64_t)col[e] * W;
#define SK_FMA1(k) a##k = SK_VFMA(v0, SK_VLOAD(p0 + (k) * SK_VL), a##k);
            SK_EACH(SK_FMA1)
        }
#if SK_PANEL_DUAL
#define SK_A_ADD(k) a##k = SK_VADD(a##k, b##k);
        SK_EACH(SK_A_ADD)
#endif
        SK_REAL *restrict o = X + (int64_t)q * n;
#define SK_A_OUT(k) SK_STORE_K(k, o, a##k);
        SK_EACH(SK_A_OUT)
    }

#undef SK_LOAD_K
#undef SK_STORE_K
#undef SK_G_DECL
#undef SK_G_ROW
#undef SK_G_OUT
#undef SK_P_ROW
#undef SK_A_DECL
#undef SK_B_DECL
#undef SK_FMA2
#undef SK_FMA1
#undef SK_A_ADD
#undef SK_A_OUT
}

#undef SK_PANEL_DUAL
