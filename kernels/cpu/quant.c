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

#define AI static inline __attribute__((always_inline))

AI __m256 load8_16(const uint16_t *p, const int bf16) { return bf16 ? load8_bf16(p) : load8_f16(p); }

/* Eight consecutive scales or biases as f32. */
AI __m256 load8_sb(const void *p, int type, long i) {
    switch (type) {
    case FK_SB_F16: return load8_f16((const uint16_t *)p + i);
    case FK_SB_BF16: return load8_bf16((const uint16_t *)p + i);
    default: return _mm256_loadu_ps((const float *)p + i);
    }
}

/* Row r of a 16-bit weight against M activation rows (x + i·xs), each
 * weight read once; out[i] = the M products. Inlined once per (type, M). */
AI void dot_16(const uint16_t *w, const float *x, long xs, long n, const int bf16, const int M, float *out) {
    __m256 acc[4][2];
    for (int i = 0; i < M; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        _mm_prefetch((const char *)(w + j) + FK_PREFETCH, _MM_HINT_T0);
        const __m256 w0 = load8_16(w + j, bf16), w1 = load8_16(w + j + 8, bf16);
        for (int i = 0; i < M; i++) {
            acc[i][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * xs + j), acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * xs + j + 8), acc[i][1]);
        }
    }
    for (; j + 8 <= n; j += 8) {
        const __m256 w0 = load8_16(w + j, bf16);
        for (int i = 0; i < M; i++) acc[i][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * xs + j), acc[i][0]);
    }
    for (int i = 0; i < M; i++) {
        float s = hsum256(_mm256_add_ps(acc[i][0], acc[i][1]));
        for (long t = j; t < n; t++) s += (bf16 ? bf16_to_f32(w[t]) : _cvtsh_ss(w[t])) * x[i * xs + t];
        out[i] = s;
    }
}

/* One group of codes against M activations: the int32 partial sums of
 * q·xq (4 bits) or (q − 128)·xq (8 bits), 8 lanes each, into ia[0..M).
 * The weight bytes are unpacked once for all M. 4 bits: 32 bytes hold 64
 * codes, low nibbles the even inputs, high the odd (fk_quantize_x's order);
 * maddubs pair sums stay below 2·15·127 and two of them below 2^15. 8 bits:
 * maddubs needs an unsigned first operand, hence the sign trick on q − 128
 * (|q − 128| ≤ 128 keeps pair sums below 2^15). */
AI void group_dot(const uint8_t *w, const fk_qx *a, long xo, const int q4, const long g, const int M, __m256i *ia) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int i = 0; i < M; i++) ia[i] = _mm256_setzero_si256();
    if (q4 && g == 32) {
        const __m128i m4 = _mm_set1_epi8(0x0F);
        const __m128i bytes = _mm_loadu_si128((const __m128i *)w);
        const __m256i q = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), m4), _mm_and_si128(bytes, m4));
        for (int i = 0; i < M; i++)
            ia[i] = _mm256_madd_epi16(_mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)(a[i].q + xo))), ones);
        return;
    }
    if (q4) {
        const __m256i m4 = _mm256_set1_epi8(0x0F);
        for (long j = 0; j < g; j += 64) {
            const __m256i bytes = _mm256_loadu_si256((const __m256i *)(w + j / 2));
            const __m256i lo = _mm256_and_si256(bytes, m4), hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m4);
            for (int i = 0; i < M; i++) {
                const int8_t *xq = a[i].q + xo + j;
                __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)xq)),
                                             _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + 32))));
                ia[i] = _mm256_add_epi32(ia[i], _mm256_madd_epi16(p, ones));
            }
        }
        return;
    }
    for (long j = 0; j < g; j += 32) {
        const __m256i ws = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(w + j)), _mm256_set1_epi8((char)0x80));
        const __m256i aw = _mm256_abs_epi8(ws);
        for (int i = 0; i < M; i++) {
            __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a[i].q + xo + j)), ws);
            ia[i] = _mm256_add_epi32(ia[i], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, x), ones));
        }
    }
}

