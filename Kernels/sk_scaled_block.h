/*
 * In-place block-diagonal product in column-scaled form: a template included once per scalar
 * type by sk_scaled_block.c with SK_REAL (the type) and SK_NAME(x) (the suffixed name) defined.
 * The operation is described with sk_scaled_block_plan in CSparseKernels.h.
 */

/* g(rows of block) += w_j * Y(:,j); w_j = 0. */
static inline void SK_NAME(sk_fold_column)(const SK_REAL *restrict y, int32_t m, SK_REAL *restrict g,
                                           SK_REAL *restrict w)
{
    const SK_REAL wj = *w;
    if (wj == 0) return;
    for (int32_t i = 0; i < m; i++) g[i] += wj * y[i];
    *w = 0;
}

/* y += c[0] a[0] + ... + c[nt-1] a[nt-1] (1 <= nt <= 3) in one pass; with g, the old y is first
 * folded into it: g += wj * y_old. */
static inline __attribute__((always_inline)) void SK_NAME(sk_add_terms)(SK_REAL *restrict y, int32_t m, const SK_REAL *restrict const *a, const SK_REAL *c,
                                         int32_t nt, SK_REAL *restrict g, SK_REAL wj)
{
    const SK_REAL *restrict a0 = a[0], *restrict a1 = a[1], *restrict a2 = a[2];
    const SK_REAL c0 = c[0], c1 = c[1], c2 = c[2];
    if (g != NULL) {
        switch (nt) {
        case 1: for (int32_t i = 0; i < m; i++) { const SK_REAL o = y[i]; g[i] += wj * o; y[i] = o + c0 * a0[i]; } break;
        case 2: for (int32_t i = 0; i < m; i++) { const SK_REAL o = y[i]; g[i] += wj * o; y[i] = o + c0 * a0[i] + c1 * a1[i]; } break;
        default:
            for (int32_t i = 0; i < m; i++) { const SK_REAL o = y[i]; g[i] += wj * o; y[i] = o + c0 * a0[i] + c1 * a1[i] + c2 * a2[i]; }
        }
    } else {
        switch (nt) {
        case 1: for (int32_t i = 0; i < m; i++) y[i] += c0 * a0[i]; break;
        case 2: for (int32_t i = 0; i < m; i++) y[i] = y[i] + c0 * a0[i] + c1 * a1[i]; break;
        default: for (int32_t i = 0; i < m; i++) y[i] = y[i] + c0 * a0[i] + c1 * a1[i] + c2 * a2[i];
        }
    }
}

/* Two or four target columns with the same number of terms nt (1 to 3) and deferred weights
 * not zero, in one pass: what sk_add_terms does to each in turn, to the bit (g += w[0] y_old(0),
 * then w[1] y_old(1), ...), with one load and one store of g for all of them instead of one
 * each — g's traffic is as large as a column's, and the store port is what these loops wait on
 * (Docs/BENCHMARKS.md). */
#define SK_TERMS_1(o, q) ((o) + q##c0 * q##a0[i])
#define SK_TERMS_2(o, q) ((o) + q##c0 * q##a0[i] + q##c1 * q##a1[i])
#define SK_TERMS_3(o, q) ((o) + q##c0 * q##a0[i] + q##c1 * q##a1[i] + q##c2 * q##a2[i])
#define SK_GROUP_TERMS(q, k)                                                                     \
    SK_REAL *restrict q##y = y[k];                                                               \
    const SK_REAL *restrict q##a0 = a[k][0], *restrict q##a1 = a[k][1], *restrict q##a2 = a[k][2]; \
    const SK_REAL q##c0 = c[k][0], q##c1 = c[k][1], q##c2 = c[k][2], q##w = w[k];                 \
    (void)q##a1; (void)q##a2; (void)q##c1; (void)q##c2;
#define SK_GROUP2_LOOP(N)                                                                        \
    for (int32_t i = 0; i < m; i++) {                                                            \
        const SK_REAL o1 = p1y[i], o2 = p2y[i];                                                  \
        const SK_REAL t = g[i] + p1w * o1;                                                       \
        g[i] = t + p2w * o2;                                                                     \
        p1y[i] = SK_TERMS_##N(o1, p1);                                                           \
        p2y[i] = SK_TERMS_##N(o2, p2);                                                           \
    }
#define SK_GROUP4_LOOP(N)                                                                        \
    for (int32_t i = 0; i < m; i++) {                                                            \
        const SK_REAL o1 = p1y[i], o2 = p2y[i], o3 = p3y[i], o4 = p4y[i];                        \
        SK_REAL t = g[i] + p1w * o1;                                                             \
        t = t + p2w * o2;                                                                        \
        t = t + p3w * o3;                                                                        \
        g[i] = t + p4w * o4;                                                                     \
        p1y[i] = SK_TERMS_##N(o1, p1);                                                           \
        p2y[i] = SK_TERMS_##N(o2, p2);                                                           \
        p3y[i] = SK_TERMS_##N(o3, p3);                                                           \
        p4y[i] = SK_TERMS_##N(o4, p4);                                                           \
    }
