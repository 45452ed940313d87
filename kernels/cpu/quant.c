/* 16-bit and affine-integer weight kernels (see include/flamingo_quant_kernels.h).
 *
 * Decode reads every weight once per token, so these run at the memory
 * floor only if the per-weight work stays a few instructions: 16-bit weights
 * are widened in registers (F16C, or a shift for bf16); integer weights meet
 * an int8 copy of the activation in maddubs/madd (u8 × s8 → i16 pairs → i32),
 * one float FMA per 32 weights with scale·d, and the group bias is applied
 * once per group to the exact float sum of x (llama.cpp's ggml-cpu does the
 * same for its Q4_1/Q8_0 blocks). */
#include "flamingo_quant_kernels.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

/* How far ahead of a row stream the kernels ask for lines (bytes). */
#ifndef FK_PREFETCH
#define FK_PREFETCH 4096
#endif

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float load_sb(const void *p, int type, long i) {
    switch (type) {
    case FK_SB_F16: return _cvtsh_ss(((const uint16_t *)p)[i]);
    case FK_SB_BF16: return bf16_to_f32(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Eight 16-bit weights widened to f32. */
static inline __m256 load8_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline __m256 load8_bf16(const uint16_t *p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

void fk_quantize_x(const float *x, fk_qx *a) {
    const long bs = a->block, run = bs < 64 ? 32 : 64;
    for (long b = 0; b < a->cols / bs; b++) {
        const float *xb = x + b * bs;
        float amax = 0, sum = 0;
        for (long i = 0; i < bs; i++) {
            float v = fabsf(xb[i]);
            amax = v > amax ? v : amax;
            sum += xb[i];
        }
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int8_t *q = a->q + b * bs;
        for (long i = 0; i < bs; i++) {
            long at = i;
            if (a->format == FK_W_Q4) { /* within each run: even elements, then odd */
                long r = i % run;
                at = i - r + (r & 1) * (run / 2) + r / 2;
            }
            q[at] = (int8_t)lrintf(xb[i] * id);
        }
        a->d[b] = d;
        a->sum[b] = sum;
    }
}

static inline __attribute__((always_inline)) __m256 load8_16(const uint16_t *p, const int bf16) {
    return bf16 ? load8_bf16(p) : load8_f16(p);
}

/* One row of a 16-bit weight against f32 x; inlined once per type. */
static inline __attribute__((always_inline)) float dot_16(const uint16_t *w, const float *x, long n, const int bf16) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    long j = 0;
    for (; j + 32 <= n; j += 32) {
        _mm_prefetch((const char *)(w + j) + FK_PREFETCH, _MM_HINT_T0);
        acc0 = _mm256_fmadd_ps(load8_16(w + j, bf16), _mm256_loadu_ps(x + j), acc0);
        acc1 = _mm256_fmadd_ps(load8_16(w + j + 8, bf16), _mm256_loadu_ps(x + j + 8), acc1);
        acc2 = _mm256_fmadd_ps(load8_16(w + j + 16, bf16), _mm256_loadu_ps(x + j + 16), acc2);
        acc3 = _mm256_fmadd_ps(load8_16(w + j + 24, bf16), _mm256_loadu_ps(x + j + 24), acc3);
    }
    for (; j + 8 <= n; j += 8) acc0 = _mm256_fmadd_ps(load8_16(w + j, bf16), _mm256_loadu_ps(x + j), acc0);
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; j < n; j++) s += (bf16 ? bf16_to_f32(w[j]) : _cvtsh_ss(w[j])) * x[j];
    return s;
}

static float dot_f16(const uint16_t *w, const float *x, long n) { return dot_16(w, x, n, 0); }
static float dot_bf16(const uint16_t *w, const float *x, long n) { return dot_16(w, x, n, 1); }

/* Integer products of one group's codes with the activation's int8 values,
 * as 8 int32 partial sums. 4 bits: 32 bytes hold 64 codes, low nibbles the
 * even inputs, high the odd (matching fk_quantize_x's order); pair sums of
 * maddubs stay below 2·15·127 and two of them below 2^15. */
static inline __m256i group_q4(const uint8_t *w, const int8_t *xq, long group) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    if (group == 32) {
        const __m128i m4h = _mm_set1_epi8(0x0F);
        __m128i bytes = _mm_loadu_si128((const __m128i *)w);
        __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), m4h), _mm_and_si128(bytes, m4h));
        return _mm256_madd_epi16(_mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)xq)), ones);
    }
    for (long j = 0; j < group; j += 64) {
        __m256i bytes = _mm256_loadu_si256((const __m256i *)(w + j / 2));
        __m256i lo = _mm256_and_si256(bytes, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m4);
        __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(xq + j))),
                                     _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + j + 32))));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
    }
    return acc;
}

