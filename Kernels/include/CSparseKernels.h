/*
 * CSparseKernels: the C layer of SparseRTRL.
 *
 * Two parts, kept apart:
 *   - a thin shim over SuiteSparse (CHOLMOD and CXSparse from Debian's libsuitesparse-dev):
 *     a heap-allocated cholmod_common with printing silenced and errors captured;
 *   - hand-written hot kernels (sk_*): the masked sparse-sparse product (symbolic and numeric
 *     phases), a persistent worker pool, and a memory-bandwidth probe.
 *
 * All sparse matrices here are compressed sparse column (CSC) with int32 indices:
 * column j holds rows Ai[Ap[j] .. Ap[j+1]-1], values Ax at the same positions.
 */
#ifndef CSPARSEKERNELS_H
#define CSPARSEKERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <suitesparse/cholmod.h>
#include <suitesparse/cs.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- SuiteSparse shim (sk_cholmod.c) ------------------------------------------------------ */

/* A started cholmod_common on the heap: printing off, errors recorded per thread. NULL if out
 * of memory. Free with sk_cholmod_free. */
cholmod_common *sk_cholmod_new(void);
void sk_cholmod_free(cholmod_common *common);
/* The message of the last CHOLMOD error reported on this thread ("" if none). */
const char *sk_cholmod_last_error(void);
void sk_cholmod_clear_error(void);
/* fopen/fclose for Swift callers that hand a FILE* to CHOLMOD. */
FILE *sk_fopen(const char *path, const char *mode);
int sk_fclose(FILE *file);

/* ---- Worker pool (sk_pool.c) ---------------------------------------------------------------- */

/* A fixed set of threads that run one task at a time: task(context, thread, nthreads) is called
 * once for every thread in 0..<nthreads (thread 0 on the caller), and sk_pool_run returns when
 * all calls have returned. Nothing is allocated per run. Several threads may call sk_pool_run on
 * one pool: their tasks run one after another. A task must not call sk_pool_run on its own pool. */
typedef struct sk_pool sk_pool;
typedef void (*sk_task)(void *context, int thread, int nthreads);
sk_pool *sk_pool_new(int nthreads);
void sk_pool_free(sk_pool *pool);
int sk_pool_threads(const sk_pool *pool);
void sk_pool_run(sk_pool *pool, sk_task task, void *context);

/* ---- Masked product C<M> = diag(r) * A * B * diag(s) (sk_mprod_*.c) ------------------------- */

/* Symbolic phase, run count: for every column j of M, the number of runs (maximal stretches
 * where consecutive entries of a column of A land on consecutive entries of column j of M) and
 * the masked multiply-adds. A is m x k, B is k x n, M is m x n; rows of M sorted, no duplicates.
 * mark is int32 workspace of size m, all -1 on entry and on return. Returns total runs. */
int64_t sk_mprod_count_runs(int32_t n, const int32_t *Ap, const int32_t *Ai,
                            const int32_t *Bp, const int32_t *Bi,
                            const int32_t *Mp, const int32_t *Mi,
                            int32_t *mark, int64_t *runs_per_column,
                            int64_t *flops_per_column);

/* Symbolic phase, fill: the runs of every column j, at Rp[j] .. Rp[j+1]-1 (Rp from the counts). */
void sk_mprod_fill_runs(int32_t n, const int32_t *Ap, const int32_t *Ai,
                        const int32_t *Bp, const int32_t *Bi,
                        const int32_t *Mp, const int32_t *Mi,
                        int32_t *mark, const int64_t *Rp,
                        int32_t *run_b, int32_t *run_a, int32_t *run_c, int32_t *run_len);

/* Multiply-adds of the unmasked product A*B, column by column. */
void sk_mprod_count_flops(int32_t n, const int32_t *Ap, const int32_t *Bp, const int32_t *Bi,
                          int64_t *flops_per_column);

/* The run ("segmented") layout: runs of column j are axpys C[c..c+len) += b * A[a..a+len). */
typedef struct {
    const int32_t *Mp, *Mi;                     /* pattern of M (and C) */
    const int64_t *Rp;                          /* runs of column j: Rp[j] .. Rp[j+1]-1 */
    const int32_t *run_b, *run_a, *run_c, *run_len;
} sk_run_plan;

/* The accumulator ("Gustavson") layout: column j of A*B scattered into a dense work vector of
 * size m, then gathered at M's rows. */
