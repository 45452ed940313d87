/* AVX2/FMA element-wise kernels (see include/flamingo_cpu_kernels.h).
 * exp is simd_exp.h's; erfc uses the Numerical Recipes Chebyshev fit
 * (relative error < 1.2e-7), so GELU keeps full relative accuracy for
 * negative inputs where 1 + erf cancels. */
#include "flamingo_cpu_kernels.h"
#include <immintrin.h>
#include <math.h>
#include "simd_exp.h"

/* erfc(z) for z >= 0. */
static inline __m256 erfc256(__m256 z) {
    const __m256 one = _mm256_set1_ps(1.0f);
    __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.5f), z, one));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    __m256 arg = _mm256_sub_ps(p, _mm256_mul_ps(z, z));
    return _mm256_mul_ps(t, fk_exp256(arg));
}

static inline float gelu1(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

void fk_gelu(float *x, size_t n) {
    const __m256 s = _mm256_set1_ps(0.70710678118654752f), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 c = erfc256(_mm256_andnot_ps(sign, _mm256_mul_ps(v, s)));   /* erfc(|x|/√2) */
        /* x >= 0: x·(1 − erfc/2); x < 0: x·erfc/2 */
        __m256 pos = _mm256_mul_ps(v, _mm256_fnmadd_ps(half, c, one));
        __m256 neg = _mm256_mul_ps(v, _mm256_mul_ps(half, c));
        _mm256_storeu_ps(x + i, _mm256_blendv_ps(pos, neg, v));
    }
    for (; i < n; i++) x[i] = gelu1(x[i]);
}

void fk_quick_gelu(float *x, size_t n) {
    const __m256 k = _mm256_set1_ps(-1.702f), one = _mm256_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(x + i, _mm256_div_ps(v, _mm256_add_ps(one, fk_exp256(_mm256_mul_ps(k, v)))));
    }
    for (; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void fk_swiglu(float *gate, const float *up, size_t n) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, fk_exp256(_mm256_xor_ps(g, sign))));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

void fk_softmax(float *x, size_t n) {
    if (n == 0) return;
    size_t i = 0;
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float m = hmax(vm);
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    if (m == -INFINITY) {
        for (i = 0; i < n; i++) x[i] = 1.0f / (float)n;
        return;
    }
    __m256 vs = _mm256_setzero_ps(), mm = _mm256_set1_ps(m);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = fk_exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), mm));
        _mm256_storeu_ps(x + i, e);
        vs = _mm256_add_ps(vs, e);
    }
    float s = hsum(vs);
    for (; i < n; i++) {
        float e = x[i] == -INFINITY ? 0.0f : expf(x[i] - m);
        x[i] = e;
        s += e;
    }
    __m256 inv = _mm256_set1_ps(1.0f / s);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= 1.0f / s;
}

void fk_exp(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, fk_exp256(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) y[i] = expf(x[i]);
}

float fk_stream_sum(const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(x + i) + 4096, _MM_HINT_T0);
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(a0, a1));
    float s = out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
    for (; i < n; i++) s += x[i];
    return s;
}
