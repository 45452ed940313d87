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
    for (long b = 0; b < a->cols / 32; b++) {
        const float *xb = x + b * 32;
        float amax = 0, sum = 0;
        for (int i = 0; i < 32; i++) {
            float v = fabsf(xb[i]);
            amax = v > amax ? v : amax;
            sum += xb[i];
        }
        float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
        int8_t *q = a->q + b * 32;
        for (int i = 0; i < 32; i++) {
            /* Q4 order: even elements at 0..15, odd at 16..31. */
            int at = a->format == FK_W_Q4 ? (i & 1) * 16 + i / 2 : i;
            q[at] = (int8_t)lrintf(xb[i] * id);
        }
        a->d[b] = d;
        a->sum[b] = sum;
    }
}

static float dot_f16(const uint16_t *w, const float *x, long n, int bf16) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    long j = 0;
    if (bf16) {
        for (; j + 32 <= n; j += 32) {
            acc0 = _mm256_fmadd_ps(load8_bf16(w + j), _mm256_loadu_ps(x + j), acc0);
            acc1 = _mm256_fmadd_ps(load8_bf16(w + j + 8), _mm256_loadu_ps(x + j + 8), acc1);
            acc2 = _mm256_fmadd_ps(load8_bf16(w + j + 16), _mm256_loadu_ps(x + j + 16), acc2);
            acc3 = _mm256_fmadd_ps(load8_bf16(w + j + 24), _mm256_loadu_ps(x + j + 24), acc3);
        }
        for (; j + 8 <= n; j += 8) acc0 = _mm256_fmadd_ps(load8_bf16(w + j), _mm256_loadu_ps(x + j), acc0);
    } else {
        for (; j + 32 <= n; j += 32) {
            acc0 = _mm256_fmadd_ps(load8_f16(w + j), _mm256_loadu_ps(x + j), acc0);
            acc1 = _mm256_fmadd_ps(load8_f16(w + j + 8), _mm256_loadu_ps(x + j + 8), acc1);
            acc2 = _mm256_fmadd_ps(load8_f16(w + j + 16), _mm256_loadu_ps(x + j + 16), acc2);
            acc3 = _mm256_fmadd_ps(load8_f16(w + j + 24), _mm256_loadu_ps(x + j + 24), acc3);
        }
        for (; j + 8 <= n; j += 8) acc0 = _mm256_fmadd_ps(load8_f16(w + j), _mm256_loadu_ps(x + j), acc0);
    }
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; j < n; j++) s += (bf16 ? bf16_to_f32(w[j]) : _cvtsh_ss(w[j])) * x[j];
    return s;
}

/* Σ over 32-blocks of the int32 products q·xq of one block, as 8 partial sums. */
static inline __m256i block_q4(const uint8_t *wb, const int8_t *xq) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    __m128i bytes = _mm_loadu_si128((const __m128i *)wb);
    __m128i lo = _mm_and_si128(bytes, m4), hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), m4);
    __m256i q = _mm256_set_m128i(hi, lo);
    __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)xq));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* The same for 8-bit q: (q − 128)·xq through the sign trick (maddubs needs
 * an unsigned first operand; |q − 128| ≤ 128 keeps pairs below 2^15). */
static inline __m256i block_q8(const uint8_t *wb, const int8_t *xq) {
    __m256i ws = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)wb), _mm256_set1_epi8((char)0x80));
    __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xq), ws);
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(ws), x);
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static float dot_affine(const fk_weight *w, const fk_qx *a, long r) {
    const long cols = w->cols, g = w->group, ng = cols / g, bpg = g / 32;
    const int q4 = w->format == FK_W_Q4;
    const long row_bytes = q4 ? cols / 2 : cols, block_bytes = q4 ? 16 : 32;
    const uint8_t *wr = (const uint8_t *)w->w + r * row_bytes;
    __m256 acc = _mm256_setzero_ps();
    float bias_acc = 0;
    for (long k = 0; k < ng; k++) {
        const float s = load_sb(w->scales, w->sb_type, r * ng + k), bias = load_sb(w->biases, w->sb_type, r * ng + k);
        float xs = 0;
        for (long b = k * bpg; b < (k + 1) * bpg; b++) {
            __m256i i32 = q4 ? block_q4(wr + b * block_bytes, a->q + b * 32) : block_q8(wr + b * block_bytes, a->q + b * 32);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i32), _mm256_set1_ps(s * a->d[b]), acc);
            xs += a->sum[b];
        }
        /* value = s·q + bias; the 8-bit dot used q − 128, so its bias gains 128·s. */
        bias_acc += (q4 ? bias : bias + 128.0f * s) * xs;
    }
    return hsum256(acc) + bias_acc;
}

void fk_gemv_rows(const fk_weight *w, const float *x, const fk_qx *a, float *y, long r0, long r1) {
    for (long r = r0; r < r1; r++) {
        switch (w->format) {
        case FK_W_F16:
        case FK_W_BF16:
            y[r - r0] = dot_f16((const uint16_t *)w->w + r * w->cols, x, w->cols, w->format == FK_W_BF16);
            break;
        default:
            y[r - r0] = dot_affine(w, a, r);
        }
    }
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