/* Row r against M activations: out[i] = Σ_groups s·d_i·(q·xq_i) + (bias + offset·s)·Σx_i.
 * Rows are done one at a time because two rows read side by side are two
 * memory streams, and on the machines measured (docs/benchmarks.md) the
 * hardware prefetcher then delivers a third of the bandwidth of one stream.
 * Eight groups at a time: their scales times the activation scales are one
 * vector product (each group takes its lane by a permute) and their biases
 * one FMA. The arithmetic of activation i does not depend on M, so a batch
 * gives each row exactly what it gets alone. Inlined into one copy per
 * (bits, group, scale type, M) below: no format branches in the loop. */
AI void dot_affine(const fk_weight *w, const fk_qx *a, long r, const int q4, const long g, const int sb, const int M,
                   float *out) {
    const long cols = w->cols, ng = cols / g;
    const long group_bytes = q4 ? g / 2 : g;
    const uint8_t *w0 = (const uint8_t *)w->w + r * ng * group_bytes;
    /* The 8-bit products use q − 128, so their bias gains 128·s. */
    const float off = q4 ? 0.0f : 128.0f;
    __m256 acc[4], bacc[4];
    float b[4];
    __m256i ia[4];
    for (int i = 0; i < M; i++) { acc[i] = bacc[i] = _mm256_setzero_ps(); b[i] = 0; }
    long k = 0;
    for (; k + 8 <= ng; k += 8) {
        const __m256 s = load8_sb(w->scales, sb, r * ng + k);
        __m256 sd[4];
        for (int i = 0; i < M; i++) sd[i] = _mm256_mul_ps(s, _mm256_loadu_ps(a[i].d + k));
        /* Measured: the hardware prefetcher alone leaves a q4 row stream at
         * ~2/3 of the read bandwidth; lines 4 KB ahead (past the next row
         * for typical widths) keep it near the limit. */
        for (long o = 0; o < 8 * group_bytes; o += 64)
            _mm_prefetch((const char *)(w0 + k * group_bytes + o + FK_PREFETCH), _MM_HINT_T0);
        for (int j = 0; j < 8; j++) {
            group_dot(w0 + (k + j) * group_bytes, a, (k + j) * g, q4, g, M, ia);
            const __m256i lane = _mm256_set1_epi32(j);
            for (int i = 0; i < M; i++)
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[i]), _mm256_permutevar8x32_ps(sd[i], lane), acc[i]);
        }
        const __m256 c = _mm256_fmadd_ps(_mm256_set1_ps(off), s, load8_sb(w->biases, sb, r * ng + k));
        for (int i = 0; i < M; i++) bacc[i] = _mm256_fmadd_ps(c, _mm256_loadu_ps(a[i].sum + k), bacc[i]);
    }
    for (; k < ng; k++) {
        group_dot(w0 + k * group_bytes, a, k * g, q4, g, M, ia);
        const float s = load_sb(w->scales, sb, r * ng + k), c = load_sb(w->biases, sb, r * ng + k);
        for (int i = 0; i < M; i++) {
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ia[i]), _mm256_set1_ps(s * a[i].d[k]), acc[i]);
            b[i] += (c + off * s) * a[i].sum[k];
        }
    }
    for (int i = 0; i < M; i++) out[i] = hsum256(_mm256_add_ps(acc[i], bacc[i])) + b[i];
}

/* y[i·ys + r − r0] for rows r in [r0, r1) and M activations. */
typedef void (*rows_fn)(const fk_weight *, const float *, long, const fk_qx *, float *, long, long, long);