static inline __attribute__((always_inline)) void SK_NAME(sk_add_terms_group)(
    SK_REAL *restrict const *y, const SK_REAL *restrict const (*a)[3], const SK_REAL (*c)[3],
    const SK_REAL *w, int32_t count, int32_t nt, int32_t m, SK_REAL *restrict g)
{
    SK_GROUP_TERMS(p1, 0)
    SK_GROUP_TERMS(p2, 1)
    if (count == 2) {
        switch (nt) {
        case 1: SK_GROUP2_LOOP(1) break;
        case 2: SK_GROUP2_LOOP(2) break;
        default: SK_GROUP2_LOOP(3) break;
        }
        return;
    }
    SK_GROUP_TERMS(p3, 2)
    SK_GROUP_TERMS(p4, 3)
    switch (nt) {
    case 1: SK_GROUP4_LOOP(1) break;
    case 2: SK_GROUP4_LOOP(2) break;
    default: SK_GROUP4_LOOP(3) break;
    }
}
#undef SK_TERMS_1
#undef SK_TERMS_2
#undef SK_TERMS_3
#undef SK_GROUP_TERMS
#undef SK_GROUP2_LOOP
#undef SK_GROUP4_LOOP

/* The sources: their columns j in increasing order, stored as -1 - j once copied aside. */
#define SK_SOURCE_COLUMN(x) ((x) < 0 ? -1 - (x) : (x))

