/*
 * Block product, numeric phase: a template included once per instruction set and scalar type
 * (sk_bprod_avx2.c, sk_bprod_avx512.c, sk_bprod_generic.c) with the vector operations defined.
 * It instantiates the kernels for rows sharing their columns (tiles of 1, 2 and 4 vectors; pairs
 * of 1, 2, 4 and 8), the panel kernel for 1 to 15 vectors and the driver over work units.
 */

#define SK_TV 1
#include "sk_bprod_tile.h"
#undef SK_TV
#define SK_TV 2
#include "sk_bprod_tile.h"
#undef SK_TV
#define SK_TV 4
#include "sk_bprod_tile.h"
#undef SK_TV
#define SK_PV 1
#include "sk_bprod_tile.h"
#undef SK_PV
#define SK_PV 2
#include "sk_bprod_tile.h"
#undef SK_PV
#define SK_PV 4
#include "sk_bprod_tile.h"
#undef SK_PV
#define SK_PV 8
#include "sk_bprod_tile.h"
#undef SK_PV

#define SK_NV 1
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 2
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 3
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 4
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 5
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 6
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 7
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 8
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 9
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 10
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 11
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 12
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 13
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 14
#include "sk_bprod_panel.h"
#undef SK_NV
#define SK_NV 15
#include "sk_bprod_panel.h"
#undef SK_NV

typedef void (*SK_NAME(sk_bprod_panel_fn))(int32_t, int64_t, SK_REAL *restrict, int32_t, int32_t, const sk_bprod_tile *restrict,
                                           const int32_t *restrict, const SK_REAL *restrict, const SK_REAL *restrict,
                                           const SK_REAL *restrict, SK_REAL *restrict, SK_REAL *restrict,
                                           SK_REAL *restrict, int, const sk_bprod_next *, int32_t);

static const SK_NAME(sk_bprod_panel_fn) SK_NAME(sk_bprod_panels)[SK_BPROD_MAX_VECTORS] = {
    SK_PASTE(SK_NAME(sk_bprod_panel), 1), SK_PASTE(SK_NAME(sk_bprod_panel), 2), SK_PASTE(SK_NAME(sk_bprod_panel), 3), SK_PASTE(SK_NAME(sk_bprod_panel), 4),
    SK_PASTE(SK_NAME(sk_bprod_panel), 5), SK_PASTE(SK_NAME(sk_bprod_panel), 6), SK_PASTE(SK_NAME(sk_bprod_panel), 7), SK_PASTE(SK_NAME(sk_bprod_panel), 8),
    SK_PASTE(SK_NAME(sk_bprod_panel), 9), SK_PASTE(SK_NAME(sk_bprod_panel), 10), SK_PASTE(SK_NAME(sk_bprod_panel), 11), SK_PASTE(SK_NAME(sk_bprod_panel), 12),
    SK_PASTE(SK_NAME(sk_bprod_panel), 13), SK_PASTE(SK_NAME(sk_bprod_panel), 14), SK_PASTE(SK_NAME(sk_bprod_panel), 15),
};

/* Where unit t's panel starts in X and its row stride: inside the block's rows (row-major
 * blocks); a contiguous m x width array of its own (panel-major: the panels before it hold c0
 * columns of all m rows); or, shifting, a contiguous m x (whole vectors) array at its offset,
 * plus the gap when `high`. */
static inline SK_REAL *SK_NAME(sk_bprod_panel_at)(const sk_bprod_plan *P, SK_REAL *X, int32_t t, int high, int64_t *stride)
{
    const int32_t b = P->unit_block[t], width = P->unit_width[t];
    if (P->unit_offset != NULL) {
        *stride = (width + SK_VL - 1) / SK_VL * SK_VL;
        return X + P->unit_offset[t] + (high ? P->gap : 0);
    }
    if (P->panel_major) {
        *stride = width;
        return X + P->x_start[b] + (int64_t)P->unit_col[t] * P->rows[b];
    }
    *stride = P->cols[b];
    return X + P->x_start[b] + P->unit_col[t];
}

/* Work units u0 .. u1-1 (see sk_bprod_plan), in increasing order unless shifting panels up
 * (placement 1). scratch: sk_bprod_scratch_bytes, 64-byte aligned. */