/* 8 bits: (q − 128)·xq through the sign trick (maddubs needs an unsigned
 * first operand; |q − 128| ≤ 128 keeps pair sums below 2^15). */
static inline __m256i group_q8(const uint8_t *w, const int8_t *xq, long group) {
    const __m256i ones = _mm256_set1_epi16(1), bias = _mm256_set1_epi8((char)0x80);
    __m256i acc = _mm256_setzero_si256();
    for (long j = 0; j < group; j += 32) {
        __m256i ws = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + j)), bias);
        __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xq + j)), ws);
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(ws), x), ones));
    }
    return acc;
}

/* Eight consecutive scales or biases as f32. */
static inline __m256 load8_sb(const void *p, int type, long i) {
    switch (type) {
    case FK_SB_F16: return load8_f16((const uint16_t *)p + i);
    case FK_SB_BF16: return load8_bf16((const uint16_t *)p + i);
    default: return _mm256_loadu_ps((const float *)p + i);
    }
}

/* One row: y = Σ_groups s·d·(q·xq) + (bias + offset·s)·Σx. Rows are done one
 * at a time because two rows read side by side are two memory streams, and
 * on the machines measured (docs/benchmarks.md) the hardware prefetcher then
 * delivers a third of the bandwidth of one stream. Eight groups at a time:
 * their scales times the activation scales are one vector product (each
 * group takes its lane by a permute) and their biases one FMA. Inlined into
 * one copy per (bits, group, scale type) below, so the loop carries no
 * format branches. */
static inline __attribute__((always_inline)) float dot_affine(const fk_weight *w, const fk_qx *a, long r, const int q4,
                                                              const long g, const int sb) {
    const long cols = w->cols, ng = cols / g;
    const long group_bytes = q4 ? g / 2 : g;
    const uint8_t *w0 = (const uint8_t *)w->w + r * ng * group_bytes;
    /* The 8-bit products use q − 128, so their bias gains 128·s. */
    const float off = q4 ? 0.0f : 128.0f;
    __m256 acc = _mm256_setzero_ps(), bacc = _mm256_setzero_ps();
    long k = 0;
    for (; k + 8 <= ng; k += 8) {
        const __m256 s = load8_sb(w->scales, sb, r * ng + k);
        const __m256 sd = _mm256_mul_ps(s, _mm256_loadu_ps(a->d + k));
        /* Measured: the hardware prefetcher alone leaves a q4 row stream at
         * ~2/3 of the read bandwidth; lines 4 KB ahead (past the next row
         * for typical widths) keep it near the limit. */
        for (long o = 0; o < 8 * group_bytes; o += 64)
            _mm_prefetch((const char *)(w0 + k * group_bytes + o + FK_PREFETCH), _MM_HINT_T0);
        for (int j = 0; j < 8; j++) {
            const int8_t *xq = a->q + (k + j) * g;
            __m256i i = q4 ? group_q4(w0 + (k + j) * group_bytes, xq, g) : group_q8(w0 + (k + j) * group_bytes, xq, g);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_permutevar8x32_ps(sd, _mm256_set1_epi32(j)), acc);
        }
        const __m256 c = _mm256_fmadd_ps(_mm256_set1_ps(off), s, load8_sb(w->biases, sb, r * ng + k));
        bacc = _mm256_fmadd_ps(c, _mm256_loadu_ps(a->sum + k), bacc);
    }
    float b = 0;
    for (; k < ng; k++) {
        const int8_t *xq = a->q + k * g;
        __m256i i = q4 ? group_q4(w0 + k * group_bytes, xq, g) : group_q8(w0 + k * group_bytes, xq, g);
        const float s = load_sb(w->scales, sb, r * ng + k), c = load_sb(w->biases, sb, r * ng + k);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(s * a->d[k]), acc);
        b += (c + off * s) * a->sum[k];
    }
    return hsum256(_mm256_add_ps(acc, bacc)) + b;
}