typedef struct {
    int32_t m;
    const int32_t *Ap, *Ai, *Bp, *Bi, *Mp, *Mi;
} sk_accumulator_plan;

/* Numeric phase over columns [j0, j1). rowscale (size m) and colscale (size n) may be NULL.
 * Every entry of C in those columns is written; nothing is allocated. With skip_zero, a term whose
 * factor B(k,j) is exactly zero is skipped without reading A(:,k) (the result is the same but for
 * the sign of zero results), and the multiply-adds skipped are added to *skipped. */
void sk_mprod_runs_f64(const sk_run_plan *plan, const double *Ax, const double *Bx,
                       const double *rowscale, const double *colscale, double *Cx,
                       int32_t j0, int32_t j1, int skip_zero, int64_t *skipped);
void sk_mprod_runs_f32(const sk_run_plan *plan, const float *Ax, const float *Bx,
                       const float *rowscale, const float *colscale, float *Cx,
                       int32_t j0, int32_t j1, int skip_zero, int64_t *skipped);
/* work: size m, all zero on entry and on return. */
void sk_mprod_accumulate_f64(const sk_accumulator_plan *plan, const double *Ax, const double *Bx,
                             const double *rowscale, const double *colscale, double *Cx,
                             int32_t j0, int32_t j1, double *work, int skip_zero, int64_t *skipped);
void sk_mprod_accumulate_f32(const sk_accumulator_plan *plan, const float *Ax, const float *Bx,
                             const float *rowscale, const float *colscale, float *Cx,
                             int32_t j0, int32_t j1, float *work, int skip_zero, int64_t *skipped);

/* One numeric-phase call, split over a pool: thread t computes columns bounds[t] .. bounds[t+1]-1
 * (bounds has nthreads+1 entries). Exactly one of runs/accumulator is set. work holds
 * nthreads * m scalars (accumulator only). Each column is computed by one thread in a fixed order,
 * so the result has the same bits for any number of threads. */
typedef struct {
    const sk_run_plan *runs;
    const sk_accumulator_plan *accumulator;
    const void *Ax, *Bx, *rowscale, *colscale;
    void *Cx;
    void *work;
    const int32_t *bounds;
    int single;                                 /* 1: float, 0: double */
    int skip_zero;                              /* skip terms whose B factor is zero */
    int64_t *skipped;                           /* per thread: multiply-adds skipped (or NULL) */
} sk_mprod_call;
void sk_mprod_execute(sk_pool *pool, const sk_mprod_call *call);

/* ---- Block-diagonal product in column-scaled form (sk_scaled_block.c) ------------------------
 *
 * X <- X * B in place, for X (m x n) block-diagonal with dense blocks and B (n x n) block-diagonal
 * on the same column blocks, when most rows of B are zero off the diagonal.
 *
 * X is held as Y * diag(s): Y the stored values, s one scale per column. Block b spans columns
 * col_start[b] .. col_start[b+1]-1 and rows[b] rows; its values are stored column-major at
 * Y + value_start[b], columns column_stride[b] apart (rows[b] if NULL; padding never read). The diagonal of B goes into the scales (s_j *= B(j,j), no pass over Y), so
 * a step costs only the off-diagonal terms of the rows of B flagged active:
 *     Y(:,j) += (s_r B(r,j) / s_j') * Y_old(:,r)    for every active r, every off-diagonal B(r,j).
 * Rows not flagged must be zero off the diagonal; they are not read. A scale leaving [lo, hi],
 * zero or not finite, is moved into its column (Y(:,j) *= s_j, s_j = 1).
 *
 * A deferred product rides along: the caller's vector is g + Y*w (one weight w_j per column),
 * so adding a multiple of X(:,j) to g costs one update of w_j. Before column j of Y changes its
 * term is folded in (g(block's rows) += w_j Y(:,j), w_j = 0); block b's rows of g start at
 * row_start[b].
 *
 * B's values are read through indices into the caller's value array Bv: B(j,j) at diag_val[j]
 * (-1: zero); the off-diagonal entries of row r at edge_start[r] .. edge_start[r+1]-1, column
 * edge_col[e] (in r's block, never r) and value Bv[edge_val[e]]. */
