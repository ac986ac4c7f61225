// How close the F16/F32 prefill tile can get to this CPU's FMA throughput: the 2 x 6 outer-product tile of
// FloatPanelKernels (2 weight loads, 6 broadcast loads, 12 FMAs per k step) against variants that drop
// the weight loads, the broadcasts, or both, all from L1. "12 FMA" is the ceiling (2 FMAs of 8 floats per cycle).
// Build and run:
//   gcc -O2 -mavx2 -mfma -o /tmp/tile-mix tile-mix.c && /tmp/tile-mix
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static float xs[6 * 260] __attribute__((aligned(64)));   // 6 token rows, 260 floats apart (no 4 KB aliasing)
static float ws[256 * 16] __attribute__((aligned(64)));  // 2 columns of 8 rows, 256 k steps (16 KB, in L1)
static float out[8];
#define F(a, v, b) a = _mm256_fmadd_ps(v, b, a)
#define B(t) _mm256_broadcast_ss(xs + 260 * (t) + i)
// Each accumulator starts from its own value: with equal starts and equal operands the compiler proves two chains
// equal and computes one (an earlier version of this file did, and reported 150 GFLOP/s for "12 FMA": 12x one chain).
#define A(j) _mm256_set1_ps(1e-6f * (j + 1))
#define DECL __m256 a0 = A(0), a1 = A(1), a2 = A(2), a3 = A(3), a4 = A(4), a5 = A(5), a6 = A(6), a7 = A(7), a8 = A(8), a9 = A(9), a10 = A(10), a11 = A(11); \
    __m256 c0 = _mm256_set1_ps(1e-3f), c1 = _mm256_set1_ps(2e-3f);
#define FIN { __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)), _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))); \
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11))); _mm256_storeu_ps(out, s); (void)c0; (void)c1; }

__attribute__((noinline)) static void tile(long reps) { DECL
    for (long r = 0; r < reps; r++) { const float *w = ws; for (int i = 0; i < 256; i++, w += 16) {
        __m256 v0 = _mm256_load_ps(w), v1 = _mm256_load_ps(w + 8), b;
        b = B(0); F(a0, v0, b); F(a1, v1, b); b = B(1); F(a2, v0, b); F(a3, v1, b); b = B(2); F(a4, v0, b); F(a5, v1, b);
        b = B(3); F(a6, v0, b); F(a7, v1, b); b = B(4); F(a8, v0, b); F(a9, v1, b); b = B(5); F(a10, v0, b); F(a11, v1, b); } } FIN }
__attribute__((noinline)) static void broadcasts_only(long reps) { DECL
    for (long r = 0; r < reps; r++) for (int i = 0; i < 256; i++) { __m256 b;
        b = B(0); F(a0, c0, b); F(a1, c1, b); b = B(1); F(a2, c0, b); F(a3, c1, b); b = B(2); F(a4, c0, b); F(a5, c1, b);
        b = B(3); F(a6, c0, b); F(a7, c1, b); b = B(4); F(a8, c0, b); F(a9, c1, b); b = B(5); F(a10, c0, b); F(a11, c1, b); } FIN }
__attribute__((noinline)) static void weight_loads_only(long reps) { DECL
    for (long r = 0; r < reps; r++) { const float *w = ws; for (int i = 0; i < 256; i++, w += 16) {
        __m256 v0 = _mm256_load_ps(w), v1 = _mm256_load_ps(w + 8);
        F(a0, v0, c0); F(a1, v1, c0); F(a2, v0, c1); F(a3, v1, c1); F(a4, v0, c0); F(a5, v1, c0);
        F(a6, v0, c1); F(a7, v1, c1); F(a8, v0, c0); F(a9, v1, c0); F(a10, v0, c1); F(a11, v1, c1); } } FIN }
__attribute__((noinline)) static void fma_only(long reps) { DECL
    for (long r = 0; r < reps; r++) for (int i = 0; i < 256; i++) { __asm__ volatile("" : "+x"(c0));
        F(a0, c0, c1); F(a1, c0, c1); F(a2, c0, c1); F(a3, c0, c1); F(a4, c0, c1); F(a5, c0, c1);
        F(a6, c0, c1); F(a7, c0, c1); F(a8, c0, c1); F(a9, c0, c1); F(a10, c0, c1); F(a11, c0, c1); } FIN }

int main(void) {
    for (int i = 0; i < 6 * 260; i++) xs[i] = 1e-3f * (i % 300);
    for (int i = 0; i < 256 * 16; i++) ws[i] = 1e-4f * (i % 1000);
    struct { const char *name; void (*f)(long); } cases[] = {
        { "2x6 tile: 2 loads + 6 broadcasts + 12 FMA", tile }, { "6 broadcasts + 12 FMA", broadcasts_only },
        { "2 loads + 12 FMA", weight_loads_only }, { "12 FMA", fma_only } };
    const long reps = 200000;
    for (int c = 0; c < 4; c++) {
        double best = 0;
        for (int k = 0; k < 3; k++) { double t0 = now(); cases[c].f(reps); double g = reps * 256.0 * 12 * 16 / (now() - t0) / 1e9; if (g > best) best = g; }
        printf("%-44s %6.1f GFLOP/s (1 thread, best of 3)\n", cases[c].name, best);
    }
    return out[0] == 12345.0f;
}