static inline __attribute__((always_inline)) void rows_affine(const fk_weight *w, const fk_qx *a, float *y, long r0,
                                                              long r1, const int q4, const long g, const int sb) {
    for (long r = r0; r < r1; r++) y[r - r0] = dot_affine(w, a, r, q4, g, sb);
}

#define FK_ROWS(Q4, G, SB) static void rows_##Q4##_##G##_##SB(const fk_weight *w, const fk_qx *a, float *y, long r0, long r1) \
    { rows_affine(w, a, y, r0, r1, Q4, G, SB); }
#define FK_ROWS_G(Q4, SB) FK_ROWS(Q4, 32, SB) FK_ROWS(Q4, 64, SB) FK_ROWS(Q4, 128, SB)
FK_ROWS_G(0, 0) FK_ROWS_G(0, 1) FK_ROWS_G(0, 2) FK_ROWS_G(1, 0) FK_ROWS_G(1, 1) FK_ROWS_G(1, 2)

typedef void (*rows_fn)(const fk_weight *, const fk_qx *, float *, long, long);
#define FK_ROW_TABLE(Q4, SB) {rows_##Q4##_32_##SB, rows_##Q4##_64_##SB, rows_##Q4##_128_##SB}
static const rows_fn affine_rows[2][3][3] = {  /* [q4][sb_type][group 32/64/128] */
    {FK_ROW_TABLE(0, 0), FK_ROW_TABLE(0, 1), FK_ROW_TABLE(0, 2)},
    {FK_ROW_TABLE(1, 0), FK_ROW_TABLE(1, 1), FK_ROW_TABLE(1, 2)},
};

void fk_gemv_rows(const fk_weight *w, const float *x, const fk_qx *a, float *y, long r0, long r1) {
    if (w->format == FK_W_F16 || w->format == FK_W_BF16) {
        float (*dot)(const uint16_t *, const float *, long) = w->format == FK_W_BF16 ? dot_bf16 : dot_f16;
        for (long r = r0; r < r1; r++) y[r - r0] = dot((const uint16_t *)w->w + r * w->cols, x, w->cols);
        return;
    }
    const int gi = w->group == 32 ? 0 : w->group == 64 ? 1 : 2;
    affine_rows[w->format == FK_W_Q4][w->sb_type][gi](w, a, y, r0, r1);
}

void fk_dequant_rows(const fk_weight *w, float *out, long r0, long r1) {
    const long cols = w->cols;
    for (long r = r0; r < r1; r++) {
        float *o = out + (r - r0) * cols;
        if (w->format == FK_W_F16 || w->format == FK_W_BF16) {
            const uint16_t *src = (const uint16_t *)w->w + r * cols;
            const int bf = w->format == FK_W_BF16;
            long j = 0;
            for (; j + 8 <= cols; j += 8) _mm256_storeu_ps(o + j, bf ? load8_bf16(src + j) : load8_f16(src + j));
            for (; j < cols; j++) o[j] = bf ? bf16_to_f32(src[j]) : _cvtsh_ss(src[j]);
            continue;
        }
        const long g = w->group, ng = cols / g;
        const int q4 = w->format == FK_W_Q4;
        const uint8_t *wr = (const uint8_t *)w->w + r * (q4 ? cols / 2 : cols);
        for (long k = 0; k < ng; k++) {
            const __m256 s = _mm256_set1_ps(load_sb(w->scales, w->sb_type, r * ng + k));
            const __m256 b = _mm256_set1_ps(load_sb(w->biases, w->sb_type, r * ng + k));
            for (long j = k * g; j < (k + 1) * g; j += 16) {
                __m128i q16;  /* 16 consecutive elements as bytes */
                if (q4) {
                    __m128i bytes = _mm_loadl_epi64((const __m128i *)(wr + j / 2));
                    const __m128i m4 = _mm_set1_epi8(0x0F);
                    q16 = _mm_unpacklo_epi8(_mm_and_si128(bytes, m4), _mm_and_si128(_mm_srli_epi16(bytes, 4), m4));
                } else {
                    q16 = _mm_loadu_si128((const __m128i *)(wr + j));
                }
                __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q16));
                __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(q16, 8)));
                _mm256_storeu_ps(o + j, _mm256_fmadd_ps(s, lo, b));
                _mm256_storeu_ps(o + j + 8, _mm256_fmadd_ps(s, hi, b));
            }
        }
    }
}