typedef struct {
    int32_t nblocks;
    const int32_t *col_start;                   /* nblocks + 1 */
    const int32_t *rows;                        /* nblocks: rows of each block */
    const int32_t *row_start;                   /* nblocks: first row of each block in g */
    const int64_t *value_start;                 /* nblocks: offset of each block in Y */
    const int64_t *edge_start;                  /* n + 1 */
    const int32_t *edge_col, *edge_val;         /* per off-diagonal entry */
    const int32_t *diag_val;                    /* n */
    int64_t max_block_values;                   /* largest rows[b] * columns of b */
    int32_t max_block_columns;
    int64_t max_block_edges;                    /* most off-diagonal entries of B in one block */
    const int32_t *column_stride;               /* nblocks: values from one column of the block to the
                                                   next (>= rows[b]; the rest padding), or NULL: rows[b] */
} sk_scaled_block_plan;

/* Blocks [b0, b1) of one update; scratch holds max_block_values scalars, source_scale, sources,
 * written and heads max_block_columns each (written all zero and heads all -1 on entry and on
 * return), links, link_source and link_coef max_block_edges each. The active columns' terms are
 * listed by target column, and each target column is then updated in one pass (its deferred
 * product folded with the old values, its terms added): targets taken source by source, those
 * with as many terms (up to three) four at a time, sharing g's pass. Returns the multiply-adds of the
 * off-diagonal terms done, and adds to *changed the number of columns of Y written (pushed into
 * or renormalised). */
int64_t sk_scaled_block_update_f64(const sk_scaled_block_plan *plan, const double *Bv, const uint8_t *active,
                                   double *Y, double *s, double *w, double *g, double lo, double hi,
                                   int32_t b0, int32_t b1, double *scratch, double *source_scale,
                                   int32_t *sources, uint8_t *written, int32_t *heads, int32_t *links,
                                   int32_t *link_source, double *link_coef, int64_t *changed);
int64_t sk_scaled_block_update_f32(const sk_scaled_block_plan *plan, const float *Bv, const uint8_t *active,
                                   float *Y, float *s, float *w, float *g, float lo, float hi,
                                   int32_t b0, int32_t b1, float *scratch, float *source_scale,
                                   int32_t *sources, uint8_t *written, int32_t *heads, int32_t *links,
                                   int32_t *link_source, float *link_coef, int64_t *changed);

/* One update split over a pool by blocks: thread t does blocks bounds[t] .. bounds[t+1]-1 with
 * its own workspace (scratch, source_scale, sources and written at t times the sizes above) and
 * writes its multiply-adds to done[t] and its columns written to changed[t]. Blocks touch disjoint parts of Y, s and w; with more than one
 * thread their rows of g must be disjoint too (the caller's duty). The result then has the same
 * bits for any number of threads. */
typedef struct {
    const sk_scaled_block_plan *plan;
    const void *Bv;
    const uint8_t *active;
    void *Y, *s, *w, *g;
    double lo, hi;
    const int32_t *bounds;
    void *scratch, *source_scale;
    int32_t *sources;
    uint8_t *written;
    int32_t *heads, *links, *link_source;
    void *link_coef;
    int64_t *done, *changed;
    int single;                                 /* 1: float, 0: double */
} sk_scaled_block_call;
void sk_scaled_block_execute(sk_pool *pool, const sk_scaled_block_call *call);

/* ---- Block product: X_b <- A[R_b, R_b] * X_b + E_b in place (sk_bprod_*.c) ------------------
 *
 * X holds dense blocks, block b (m_b x n_b) from X + x_start[b]: row-major (row stride n_b), or
 * with panel_major panel by panel, each of its units' panels a contiguous m_b x width row-major
 * array (so a panel is packed from one stretch of memory, which the prefetchers follow). A is a
 * sparse square matrix whose values the caller passes each call (Av); R_b lists m_b of its
 * rows/columns (row_global), so S_b = A[R_b, R_b] is m_b x m_b. A call does, for every block,
 *
 *     X_b <- S_b * X_b + (additions)          (additions: X_b(r, c .. c+len-1) += E(src ..))
 *     g(g_start[b] + t) += sum over rows q of w(R_b[q]) * X_b(q, t)     (if w is given)
 *
 * S_b is stored by rows, in tiles: a tile is one row, or up to sk_bprod_tile_rows() consecutive
 * rows with the same columns (sk_bprod_tile); its `length` columns are at entry_col +
 * col_start[b] + column (local columns: rows of X_b), its values at Av[entry_val[entry_start[b] +
 * value + ...]], for a tile of two rows two to a column, of more sk_bprod_tile_rows() to a
 * column (a value index of -1, the padding of a shorter tile, reads as zero). The work is cut into units, each one panel of columns of one block
 * (unit_col, unit_width, at most max_vectors vectors wide for the instruction set in use); a
 * unit's additions (unit_add) lie inside its panel, in the order they are applied. Units of one
 * block are consecutive. Each output is computed by one thread in a fixed order, so results are
 * the same for any split of the units over threads. */