/* The index of active column j among the ns sources. */
static inline int32_t SK_NAME(sk_source_index)(const int32_t *restrict sources, int32_t ns, int32_t j)
{
    int32_t lo = 0, hi = ns - 1;
    while (lo < hi) {
        const int32_t mid = lo + (hi - lo) / 2;
        if (SK_SOURCE_COLUMN(sources[mid]) < j) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Copies source t's values (column j, y) aside to its place in scratch, once. */
static inline void SK_NAME(sk_keep_source)(int32_t *restrict sources, int32_t t, int32_t j,
                                           const SK_REAL *restrict y, int32_t m, SK_REAL *restrict scratch,
                                           int64_t ms)
{
    if (sources[t] < 0) return;
    SK_REAL *restrict copy = scratch + (int64_t)t * ms;
    for (int32_t i = 0; i < m; i++) copy[i] = y[i];
    sources[t] = -1 - j;
}

/* Blocks [b0, b1): returns the multiply-adds of the pushes (the off-diagonal terms done) and
 * adds the number of columns whose values were written to *changed. */
SK_HOT int64_t SK_NAME(sk_scaled_block_update)(const sk_scaled_block_plan *plan, const SK_REAL *restrict Bv,
                                               const uint8_t *restrict active, SK_REAL *restrict Y,
                                               SK_REAL *restrict s, SK_REAL *restrict w, SK_REAL *restrict g,
                                               SK_REAL lo, SK_REAL hi, int32_t b0, int32_t b1,
                                               SK_REAL *restrict scratch, SK_REAL *restrict source_scale,
                                               int32_t *restrict sources, uint8_t *restrict written,
                                               int32_t *restrict heads, int32_t *restrict links,
                                               int32_t *restrict link_source, SK_REAL *restrict link_coef,
                                               int64_t *changed)
{
    const int32_t *col_start = plan->col_start, *row_start = plan->row_start, *rows = plan->rows;
    const int64_t *value_start = plan->value_start, *edge_start = plan->edge_start;
    const int32_t *edge_col = plan->edge_col, *edge_val = plan->edge_val, *diag_val = plan->diag_val;
    int64_t done = 0, columns = 0;
    for (int32_t b = b0; b < b1; b++) {
        const int32_t j0 = col_start[b], j1 = col_start[b + 1], m = rows[b];
        /* Columns m values long, ms apart (whole cache lines where the plan pads them). */
        const int64_t ms = plan->column_stride != NULL ? plan->column_stride[b] : m;
        SK_REAL *restrict Yb = Y + value_start[b];
        SK_REAL *restrict gb = g + row_start[b];
        /* 1. The active columns (the terms' sources) and their old scales. A source's old
         * values are copied aside only if its column changes in this update (renormalised in 2,
         * or a target in 4): the others are read where they are. A copied source is stored as
         * -1 - j. */
        int32_t ns = 0;
        for (int32_t j = j0; j < j1; j++) {
            if (!active[j]) continue;
            source_scale[ns] = s[j];
            sources[ns++] = j;
        }
        /* 2. The diagonal goes into the scales; a scale leaving [lo, hi] (or zero, or not finite)
         * is moved into its column. */
        for (int32_t j = j0; j < j1; j++) {
            const SK_REAL d = diag_val[j] >= 0 ? Bv[diag_val[j]] : 0;
            const SK_REAL sj = s[j] * d;
            const SK_REAL mag = sj < 0 ? -sj : sj;
            if (mag >= lo && mag <= hi) {
                s[j] = sj;
                continue;
            }
            SK_REAL *restrict y = Yb + (int64_t)(j - j0) * ms;
            if (active[j])
                SK_NAME(sk_keep_source)(sources, SK_NAME(sk_source_index)(sources, ns, j), j, y, m, scratch, ms);
            SK_NAME(sk_fold_column)(y, m, gb, w + j);
            for (int32_t i = 0; i < m; i++) y[i] *= sj;
            s[j] = 1;
            written[j - j0] = 1;
        }
        /* 3. The active columns' off-diagonal terms, each divided by its target's new scale,
         * listed by target column (heads/links: one list per column, -1 ends it) ... */
        int32_t np = 0;
        for (int32_t t = 0; t < ns; t++) {
            const int32_t r = SK_SOURCE_COLUMN(sources[t]);
            const int64_t e1 = edge_start[r + 1];
            for (int64_t e = edge_start[r]; e < e1; e++) {
                const SK_REAL bval = Bv[edge_val[e]];
                if (bval == 0) continue;
                const int32_t j = edge_col[e] - j0;
                link_source[np] = t;
                link_coef[np] = bval * source_scale[t] / s[j0 + j];
                links[np] = heads[j];
                heads[j] = np++;
            }
        }
        /* The sources that are targets keep their old values aside before any target changes;
         * from here on every source is read from one place, its copy or its column. */
        for (int32_t t = 0; t < ns; t++) {
            const int32_t r = sources[t];
            if (r >= 0 && heads[r - j0] >= 0)
                SK_NAME(sk_keep_source)(sources, t, r, Yb + (int64_t)(r - j0) * ms, m, scratch, ms);
        }
#define SK_SOURCE(t) (sources[t] < 0 ? scratch + (int64_t)(t) * ms : Yb + (int64_t)(sources[t] - j0) * ms)
        /* ... then each target column in one pass: its deferred product folded with the old
         * values, and up to three terms added (more in further passes, rarely). The targets are
         * taken source by source - the edges in reverse, each target where it first appears,
         * which is where the first term of its list comes from - so that consecutive targets read
         * the same source, which stays in the L1 cache between them. A target with a deferred
         * weight and at most three terms waits for three more with as many terms, and the four
         * go in one pass (sk_add_terms_group); the rest go at once, and those still waiting at
         * the end two and one at a time. The order is fixed by the plan and the active columns,
         * so the sums are the same for any number of threads. */
        int32_t waiting[3] = { 0, 0, 0 };
        SK_REAL *restrict wy[3][4];
        const SK_REAL *restrict wa[3][4][3];
        SK_REAL wc[3][4][3], ww[3][4];
        for (int32_t t = ns - 1; t >= 0; t--) {
            const int32_t r = SK_SOURCE_COLUMN(sources[t]);
            for (int64_t e = edge_start[r + 1] - 1; e >= edge_start[r]; e--) {
                const int32_t j = edge_col[e] - j0;
                int32_t p = heads[j];
                if (p < 0) continue;
                heads[j] = -1;
                written[j] = 1;
                SK_REAL *restrict y = Yb + (int64_t)j * ms;
                const SK_REAL *restrict a[3] = { NULL, NULL, NULL };
                SK_REAL c[3] = { 0, 0, 0 };
                int32_t nt = 0;
                for (; p >= 0 && nt < 3; p = links[p], nt++) {
                    a[nt] = SK_SOURCE(link_source[p]);
                    c[nt] = link_coef[p];
                }
                done += (int64_t)nt * m;
                SK_REAL *restrict wj = w + j0 + j;
                if (p < 0 && *wj != 0) {
                    const int32_t k = nt - 1, q = waiting[k];
                    wy[k][q] = y;
                    ww[k][q] = *wj;
                    for (int32_t x = 0; x < 3; x++) { wa[k][q][x] = a[x]; wc[k][q][x] = c[x]; }
                    *wj = 0;
                    if (q < 3) { waiting[k] = q + 1; continue; }
                    SK_NAME(sk_add_terms_group)(wy[k], (const SK_REAL *restrict const (*)[3])wa[k],
                                                (const SK_REAL (*)[3])wc[k], ww[k], 4, nt, m, gb);
                    waiting[k] = 0;
                    continue;
                }
                SK_NAME(sk_add_terms)(y, m, a, c, nt, *wj != 0 ? gb : NULL, *wj);
                *wj = 0;
                for (; p >= 0; p = links[p]) {
                    const SK_REAL *restrict more = SK_SOURCE(link_source[p]);
                    const SK_REAL coef = link_coef[p];
                    for (int32_t i = 0; i < m; i++) y[i] += coef * more[i];
                    done += m;
                }
            }
        }
        for (int32_t k = 0; k < 3; k++) {
            int32_t q = 0;
            if (waiting[k] >= 2) {
                SK_NAME(sk_add_terms_group)(wy[k], (const SK_REAL *restrict const (*)[3])wa[k],
                                            (const SK_REAL (*)[3])wc[k], ww[k], 2, k + 1, m, gb);
                q = 2;
            }
            if (q < waiting[k]) SK_NAME(sk_add_terms)(wy[k][q], m, wa[k][q], wc[k][q], k + 1, gb, ww[k][q]);
        }
#undef SK_SOURCE
        for (int32_t j = 0; j < j1 - j0; j++) {
            columns += written[j];
            written[j] = 0;
        }
    }
    *changed += columns;
    return done;
}
