/*
 * Dense Cholesky factorisation of a block-diagonal symmetric positive definite matrix, block by
 * block, each block's upper triangle packed by columns:
 *
 *     block b spans columns start[b] .. start[b+1]-1 (f = start[b+1] - start[b] of them); its
 *     values start at Σ_{b' < b} f_b'(f_b' + 1)/2, and its local column c holds rows 0 .. c of
 *     the block, c + 1 values, the diagonal last (offset c(c + 1)/2 within the block).
 *
 * This is the storage order of the block-diagonal pattern's upper triangle in CSC (column j's
 * rows start[b] .. j), so the same values serve a sparse view. The factor U (A = UᵀU) overwrites
 * A. Each block is unpacked into a dense square workspace as L = Uᵀ (column-major) and factorised
 * right-looking, so the f³/6 multiply-adds are axpys over contiguous columns with no dependence
 * between them (an up-looking factorisation on the packed columns, tried first, waits on a chain
 * of inner products and divisions: 1.6-1.9x slower on 64 blocks of 70), then packed back.
 * A solve is UᵀU x = b: Uᵀy = b forward (inner products down the packed columns), then U x = y
 * backward (an axpy with each column).
 */
#include "CSparseKernels.h"
#include <math.h>

/* Σ a[k] b[k] for k < n, in four interleaved partial sums added as (s0 + s1) + (s2 + s3), so the
 * result depends on nothing but the values and n. (Eight partial sums measured 15% slower in
 * the solve.) */
static double sk_packchol_dot(const double *restrict a, const double *restrict b, int32_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int32_t k = 0;
    for (; k + 3 < n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; k++) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

int64_t sk_packchol_factor_f64(int32_t nblocks, const int32_t *start, double *A, double *work)
{
    int64_t offset = 0;
    for (int32_t b = 0; b < nblocks; b++) {
        const int32_t f = start[b + 1] - start[b];
        double *restrict block = A + offset;
        /* Unpack into L = Uᵀ, lower triangle, column-major (L(i, j) at L[i + j f]): L(j, i) = A(i, j). */
        double *restrict L = work;
        for (int32_t j = 0; j < f; j++) {
            const double *restrict aj = block + (int64_t)j * (j + 1) / 2;
            for (int32_t i = 0; i <= j; i++) L[j + (int64_t)i * f] = aj[i];
        }
        /* Right-looking: column k is scaled by 1/L(k, k), then every later column j takes
         * L(j:f, j) −= L(j, k) L(j:f, k), an axpy over contiguous values with no dependence
         * between its multiply-adds. */
        for (int32_t k = 0; k < f; k++) {
            double *restrict lk = L + (int64_t)k * f;
            const double d = lk[k];
            if (!(d > 0) || !isfinite(d)) return (int64_t)start[b] + k;
            const double r = sqrt(d);
            lk[k] = r;
            const double inverse = 1 / r;
            for (int32_t i = k + 1; i < f; i++) lk[i] *= inverse;
            for (int32_t j = k + 1; j < f; j++) {
                double *restrict lj = L + (int64_t)j * f;
                const double ljk = lk[j];
                for (int32_t i = j; i < f; i++) lj[i] -= ljk * lk[i];
            }
        }
        /* Pack U(i, j) = L(j, i) back by columns. */
        for (int32_t j = 0; j < f; j++) {
            double *restrict uj = block + (int64_t)j * (j + 1) / 2;
            for (int32_t i = 0; i <= j; i++) uj[i] = L[j + (int64_t)i * f];
        }
        offset += (int64_t)f * (f + 1) / 2;
    }
    return -1;
}

void sk_packchol_solve_f64(int32_t nblocks, const int32_t *start, const double *U, const double *b, double *x)
{
    int64_t offset = 0;
    for (int32_t blk = 0; blk < nblocks; blk++) {
        const int32_t f = start[blk + 1] - start[blk];
        const double *block = U + offset;
        double *y = x + start[blk];
        const double *r = b + start[blk];
        /* Uᵀ y = r: y(j) = (r(j) − U(0:j, j)·y(0:j)) / U(j, j). (x may alias b: y(j) is written
         * after r(j) is read, and only y(0:j) is read back.) */
        for (int32_t j = 0; j < f; j++) {
            const double *uj = block + (int64_t)j * (j + 1) / 2;
            const double rj = r[j];
            y[j] = (rj - sk_packchol_dot(uj, y, j)) / uj[j];
        }
        /* U x = y: x(j) = y(j) / U(j, j), then y(0:j) −= x(j) U(0:j, j). */
        for (int32_t j = f - 1; j >= 0; j--) {
            const double *uj = block + (int64_t)j * (j + 1) / 2;
            const double xj = y[j] / uj[j];
            y[j] = xj;
            for (int32_t i = 0; i < j; i++) y[i] -= xj * uj[i];
        }
        offset += (int64_t)f * (f + 1) / 2;
    }
}