SK_TARGET void SK_NAME(sk_bprod_units)(const sk_bprod_plan *P, const SK_REAL *restrict Av, SK_REAL *restrict X,
                                       const SK_REAL *restrict E, const SK_REAL *restrict w, SK_REAL *restrict g,
                                       int32_t u0, int32_t u1, int placement, void *scratch)
{
    const int shifting = P->unit_offset != NULL, up = shifting && placement == 1;
    /* Shifting: the old panels are read where the placement says, the new ones written gap lower
     * (from placement 0) or higher (from 1). */
    const int old_high = shifting && placement == 0, new_high = shifting && placement == 1;
    SK_REAL *restrict pack = scratch;
    SK_REAL *restrict sv = pack + sk_bprod_align((int64_t)P->max_rows * P->max_vectors * SK_VL, sizeof(SK_REAL));
    SK_REAL *restrict uvec = sv + sk_bprod_align(P->max_entries, sizeof(SK_REAL));
    SK_REAL *restrict wr = uvec + sk_bprod_align(P->max_rows, sizeof(SK_REAL));
    SK_REAL *restrict gsum = wr + sk_bprod_align(P->max_rows, sizeof(SK_REAL));
    int32_t current = -1;
    for (int32_t i = u0; i < u1; i++) {
        const int32_t t = up ? u1 - 1 - (i - u0) : i, following = up ? t - 1 : t + 1;
        const int32_t b = P->unit_block[t];
        const int32_t m = P->rows[b];
        const int32_t *restrict rows = P->row_global + P->row_start[b];
        const sk_bprod_tile *restrict tiles = P->tiles + P->tile_start[b];
        const int32_t ntiles = (int32_t)(P->tile_start[b + 1] - P->tile_start[b]);
        const int32_t *restrict col = P->entry_col + P->col_start[b];
        if (b != current) {
            /* The block's values of S = A[R, R], gathered once for its panels; the weights by
             * local row, and u = S' w(R) if the column sums are formed from it. */
            const int64_t e0 = P->entry_start[b], ne = P->entry_start[b + 1] - e0;
            const int32_t *restrict val = P->entry_val + e0;
            /* A value index of -1 is a zero (the padding of a tile shorter than its kernel). */
            for (int64_t e = 0; e < ne; e++) sv[e] = val[e] >= 0 ? Av[val[e]] : 0;
            if (w != NULL) for (int32_t q = 0; q < m; q++) wr[q] = w[rows[q]];
            if (w != NULL && P->block_sums_by_u[b]) {
                for (int32_t q = 0; q < m; q++) uvec[q] = 0;
                for (int32_t ti = 0; ti < ntiles; ti++) {
                    const int32_t q = tiles[ti].row, height = tiles[ti].height, len = tiles[ti].length;
                    const int32_t *restrict tc = col + tiles[ti].column;
                    const SK_REAL *restrict tv = sv + tiles[ti].value;
                    if (height == 1) {
                        const SK_REAL wq = wr[q];
                        for (int32_t l = 0; l < len; l++) uvec[tc[l]] += tv[l] * wq;
                        continue;
                    }
                    for (int32_t l = 0; l < len; l++) {
                        SK_REAL sum = 0;
                        const int32_t stride = height > 2 ? SK_BPROD_TILE_ROWS : height;
                        for (int32_t r = 0; r < height; r++) sum += tv[l * stride + r] * wr[q + r];
                        uvec[tc[l]] += sum;
                    }
                }
            }
            current = b;
        }
        const int32_t c0 = P->unit_col[t], width = P->unit_width[t];
        SK_REAL *restrict gb = w != NULL ? g + P->g_start[b] : NULL;
        sk_bprod_next next = { NULL, 0, 0, 0 };
        if (following >= u0 && following < u1) {
            /* The next panel's old values: first value, row stride, rows, bytes a row. */
            int64_t next_stride;
            next.x = SK_NAME(sk_bprod_panel_at)(P, X, following, old_high, &next_stride);
            next.stride = next_stride * (int64_t)sizeof(SK_REAL);
            next.rows = P->rows[P->unit_block[following]];
            next.bytes = P->unit_width[following] * (int32_t)sizeof(SK_REAL);
        }
        int64_t stride;
        SK_REAL *restrict Xp = SK_NAME(sk_bprod_panel_at)(P, X, t, new_high, &stride);
        /* Shifting, the old panel is read where it is (its rows are whole vectors, as the pack's). */
        const SK_REAL *restrict old = shifting ? SK_NAME(sk_bprod_panel_at)(P, X, t, old_high, &stride) : NULL;
        SK_NAME(sk_bprod_panels)[(width + SK_VL - 1) / SK_VL - 1](m, stride, Xp, width, ntiles, tiles, col, sv, w != NULL && P->block_sums_by_u[b] ? uvec : NULL,
                                                                  w != NULL && !P->block_sums_by_u[b] ? wr : NULL, gsum,
                                                                  w != NULL ? gb + c0 : NULL, old != NULL ? (SK_REAL *)old : pack,
                                                                  old != NULL, &next,
                                                                  P->block_chains != NULL ? P->block_chains[b] : 3);
        /* Additions into this panel: X(r, c .. c+len-1) += E(src ..), and their gradient term. */
        for (int64_t a = P->unit_add[t]; a < P->unit_add[t + 1]; a++) {
            const int32_t r = P->add_row[a], c = P->add_col[a], len = P->add_len[a];
            const SK_REAL *restrict src = E + P->add_src[a];
            SK_REAL *restrict dst = Xp + (int64_t)r * stride + (c - c0);
            for (int32_t i = 0; i < len; i++) dst[i] += src[i];
            if (w != NULL && wr[r] != 0) {
                SK_REAL *restrict gd = gb + c;
                for (int32_t i = 0; i < len; i++) gd[i] += wr[r] * src[i];
            }
        }
    }
}