#define FK_ROWS(Q4, G, SB, M)                                                                                   \
    static void rows_##Q4##_##G##_##SB##_##M(const fk_weight *w, const float *x, long xs, const fk_qx *a,       \
                                             float *y, long ys, long r0, long r1) {                             \
        (void)x; (void)xs;                                                                                       \
        float out[4];                                                                                            \
        for (long r = r0; r < r1; r++) {                                                                         \
            dot_affine(w, a, r, Q4, G, SB, M, out);                                                              \
            for (int i = 0; i < M; i++) y[i * ys + r - r0] = out[i];                                             \
        }                                                                                                        \
    }
#define FK_ROWS_M(Q4, G, SB) FK_ROWS(Q4, G, SB, 1) FK_ROWS(Q4, G, SB, 2) FK_ROWS(Q4, G, SB, 3) FK_ROWS(Q4, G, SB, 4)
#define FK_ROWS_G(Q4, SB) FK_ROWS_M(Q4, 32, SB) FK_ROWS_M(Q4, 64, SB) FK_ROWS_M(Q4, 128, SB)
FK_ROWS_G(0, 0) FK_ROWS_G(0, 1) FK_ROWS_G(0, 2) FK_ROWS_G(1, 0) FK_ROWS_G(1, 1) FK_ROWS_G(1, 2)

#define FK_ROW_M(Q4, G, SB) {rows_##Q4##_##G##_##SB##_1, rows_##Q4##_##G##_##SB##_2, rows_##Q4##_##G##_##SB##_3, rows_##Q4##_##G##_##SB##_4}
#define FK_ROW_TABLE(Q4, SB) {FK_ROW_M(Q4, 32, SB), FK_ROW_M(Q4, 64, SB), FK_ROW_M(Q4, 128, SB)}
static const rows_fn affine_rows[2][3][3][4] = {  /* [q4][sb_type][group 32/64/128][M − 1] */
    {FK_ROW_TABLE(0, 0), FK_ROW_TABLE(0, 1), FK_ROW_TABLE(0, 2)},
    {FK_ROW_TABLE(1, 0), FK_ROW_TABLE(1, 1), FK_ROW_TABLE(1, 2)},
};

#define FK_ROWS16(BF, M)                                                                                       \
    static void rows16_##BF##_##M(const fk_weight *w, const float *x, long xs, const fk_qx *a, float *y,       \
                                  long ys, long r0, long r1) {                                                  \
        (void)a;                                                                                                \
        float out[4];                                                                                           \
        for (long r = r0; r < r1; r++) {                                                                        \
            dot_16((const uint16_t *)w->w + r * w->cols, x, xs, w->cols, BF, M, out);                           \
            for (int i = 0; i < M; i++) y[i * ys + r - r0] = out[i];                                            \
        }                                                                                                       \
    }
FK_ROWS16(0, 1) FK_ROWS16(0, 2) FK_ROWS16(0, 3) FK_ROWS16(0, 4)
FK_ROWS16(1, 1) FK_ROWS16(1, 2) FK_ROWS16(1, 3) FK_ROWS16(1, 4)
static const rows_fn rows16[2][4] = {{rows16_0_1, rows16_0_2, rows16_0_3, rows16_0_4},
                                     {rows16_1_1, rows16_1_2, rows16_1_3, rows16_1_4}};

void fk_gemv_rows(const fk_weight *w, const float *x, long x_stride, const fk_qx *a, long m, float *y, long y_stride,
                  long r0, long r1) {
    if (m < 1 || m > FK_GEMV_MAX_ROWS) return;
    if (w->format == FK_W_F16 || w->format == FK_W_BF16) {
        rows16[w->format == FK_W_BF16][m - 1](w, x, x_stride, a, y, y_stride, r0, r1);
        return;
    }
    const int gi = w->group == 32 ? 0 : w->group == 64 ? 1 : 2;
    affine_rows[w->format == FK_W_Q4][w->sb_type][gi][m - 1](w, x, x_stride, a, y, y_stride, r0, r1);
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
