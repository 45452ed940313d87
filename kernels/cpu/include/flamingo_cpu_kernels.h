/* Hand-written AVX2/FMA CPU kernels for the element-wise work around the
 * matrix products (which go to OpenBLAS). Internal to libflamingo: not
 * exported (the version script keeps only flamingo_*). Every function has a
 * scalar tail, so n need not be a multiple of the vector width. */
#ifndef FLAMINGO_CPU_KERNELS_H
#define FLAMINGO_CPU_KERNELS_H
#include <stddef.h>

/* x[i] = 0.5·x·(1 + erf(x/√2)), the exact GELU (|error| ≲ 2e-7·|x|). */
void fk_gelu(float *x, size_t n);
/* x[i] = x·σ(1.702·x), QuickGELU of the OpenAI CLIP weights. */
void fk_quick_gelu(float *x, size_t n);
/* gate[i] = silu(gate[i])·up[i] (SwiGLU). */
void fk_swiglu(float *gate, const float *up, size_t n);
/* In-place softmax of one row after subtracting its maximum. Entries equal
 * to -INFINITY get exactly 0. If every entry is -INFINITY the row becomes
 * uniform. */
void fk_softmax(float *x, size_t n);
/* y[i] = exp(x[i]) for the tests of the vector exponential. */
void fk_exp(const float *x, float *y, size_t n);
/* Σ x[i], reading with software prefetch 4 KB ahead as the weight kernels do
 * (the benchmarks' read-bandwidth probe: a plain loop relies on the hardware
 * prefetcher alone and reads slower than the kernels do). */
float fk_stream_sum(const float *x, size_t n);

#endif
