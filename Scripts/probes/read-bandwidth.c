/*
 * Read bandwidth from each level of the cache into vector registers, one core: AVX2 loads of a
 * buffer of each size, repeated, summed into four registers so the loads stay; the best of many
 * passes, in doubles per nanosecond (G doubles/s). The block product's kernels load one vector of
 * the packed panel per vector multiply-add, so these are their ceilings in multiply-adds per
 * second when the panel lives in that level (Scripts/bench-read-bandwidth, Docs/BENCHMARKS.md).
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

__attribute__((target("avx2"))) static double doubles_per_ns(const double *x, long n, int passes, double *sink)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    double best = 1e30;
    for (int p = 0; p < passes; p++) {
        const double t0 = now();
        for (int k = 0; k < 20; k++)
            for (long i = 0; i < n; i += 16) {
                a0 = _mm256_add_pd(a0, _mm256_load_pd(x + i));
                a1 = _mm256_add_pd(a1, _mm256_load_pd(x + i + 4));
                a2 = _mm256_add_pd(a2, _mm256_load_pd(x + i + 8));
                a3 = _mm256_add_pd(a3, _mm256_load_pd(x + i + 12));
            }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    double out[4];
    _mm256_storeu_pd(out, _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    *sink += out[0];
    return 20.0 * n / best * 1e-9;
}

int main(void)
{
    if (!__builtin_cpu_supports("avx2")) { fprintf(stderr, "read-bandwidth: needs AVX2\n"); return 1; }
    const long kib[] = { 16, 24, 48, 128, 256, 384, 4096, 65536 };
    double sink = 0;
    printf("buffer_kib,g_doubles_per_s\n");
    for (int s = 0; s < 8; s++) {
        const long bytes = kib[s] << 10, n = bytes / 8;
        double *x = aligned_alloc(64, bytes);
        if (!x) return 1;
        for (long i = 0; i < n; i++) x[i] = 1e-3 * (double)i;
        printf("%ld,%.2f\n", kib[s], doubles_per_ns(x, n, bytes > (1 << 20) ? 5 : 200, &sink));
        free(x);
    }
    return sink == 12345.678 ? 2 : 0; /* keeps the sums */
}