enum { SK_ISA_GENERIC = 0, SK_ISA_AVX2 = 1, SK_ISA_AVX512 = 2 };

typedef struct {
    int32_t row;                                /* first local row */
    int32_t height;                             /* 1, or 2 to sk_bprod_tile_rows() rows with the same columns */
                                                /* (values per column: 1, 2, or sk_bprod_tile_rows() for more) */
    int32_t length;                             /* entries per row */
    int32_t column;                             /* first of its columns, from the block's col_start */
    int32_t value;                              /* first of its values, from the block's entry_start */
} sk_bprod_tile;

typedef struct {
    int32_t nblocks;
    const int32_t *rows;                        /* nblocks: m_b */
    const int64_t *cols;                        /* nblocks: n_b */
    const int64_t *x_start;                     /* nblocks: first value of X_b */
    const int64_t *g_start;                     /* nblocks: g index of X_b's column 0 */
    const int64_t *row_start;                   /* nblocks + 1: block b's rows in row_global */
    const int32_t *row_global;
    const int64_t *tile_start;                  /* nblocks + 1: block b's tiles */
    const sk_bprod_tile *tiles;
    const int64_t *col_start;                   /* nblocks + 1: block b's columns in entry_col */
    const int32_t *entry_col;
    const int64_t *entry_start;                 /* nblocks + 1: block b's values in entry_val */
    const int32_t *entry_val;
    const uint8_t *block_chains;                /* nblocks: sets of accumulators (1 to 3) that take a single
                                                   row's entries in turn (sk_bprod_chains); NULL: as many as
                                                   each panel's width allows */
    const uint8_t *block_sums_by_u;             /* nblocks: 1 to form the column sums as u' X_old (u = S_b' w,
                                                   cheap with many panels), 0 to add each new row as stored */
    int32_t nunits;
    const int32_t *unit_block, *unit_col, *unit_width;
    const int64_t *unit_add;                    /* nunits + 1 */
    const int32_t *add_row, *add_col, *add_len;
    const int64_t *add_src;
    int32_t max_rows;                           /* largest m_b */
    int32_t max_vectors;                        /* widest panel, in vectors */
    int64_t max_entries;                        /* most entries of one S_b */
    int32_t panel_major;                        /* 0: X_b row-major (row stride n_b); 1: X_b stored panel
                                                   by panel, each unit's panel a contiguous m_b x width
                                                   row-major array at x_start[b] + unit_col * m_b */
    /* Shifting panels (unit_offset non-NULL; panel_major is then ignored): each unit's panel is an
     * m_b x (width rounded up to whole vectors) row-major array at X + unit_offset[u], plus `gap`
     * values when the call's placement is 0. Each thread's units (the call's bounds) hold one
     * stretch of X with a gap of its own, at least as large as any of its panels: a call reads
     * every panel where the placement says and writes the new one `gap` values lower
     * (placement 0: units in increasing order) or higher (placement 1: decreasing order), onto
     * the places of panels already read, so no panel is copied aside first. The padding lanes
     * of a row are neither read into a result nor written. */
    const int64_t *unit_offset;                 /* nunits, or NULL */
    int64_t gap;
} sk_bprod_plan;

/* One call, split over a pool: thread t does units bounds[t] .. bounds[t+1]-1 with the scratch
 * at scratch + t * scratch_stride (sk_bprod_scratch_bytes each, 64-byte aligned). E may be NULL
 * without additions; w and g are both NULL for no gradient. */
typedef struct {
    const sk_bprod_plan *plan;
    int level;                                  /* SK_ISA_*: the kernels to run */
    int single;                                 /* 1: float, 0: double */
    const void *Av;
    void *X;
    const void *E, *w;
    void *g;
    const int32_t *bounds;
    void *scratch;
    size_t scratch_stride;
    int placement;                              /* shifting panels: where X's values are (0 or 1) */
} sk_bprod_call;

