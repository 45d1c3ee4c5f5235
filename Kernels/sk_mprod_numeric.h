/*
 * Masked product, numeric phase: a template included once per scalar type by
 * sk_mprod_numeric.c with SK_REAL (the type) and SK_NAME(x) (the suffixed name) defined.
 */

/* C(:,j0:j1) by runs: every run is an axpy into its column. The first run that covers its whole
 * column assigns (C = b*A) instead of adding to zeros, saving a pass over C; a column no run has
 * written is zeroed at the end. Then rows are scaled. */
SK_HOT void SK_NAME(sk_mprod_runs)(const sk_run_plan *plan, const SK_REAL *restrict Ax,
                                   const SK_REAL *restrict Bx, const SK_REAL *restrict rowscale,
                                   const SK_REAL *restrict colscale, SK_REAL *restrict Cx,
                                   int32_t j0, int32_t j1, int skip_zero, int64_t *skipped)
{
    const int32_t *Mp = plan->Mp, *Mi = plan->Mi;
    const int64_t *Rp = plan->Rp;
    const int32_t *run_b = plan->run_b, *run_a = plan->run_a;
    const int32_t *run_c = plan->run_c, *run_len = plan->run_len;
    int64_t skips = 0;
    for (int32_t j = j0; j < j1; j++) {
        const int32_t begin = Mp[j], count = Mp[j + 1] - Mp[j];
        int written = 0;
        SK_REAL s = colscale ? colscale[j] : 1;
        for (int64_t r = Rp[j]; r < Rp[j + 1]; r++) {
            const SK_REAL b = s * Bx[run_b[r]];
            const int32_t len = run_len[r];
            if (skip_zero && b == 0) {
                skips += len;
                continue;
            }
            const SK_REAL *restrict a = Ax + run_a[r];
            SK_REAL *restrict c = Cx + run_c[r];
            if (!written) {
                if (run_c[r] == begin && len == count) {
                    for (int32_t t = 0; t < len; t++) c[t] = b * a[t];
                    written = 1;
                    continue;
                }
                for (int32_t p = begin; p < begin + count; p++) Cx[p] = 0;
                written = 1;
            }
            for (int32_t t = 0; t < len; t++) c[t] += b * a[t];
        }
        if (!written) {
            for (int32_t p = begin; p < begin + count; p++) Cx[p] = 0;
        }
        if (rowscale) {
            for (int32_t p = begin; p < begin + count; p++) Cx[p] *= rowscale[Mi[p]];
        }
    }
    if (skipped) *skipped += skips;
}

/* C(:,j0:j1) by a dense accumulator: scatter A*B(:,j) into work, gather at M's rows, clear. */
SK_HOT void SK_NAME(sk_mprod_accumulate)(const sk_accumulator_plan *plan,
                                         const SK_REAL *restrict Ax, const SK_REAL *restrict Bx,
                                         const SK_REAL *restrict rowscale,
                                         const SK_REAL *restrict colscale, SK_REAL *restrict Cx,
                                         int32_t j0, int32_t j1, SK_REAL *restrict work,
                                         int skip_zero, int64_t *skipped)
{
    const int32_t *Ap = plan->Ap, *Ai = plan->Ai, *Bp = plan->Bp, *Bi = plan->Bi;
    const int32_t *Mp = plan->Mp, *Mi = plan->Mi;
    int64_t skips = 0;
    for (int32_t j = j0; j < j1; j++) {
        SK_REAL s = colscale ? colscale[j] : 1;
        for (int32_t pb = Bp[j]; pb < Bp[j + 1]; pb++) {
            const SK_REAL b = s * Bx[pb];
            const int32_t k = Bi[pb];
            if (skip_zero && b == 0) {
                skips += Ap[k + 1] - Ap[k];
                continue;
            }
            for (int32_t pa = Ap[k]; pa < Ap[k + 1]; pa++) work[Ai[pa]] += b * Ax[pa];
        }
        for (int32_t p = Mp[j]; p < Mp[j + 1]; p++) {
            Cx[p] = rowscale ? work[Mi[p]] * rowscale[Mi[p]] : work[Mi[p]];
        }
        for (int32_t pb = Bp[j]; pb < Bp[j + 1]; pb++) {
            const int32_t k = Bi[pb];
            for (int32_t pa = Ap[k]; pa < Ap[k + 1]; pa++) work[Ai[pa]] = 0;
        }
    }
    if (skipped) *skipped += skips;
}