/* The best instruction set this processor runs (SK_ISA_*). */
int sk_cpu_level(void);
/* Scalars per vector of an instruction set. */
int32_t sk_bprod_lanes(int level, int single);
/* The widest panel, in vectors, for a block of `rows` rows: what the registers hold, narrowed so
 * that the packed panel stays in the L1 cache. */
int32_t sk_bprod_max_vectors(int level, int single, int32_t rows);
/* The most rows of a tile (sk_bprod_tile.height: 1, a pair of 2, or up to this many), and the
 * sub-panel width, in vectors, of the kernel for tiles (pairs: 1) of an instruction set; a panel
 * of a multiple of it runs without a narrower remainder. */
int32_t sk_bprod_tile_rows(void);
int32_t sk_bprod_tile_vectors(int level, int pairs);
/* The sets of accumulators (3, 2 or 1) that take a single row's entries in turn in panels of up
 * to `vectors` vectors: as many as the registers hold at that width. A block's rows use one
 * number for all its panels, from the widest its rows allow (not each panel's own width), so
 * that the order of every sum, and so every result, is the same however the block's columns are
 * cut into panels or split between blocks. */
int32_t sk_bprod_chains(int level, int32_t vectors);
/* Scratch bytes one thread needs for a plan. */
size_t sk_bprod_scratch_bytes(const sk_bprod_plan *plan, int level, int single);
void sk_bprod_execute(sk_pool *pool, const sk_bprod_call *call);

/* ---- Dense Cholesky of a block-diagonal matrix, blocks packed (sk_packchol.c) --------------- */

/* A block-diagonal SPD matrix, block b over columns start[b] .. start[b+1]-1 (strictly
 * increasing, start[0] = 0), each block's upper triangle packed by columns (the CSC order of the
 * block-diagonal upper pattern). Factor A = UᵀU in place (U overwrites A), with work holding f²
 * doubles for the largest block f; returns -1, or the first column whose pivot is not positive and
 * finite (A is then partly overwritten). */
int64_t sk_packchol_factor_f64(int32_t nblocks, const int32_t *start, double *A, double *work);
/* x = A⁻¹ b with the factor U from sk_packchol_factor_f64 (x may be b). */
void sk_packchol_solve_f64(int32_t nblocks, const int32_t *start, const double *U, const double *b, double *x);

/* ---- Sparse matrix-vector product (sk_gaxpy.c) ----------------------------------------------- */

/* y += A * x for A (m x n, CSC). */
void sk_gaxpy_f64(int32_t n, const int32_t *Ap, const int32_t *Ai, const double *Ax,
                  const double *x, double *y);
void sk_gaxpy_f32(int32_t n, const int32_t *Ap, const int32_t *Ai, const float *Ax,
                  const float *x, float *y);
/* y += A' * x for A (m x n, CSC): y[j] += sum of A(i,j) x[i] over column j. */
void sk_gatxpy_f64(int32_t n, const int32_t *Ap, const int32_t *Ai, const double *Ax,
                   const double *x, double *y);
void sk_gatxpy_f32(int32_t n, const int32_t *Ap, const int32_t *Ai, const float *Ax,
                   const float *x, float *y);

/* y[first[j] .. first[j]+len_j) += x[j] * A(:,j) for a CSC matrix whose column j holds the
 * contiguous rows first[j] .. first[j]+len_j-1 (len_j = Ap[j+1]-Ap[j]); columns with x[j] == 0
 * are skipped. */
void sk_block_gaxpy_f64(int32_t n, const int32_t *Ap, const int32_t *first, const double *Ax,
                        const double *x, double *y);
void sk_block_gaxpy_f32(int32_t n, const int32_t *Ap, const int32_t *first, const float *Ax,
                        const float *x, float *y);

/* ---- Memory bandwidth probe (sk_bandwidth.c) ------------------------------------------------ */

/* Copies bytes from src to dst, split over the pool's threads (pool may be NULL: one thread). */
void sk_parallel_copy(sk_pool *pool, void *dst, const void *src, size_t bytes);

#ifdef __cplusplus
}
#endif

#endif /* CSPARSEKERNELS_H */
