/* AVX2/FMA convolution kernels for the NFNet vision encoder (see
 * include/flamingo_conv_kernels.h for the layouts and contracts).
 *
 * The direct convolution is register-blocked like a GEMM micro-kernel: 6
 * output pixels × 16 output channels (12 ymm accumulators) or 8 pixels × 8
 * channels, weights packed so that one (ky, kx, input channel) step reads 16
 * (or 8) consecutive floats, inputs broadcast from the padded NHWC plane.
 * Pixels of a tile are consecutive in row-major output order, so a tile may
 * span output rows (small feature maps keep full tiles). exp is simd_exp.h's. */
#include "flamingo_conv_kernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include "simd_exp.h"

#define FK_INLINE static inline __attribute__((always_inline))

/* 1/d for d >= 1 (finite): the approximate reciprocal and one Newton step (≈ 2⁻²³ relative),
 * much cheaper than a division in the activation epilogues. */
FK_INLINE __m256 cv_recip256(__m256 d) {
    __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

/* act(v)·scale */
FK_INLINE __m256 cv_act256(__m256 v, int act, __m256 scale) {
    if (act == FK_ACT_GELU) {
        /* erf as Eigen's / XLA's rational approximation on [−4, 4] (|error| ≲ 2e-7, erf(±4) = ±1 in
         * f32); half the instructions of an erfc·exp evaluation, and exact enough: GELU's absolute
         * error stays ~1e-7·|x| (torch's own vectorised erf is of the same kind). */
        const __m256 x = _mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f));
        const __m256 z = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(4.0f)), _mm256_set1_ps(-4.0f));
        const __m256 z2 = _mm256_mul_ps(z, z);
        __m256 p = _mm256_fmadd_ps(z2, _mm256_set1_ps(-2.72614225801306e-10f), _mm256_set1_ps(2.77068142495902e-08f));
        p = _mm256_fmadd_ps(z2, p, _mm256_set1_ps(-2.10102402082508e-06f));
        p = _mm256_fmadd_ps(z2, p, _mm256_set1_ps(-5.69250639462346e-05f));
        p = _mm256_fmadd_ps(z2, p, _mm256_set1_ps(-7.34990630326855e-04f));
        p = _mm256_fmadd_ps(z2, p, _mm256_set1_ps(-2.95459980854025e-03f));
        p = _mm256_fmadd_ps(z2, p, _mm256_set1_ps(-1.60960333262415e-02f));
        p = _mm256_mul_ps(z, p);
        __m256 q = _mm256_fmadd_ps(z2, _mm256_set1_ps(-1.45660718464996e-05f), _mm256_set1_ps(-2.13374055278905e-04f));
        q = _mm256_fmadd_ps(z2, q, _mm256_set1_ps(-1.68282697438203e-03f));
        q = _mm256_fmadd_ps(z2, q, _mm256_set1_ps(-7.37332916720468e-03f));
        q = _mm256_fmadd_ps(z2, q, _mm256_set1_ps(-1.42647390514189e-02f));
        const __m256 erf = _mm256_div_ps(p, q);
        const __m256 hx = _mm256_mul_ps(v, _mm256_set1_ps(0.5f));
        v = _mm256_fmadd_ps(hx, erf, hx);  /* 0.5·x·(1 + erf) */
    } else if (act == FK_ACT_GELU_TANH) {
        /* 0.5·x·(1 + tanh(u)) = x·σ(2u), without the cancellation of 1 + tanh for x < 0 */
        __m256 x2 = _mm256_mul_ps(v, v);
        __m256 u2 = _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(-1.5957691216057308f)),   /* −2·√(2/π) */
                                  _mm256_fmadd_ps(x2, _mm256_set1_ps(0.044715f), _mm256_set1_ps(1.0f)));
        v = _mm256_mul_ps(v, cv_recip256(_mm256_add_ps(_mm256_set1_ps(1.0f), fk_exp256(_mm256_min_ps(u2, _mm256_set1_ps(80.0f))))));
    }
    return _mm256_mul_ps(v, scale);
}

static inline float cv_act1(float x, int act, float scale) {
    if (act == FK_ACT_GELU) {
        x = 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    } else if (act == FK_ACT_GELU_TANH) {
        float u2 = -1.5957691216057308f * x * (1.0f + 0.044715f * x * x);
        x = x / (1.0f + expf(u2));
    }
    return x * scale;
}

void fk_nf_act(const float *x, float *y, size_t n, int act, float scale) {
    const __m256 s = _mm256_set1_ps(scale);
    size_t i = 0;
    if (act == FK_ACT_GELU) {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, cv_act256(_mm256_loadu_ps(x + i), FK_ACT_GELU, s));
    } else if (act == FK_ACT_GELU_TANH) {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, cv_act256(_mm256_loadu_ps(x + i), FK_ACT_GELU_TANH, s));
    } else {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), s));
    }
    for (; i < n; i++) y[i] = cv_act1(x[i], act, scale);
}

/* ---------------------------------------------------------------------------------------------
 * Direct convolution
 * ------------------------------------------------------------------------------------------- */

/* Output pixels per task: up to 192, fewer where their input rows (k floats each) would pass
 * 768 KB (the task's pixels stay in L2 while its channel blocks pass over them), and all tasks of
 * a map equally long. Longer runs re-read the weights from L3 less often (stage 3 of NFNet-F6:
 * 400 pixels × 1536 channels, 4.7 MB of weights per 1×1 convolution), and no short remainder
 * task streams a whole weight block for a few pixels. */
static size_t cv_task_pixels(const fk_conv2d *c) {
    const size_t pixels = (size_t)c->out_h * (size_t)c->out_w;
    const size_t k = (size_t)c->kh * (size_t)c->kw * (size_t)c->cin_g;
    size_t cap = (size_t)(192 * 1024) / (k ? k : 1);
    cap = cap > 192 ? 192 : cap < 48 ? 48 : cap;
    const size_t tasks = (pixels + cap - 1) / cap;
    return tasks ? (pixels + tasks - 1) / tasks : 1;
}

typedef struct {
    size_t k;      /* kh·kw·cin_g: reduction length */
    int n16;       /* 16-wide blocks per group (the last one possibly partial) */
    int n8;        /* 0 or 1 trailing 8-wide block (a remainder of 1..8 channels) */
    size_t group;  /* packed floats per group */
} cv_layout;

static cv_layout cv_lay(int kh, int kw, int cin_g, int cout_g) {
    cv_layout l;
    int rem = cout_g % 16;
    l.k = (size_t)kh * (size_t)kw * (size_t)cin_g;
    l.n16 = cout_g / 16 + (rem > 8);
    l.n8 = rem > 0 && rem <= 8;
    l.group = l.k * (size_t)(16 * l.n16 + 8 * l.n8);
    return l;
}

size_t fk_conv2d_packed_size(int kh, int kw, int groups, int cin_g, int cout_g) {
    return cv_lay(kh, kw, cin_g, cout_g).group * (size_t)groups;
}

void fk_conv2d_pack(const float *w, int kh, int kw, int groups, int cin_g, int cout_g, float *packed) {
    cv_layout l = cv_lay(kh, kw, cin_g, cout_g);
    for (int g = 0; g < groups; g++) {
        float *dst = packed + (size_t)g * l.group;
        for (int b = 0; b < l.n16 + l.n8; b++) {
            int width = b < l.n16 ? 16 : 8, c0 = b * 16;
            for (int ky = 0; ky < kh; ky++)
                for (int kx = 0; kx < kw; kx++)
                    for (int ic = 0; ic < cin_g; ic++)
                        for (int lane = 0; lane < width; lane++) {
                            int oc = c0 + lane;
                            *dst++ = oc < cout_g
                                ? w[(((size_t)g * cout_g + oc) * cin_g + ic) * kh * kw + (size_t)ky * kw + kx]
                                : 0.0f;
                        }
        }
    }
}

size_t fk_conv2d_tasks(const fk_conv2d *c) {
    cv_layout l = cv_lay(c->kh, c->kw, c->cin_g, c->cout_g);
    size_t pixels = (size_t)c->out_h * (size_t)c->out_w;
    const size_t per = cv_task_pixels(c), tiles = (pixels + per - 1) / per;
    return (size_t)c->groups * (size_t)(l.n16 + l.n8) * tiles;
}

FK_INLINE __m256 cv_mask(int n) {
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

/* Input pointer (channel 0 of the group) and output pointer (first channel of the block) of output
 * pixel (oy, ox), then (oy, ox) advanced to the next pixel in row-major order. */
FK_INLINE void cv_pixel(const fk_conv2d *c, int g, int c0, size_t *py, size_t *px, const float **in, float **out) {
    size_t oy = *py, ox = *px;
    if (++*px == (size_t)c->out_w) { *px = 0; ++*py; }
    *in = c->in + (ptrdiff_t)oy * c->stride * c->in_row + (ptrdiff_t)ox * c->stride * c->in_pix + (ptrdiff_t)g * c->cin_g;
    *out = c->out + (ptrdiff_t)oy * c->out_row + (ptrdiff_t)ox * c->out_pix + (ptrdiff_t)g * c->cout_g + c0;
}

/* out[i][0 … cnt) = act(buf[i·width …])·scale for np pixels (width 8 or 16). */
static __attribute__((noinline)) void cv_epilogue(const float *buf, int width, int np, float *const *out, int cnt,
                                                  int act, float scale) {
    const __m256 s = _mm256_set1_ps(scale);
    for (int i = 0; i < np; i++) {
        for (int k = 0; k < width; k += 8) {
            int n = cnt - k;
            if (n <= 0) break;
            __m256 v = _mm256_load_ps(buf + i * width + k);
            v = act == FK_ACT_GELU ? cv_act256(v, FK_ACT_GELU, s)
              : act == FK_ACT_GELU_TANH ? cv_act256(v, FK_ACT_GELU_TANH, s) : _mm256_mul_ps(v, s);
            if (n >= 8) _mm256_storeu_ps(out[i] + k, v);
            else _mm256_maskstore_ps(out[i] + k, _mm256_castps_si256(cv_mask(n)), v);
        }
    }
}

/* The register tiles below name every accumulator and input pointer as its own variable (an
 * array of __m256 indexed in the loops gets stored back to the stack on every FMA); `np` is a
 * compile-time constant at each call, so the guards on unused pixels fold away. */
#define CV_P6(X) X(0) X(1) X(2) X(3) X(4) X(5)
#define CV_P8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
/* TILE(np) with np = sz (1 … 6 or 8) as a compile-time constant. */
#define CV_BY_SIZE6(sz, TILE) \
    switch (sz) { \
    case 6: TILE(6); break; case 5: TILE(5); break; case 4: TILE(4); break; \
    case 3: TILE(3); break; case 2: TILE(2); break; case 1: TILE(1); break; default: break; \
    }
#define CV_BY_SIZE8(sz, TILE) \
    switch (sz) { \
    case 8: TILE(8); break; case 7: TILE(7); break; default: CV_BY_SIZE6(sz, TILE) \
    }

/* np (≤ 6) pixels × 16 channels; cnt (9..16) channels are real. */
FK_INLINE void cv_tile16(const fk_conv2d *c, const float *w, int g, int c0, int cnt, size_t p0, const int np,
                         const float *pf) {
    size_t py = p0 / (size_t)c->out_w, px = p0 % (size_t)c->out_w;
#define DECL(i) const float *in##i = 0; float *out##i = 0; \
    if (np > i) cv_pixel(c, g, c0, &py, &px, &in##i, &out##i);
    CV_P6(DECL)
#undef DECL
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
    if (c->bias) {
        const float *bp = c->bias + (size_t)g * c->cout_g + c0;
        if (cnt == 16) {
            b0 = _mm256_loadu_ps(bp);
            b1 = _mm256_loadu_ps(bp + 8);
        } else {
            b0 = _mm256_loadu_ps(bp);
            b1 = _mm256_maskload_ps(bp + 8, _mm256_castps_si256(cv_mask(cnt - 8)));
        }
    }
#define ACC(i) __m256 a##i##0 = b0, a##i##1 = b1;
    CV_P6(ACC)
#undef ACC
    const int cin = c->cin_g;
    for (int ky = 0; ky < c->kh; ky++) {
        for (int kx = 0; kx < c->kw; kx++) {
            const ptrdiff_t off = ky * c->in_row + kx * c->in_pix;
#define PTR(i) const float *q##i = np > i ? in##i + off : 0;
            CV_P6(PTR)
#undef PTR
            for (int ic = 0; ic < cin; ic++) {
                const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
                w += 16;
                if (pf) { _mm_prefetch((const char *)pf, _MM_HINT_T1); pf += 16; }
#define STEP(i) if (np > i) { const __m256 x = _mm256_broadcast_ss(q##i + ic); \
                a##i##0 = _mm256_fmadd_ps(x, w0, a##i##0); a##i##1 = _mm256_fmadd_ps(x, w1, a##i##1); }
                CV_P6(STEP)
#undef STEP
            }
        }
    }
    /* The epilogue runs out of line: inlined, the activation's constants would be hoisted into
     * registers the accumulators need. */
    float buf[6 * 16] __attribute__((aligned(32)));
    float *outs[6];
#define SPILL(i) if (np > i) { _mm256_store_ps(buf + 16 * i, a##i##0); _mm256_store_ps(buf + 16 * i + 8, a##i##1); outs[i] = out##i; }
    CV_P6(SPILL)
#undef SPILL
    cv_epilogue(buf, 16, np, outs, cnt, c->act, c->act_scale);
}

/* np (≤ 8) pixels × 8 channels; cnt (1..8) channels are real. */
FK_INLINE void cv_tile8(const fk_conv2d *c, const float *w, int g, int c0, int cnt, size_t p0, const int np) {
    size_t py = p0 / (size_t)c->out_w, px = p0 % (size_t)c->out_w;
#define DECL(i) const float *in##i = 0; float *out##i = 0; \
    if (np > i) cv_pixel(c, g, c0, &py, &px, &in##i, &out##i);
    CV_P8(DECL)
#undef DECL
    const __m256i m = _mm256_castps_si256(cv_mask(cnt));
    __m256 b = _mm256_setzero_ps();
    if (c->bias) b = _mm256_maskload_ps(c->bias + (size_t)g * c->cout_g + c0, m);
#define ACC(i) __m256 a##i = b;
    CV_P8(ACC)
#undef ACC
    const int cin = c->cin_g;
    for (int ky = 0; ky < c->kh; ky++) {
        for (int kx = 0; kx < c->kw; kx++) {
            const ptrdiff_t off = ky * c->in_row + kx * c->in_pix;
#define PTR(i) const float *q##i = np > i ? in##i + off : 0;
            CV_P8(PTR)
#undef PTR
            for (int ic = 0; ic < cin; ic++) {
                const __m256 w0 = _mm256_loadu_ps(w);
                w += 8;
#define STEP(i) if (np > i) a##i = _mm256_fmadd_ps(_mm256_broadcast_ss(q##i + ic), w0, a##i);
                CV_P8(STEP)
#undef STEP
            }
        }
    }
    float buf[8 * 8] __attribute__((aligned(32)));
    float *outs[8];
#define SPILL(i) if (np > i) { _mm256_store_ps(buf + 8 * i, a##i); outs[i] = out##i; }
    CV_P8(SPILL)
#undef SPILL
    cv_epilogue(buf, 8, np, outs, cnt, c->act, c->act_scale);
}

/* Pixels [p, end) in register tiles of as equal sizes as possible (25 pixels: five of 5, not four
 * of 6 and one of 1, which would stream the whole weight block for a single pixel). */
/* pf: the weights of the task that follows, prefetched (one cache line per step) during the
 * first register tile. */
static void cv_run16(const fk_conv2d *cp, const float *w, int g, int c0, int cnt, size_t p, size_t end,
                     const float *pf) {
    const fk_conv2d cc = *cp, *c = &cc;  /* a local copy: its fields stay in registers across the tiles */
    const size_t n = end - p, tiles = (n + 5) / 6;
    for (size_t i = 0; i < tiles; i++) {
        const size_t sz = n / tiles + (i < n % tiles);
#define TILE(np) cv_tile16(c, w, g, c0, cnt, p, np, i == 0 ? pf : NULL)
        CV_BY_SIZE6(sz, TILE)
#undef TILE
        p += sz;
    }
}

static void cv_run8(const fk_conv2d *cp, const float *w, int g, int c0, int cnt, size_t p, size_t end) {
    const fk_conv2d cc = *cp, *c = &cc;
    const size_t n = end - p, tiles = (n + 7) / 8;
    for (size_t i = 0; i < tiles; i++) {
        const size_t sz = n / tiles + (i < n % tiles);
#define TILE(np) cv_tile8(c, w, g, c0, cnt, p, np)
        CV_BY_SIZE8(sz, TILE)
#undef TILE
        p += sz;
    }
}

void fk_conv2d_run(const fk_conv2d *c, size_t lo, size_t hi) {
    cv_layout l = cv_lay(c->kh, c->kw, c->cin_g, c->cout_g);
    const size_t pixels = (size_t)c->out_h * (size_t)c->out_w;
    const size_t per = cv_task_pixels(c), tiles = (pixels + per - 1) / per;
    const size_t blocks = (size_t)(l.n16 + l.n8);
    if (tiles == 0 || blocks == 0) return;
    for (size_t t = lo; t < hi; t++) {
        /* Channel blocks vary fastest: a thread's consecutive tasks reuse one run of input pixels
         * (L1/L2) against the group's weights, which stay in L2/L3. */
        size_t b0 = t % blocks, rest = t / blocks, tile = rest % tiles;
        int b = (int)b0, g = (int)(rest / tiles);
        if (g >= c->groups) return;
        size_t p = tile * per, end = p + per < pixels ? p + per : pixels;
        int c0 = b * 16, cnt = c->cout_g - c0;
        const float *w = c->weight + (size_t)g * l.group + (size_t)b * l.k * 16;
        if (b < l.n16) {
            if (cnt > 16) cnt = 16;
            /* the next task's block: the next 16 channels, or the group's first block again */
            const float *next = b + 1 < l.n16 ? w + l.k * 16 : c->weight + (size_t)g * l.group;
            cv_run16(c, w, g, c0, cnt, p, end, next);
        } else {
            cv_run8(c, w, g, c0, cnt, p, end);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Pooling, squeeze-excite helpers
 * ------------------------------------------------------------------------------------------- */

void fk_avgpool2x2(const float *in, int h, int w, int c, float *out, int row_lo, int row_hi) {
    const int ow = (w + 1) / 2;
    for (int oy = row_lo; oy < row_hi; oy++) {
        int y0 = 2 * oy, ny = y0 + 1 < h ? 2 : 1;
        for (int ox = 0; ox < ow; ox++) {
            int x0 = 2 * ox, nx = x0 + 1 < w ? 2 : 1;
            const float inv = 1.0f / (float)(ny * nx);
            const float *r0 = in + ((size_t)y0 * w + x0) * c, *r1 = r0 + (size_t)w * c;
            float *o = out + ((size_t)oy * ow + ox) * c;
            const __m256 vinv = _mm256_set1_ps(inv);
            int j = 0;
            for (; j + 8 <= c; j += 8) {
                __m256 s = _mm256_loadu_ps(r0 + j);
                if (nx == 2) s = _mm256_add_ps(s, _mm256_loadu_ps(r0 + c + j));
                if (ny == 2) {
                    s = _mm256_add_ps(s, _mm256_loadu_ps(r1 + j));
                    if (nx == 2) s = _mm256_add_ps(s, _mm256_loadu_ps(r1 + c + j));
                }
                _mm256_storeu_ps(o + j, _mm256_mul_ps(s, vinv));
            }
            for (; j < c; j++) {
                float s = r0[j];
                if (nx == 2) s += r0[c + j];
                if (ny == 2) {
                    s += r1[j];
                    if (nx == 2) s += r1[c + j];
                }
                o[j] = s * inv;
            }
        }
    }
}

void fk_channel_mean(const float *in, size_t n, size_t c, float *out) {
    /* Blocks of 64 channels (8 accumulators), pixels summed in runs of 256 then added to a running
     * total, which keeps the rounding error of long sums small. */
    const float inv = n ? 1.0f / (float)n : 0.0f;
    size_t j = 0;
    for (; j + 64 <= c; j += 64) {
        __m256 tot[8];
        for (int k = 0; k < 8; k++) tot[k] = _mm256_setzero_ps();
        for (size_t p0 = 0; p0 < n; p0 += 256) {
            size_t p1 = p0 + 256 < n ? p0 + 256 : n;
            __m256 s[8];
            for (int k = 0; k < 8; k++) s[k] = _mm256_setzero_ps();
            for (size_t p = p0; p < p1; p++) {
                const float *row = in + p * c + j;
                for (int k = 0; k < 8; k++) s[k] = _mm256_add_ps(s[k], _mm256_loadu_ps(row + 8 * k));
            }
            for (int k = 0; k < 8; k++) tot[k] = _mm256_add_ps(tot[k], s[k]);
        }
        for (int k = 0; k < 8; k++) _mm256_storeu_ps(out + j + 8 * k, _mm256_mul_ps(tot[k], _mm256_set1_ps(inv)));
    }
    for (; j < c; j++) {
        double s = 0;
        for (size_t p = 0; p < n; p++) s += in[p * c + j];
        out[j] = (float)(s / (double)(n ? n : 1));
    }
}

void fk_scale_add(const float *h, const float *scale, const float *sc, float *out, size_t n, size_t c) {
    for (size_t p = 0; p < n; p++) {
        const float *hp = h + p * c, *sp = sc + p * c;
        float *op = out + p * c;
        size_t j = 0;
        for (; j + 8 <= c; j += 8)
            _mm256_storeu_ps(op + j, _mm256_fmadd_ps(_mm256_loadu_ps(hp + j), _mm256_loadu_ps(scale + j),
                                                     _mm256_loadu_ps(sp + j)));
        for (; j < c; j++) op[j] = sp[j] + hp[j] * scale[j];
    }
}

/* ---------------------------------------------------------------------------------------------
 * Winograd F(2×2, 3×3) and F(4×4, 3×3) for stride-1 3×3 convolutions (Lavin & Gray 2015):
 * U = G·g·Gᵀ per filter (at load), V = Bᵀ·d·B per (m+2)² input tile, M = V·U as (m+2)²
 * independent products, Y = Aᵀ·M·A per m×m output tile: 2.25× (m = 2) or 4× (m = 4) fewer
 * multiplies than the direct form. A task is one group × a run of output tiles (`chunk`): its V and M stay
 * in the calling thread's scratch (L2-sized), the products run the same register-blocked kernel
 * as a 1×1 convolution over the tiles.
 * ------------------------------------------------------------------------------------------- */

#define WINO_TILES 48  /* default (and largest sensible) tiles per task: V and M stay in L2 */

static size_t wino_chunk(const fk_wino *w) { return w->chunk > 0 ? (size_t)w->chunk : WINO_TILES; }

static size_t wino_pos_size(int cin_g, int cout_g) { return fk_conv2d_packed_size(1, 1, 1, cin_g, cout_g); }
static int wino_m(int tile) { return tile == 4 ? 4 : 2; }
static int wino_positions(int tile) { int n = wino_m(tile) + 2; return n * n; }

size_t fk_wino_packed_size(int tile, int groups, int cin_g, int cout_g) {
    return (size_t)groups * wino_positions(tile) * wino_pos_size(cin_g, cout_g);
}

/* G (n×3) of F(m×m, 3×3), n = m + 2. */
static void wino_g(int m, double G[6][3]) {
    static const double g2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    static const double g4[6][3] = {{1.0 / 4, 0, 0}, {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                    {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
    for (int i = 0; i < m + 2; i++)
        for (int j = 0; j < 3; j++) G[i][j] = m == 4 ? g4[i][j] : g2[i][j];
}

void fk_wino_pack(const float *w, int tile, int groups, int cin_g, int cout_g, float *packed, float *tmp) {
    const int m = wino_m(tile), n = m + 2, np = n * n;
    double G[6][3];
    wino_g(m, G);
    const size_t per = (size_t)groups * cout_g * cin_g;  /* one position: [groups·cout_g][cin_g] */
    for (size_t f = 0; f < per; f++) {
        const float *g = w + f * 9;
        double t[6][3];  /* G·g */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < 3; j++) t[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
        for (int i = 0; i < n; i++)  /* (G·g)·Gᵀ */
            for (int j = 0; j < n; j++)
                tmp[(size_t)(i * n + j) * per + f] = (float)(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
    }
    const size_t ps = wino_pos_size(cin_g, cout_g);
    for (int g = 0; g < groups; g++)
        for (int pos = 0; pos < np; pos++)
            fk_conv2d_pack(tmp + (size_t)pos * per + (size_t)g * cout_g * cin_g, 1, 1, 1, cin_g, cout_g,
                           packed + ((size_t)g * np + pos) * ps);
}

size_t fk_wino_tasks(const fk_wino *w) {
    const int m = wino_m(w->tile);
    size_t tiles = (size_t)((w->out_h + m - 1) / m) * (size_t)((w->out_w + m - 1) / m), ch = wino_chunk(w);
    return (size_t)w->groups * ((tiles + ch - 1) / ch);
}

/* Floats between consecutive positions of V (c = cin_g) or M (c = cout_g) for nt tiles. One
 * extra cache line: with the bare nt·c (often a multiple of 4 KB) the 36 positions a tile's
 * transform touches all map to one L1 set and evict each other on every access. */
static size_t wino_stride(size_t nt, int c) { return nt * (size_t)c + 16; }

size_t fk_wino_scratch_size(const fk_wino *w) {
    const size_t ch = wino_chunk(w);
    return (size_t)wino_positions(w->tile) * (wino_stride(ch, w->cin_g) + wino_stride(ch, w->cout_g)) + 16;
}

/* V[pos][i][k] (pos stride nt·c, tile stride c) for tiles t0 … t0+nt−1 of a tw-wide grid, channels
 * [0, c) of `in` (already offset to the group); padded input extents in_h × in_w. */
static void wino_input(const fk_wino *w, const float *in, int c, int tw, size_t t0, int nt, size_t ps, float *v) {
    for (int it = 0; it < nt; it++) {
        const size_t t = t0 + (size_t)it;
        const int ty = (int)(t / (size_t)tw), tx = (int)(t % (size_t)tw);
        const float *src[4][4];
        int ok[4][4];
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                int y = 2 * ty + i, x = 2 * tx + j;
                ok[i][j] = y < w->in_h && x < w->in_w;
                src[i][j] = ok[i][j] ? in + (ptrdiff_t)y * w->in_row + (ptrdiff_t)x * w->in_pix : in;
            }
        float *dst = v + (size_t)it * c;
        int k = 0;
        for (; k + 8 <= c; k += 8) {
            __m256 d[4][4], r[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) d[i][j] = ok[i][j] ? _mm256_loadu_ps(src[i][j] + k) : _mm256_setzero_ps();
            for (int j = 0; j < 4; j++) {  /* Bᵀ·d */
                r[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
                r[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
                r[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
                r[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
            }
            for (int i = 0; i < 4; i++) {  /* (Bᵀ·d)·B */
                float *o = dst + (size_t)(i * 4) * ps + k;
                _mm256_storeu_ps(o, _mm256_sub_ps(r[i][0], r[i][2]));
                _mm256_storeu_ps(o + ps, _mm256_add_ps(r[i][1], r[i][2]));
                _mm256_storeu_ps(o + 2 * ps, _mm256_sub_ps(r[i][2], r[i][1]));
                _mm256_storeu_ps(o + 3 * ps, _mm256_sub_ps(r[i][1], r[i][3]));
            }
        }
        for (; k < c; k++) {
            float d[4][4], r[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) d[i][j] = ok[i][j] ? src[i][j][k] : 0.0f;
            for (int j = 0; j < 4; j++) {
                r[0][j] = d[0][j] - d[2][j];
                r[1][j] = d[1][j] + d[2][j];
                r[2][j] = d[2][j] - d[1][j];
                r[3][j] = d[1][j] - d[3][j];
            }
            for (int i = 0; i < 4; i++) {
                float *o = dst + (size_t)(i * 4) * ps + k;
                o[0] = r[i][0] - r[i][2];
                o[ps] = r[i][1] + r[i][2];
                o[2 * ps] = r[i][2] - r[i][1];
                o[3 * ps] = r[i][1] - r[i][3];
            }
        }
    }
}

/* act(Aᵀ·M·A + bias)·scale into `out` (offset to the group's first channel) for the same tiles. */
static void wino_output(const fk_wino *w, const float *m, int c, int tw, size_t t0, int nt, size_t ps, const float *bias,
                        float *out) {
    const __m256 s = _mm256_set1_ps(w->act_scale);
    const int act = w->act;
    for (int it = 0; it < nt; it++) {
        const size_t t = t0 + (size_t)it;
        const int ty = (int)(t / (size_t)tw), tx = (int)(t % (size_t)tw);
        const int ny = 2 * ty + 1 < w->out_h ? 2 : 1, nx = 2 * tx + 1 < w->out_w ? 2 : 1;
        float *o00 = out + (ptrdiff_t)(2 * ty) * w->out_row + (ptrdiff_t)(2 * tx) * w->out_pix;
        const float *src = m + (size_t)it * c;
        int k = 0;
        for (; k + 8 <= c; k += 8) {
            __m256 r[2][4];
            for (int j = 0; j < 4; j++) {  /* Aᵀ·M */
                __m256 m0 = _mm256_loadu_ps(src + (size_t)j * ps + k), m1 = _mm256_loadu_ps(src + (size_t)(4 + j) * ps + k);
                __m256 m2 = _mm256_loadu_ps(src + (size_t)(8 + j) * ps + k), m3 = _mm256_loadu_ps(src + (size_t)(12 + j) * ps + k);
                r[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
                r[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
            }
            const __m256 b = bias ? _mm256_loadu_ps(bias + k) : _mm256_setzero_ps();
            for (int i = 0; i < ny; i++) {  /* (Aᵀ·M)·A */
                __m256 y0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r[i][0], r[i][1]), r[i][2]), b);
                _mm256_storeu_ps(o00 + i * w->out_row + k, cv_act256(y0, act, s));
                if (nx == 2) {
                    __m256 y1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r[i][1], r[i][2]), r[i][3]), b);
                    _mm256_storeu_ps(o00 + i * w->out_row + w->out_pix + k, cv_act256(y1, act, s));
                }
            }
        }
        for (; k < c; k++) {
            float r[2][4];
            for (int j = 0; j < 4; j++) {
                float m0 = src[(size_t)j * ps + k], m1 = src[(size_t)(4 + j) * ps + k];
                float m2 = src[(size_t)(8 + j) * ps + k], m3 = src[(size_t)(12 + j) * ps + k];
                r[0][j] = m0 + m1 + m2;
                r[1][j] = m1 - m2 - m3;
            }
            const float b = bias ? bias[k] : 0.0f;
            for (int i = 0; i < ny; i++) {
                o00[i * w->out_row + k] = cv_act1(r[i][0] + r[i][1] + r[i][2] + b, act, w->act_scale);
                if (nx == 2) o00[i * w->out_row + w->out_pix + k] = cv_act1(r[i][1] - r[i][2] - r[i][3] + b, act, w->act_scale);
            }
        }
    }
}

/* Bᵀ·x for F(4×4, 3×3) on 6 vectors. */
FK_INLINE void wino4_b(const __m256 d[6], __m256 r[6]) {
    const __m256 four = _mm256_set1_ps(4.0f), five = _mm256_set1_ps(5.0f), two = _mm256_set1_ps(2.0f);
    r[0] = _mm256_add_ps(_mm256_fnmadd_ps(five, d[2], _mm256_mul_ps(four, d[0])), d[4]);
    __m256 a = _mm256_fnmadd_ps(four, d[2], d[4]), b = _mm256_fnmadd_ps(four, d[1], d[3]);
    r[1] = _mm256_add_ps(a, b);       /* −4d1 − 4d2 + d3 + d4 */
    r[2] = _mm256_sub_ps(a, b);       /*  4d1 − 4d2 − d3 + d4 */
    __m256 c = _mm256_sub_ps(d[4], d[2]), e = _mm256_mul_ps(two, _mm256_sub_ps(d[3], d[1]));
    r[3] = _mm256_add_ps(c, e);       /* −2d1 − d2 + 2d3 + d4 */
    r[4] = _mm256_sub_ps(c, e);       /*  2d1 − d2 − 2d3 + d4 */
    r[5] = _mm256_add_ps(_mm256_fnmadd_ps(five, d[3], _mm256_mul_ps(four, d[1])), d[5]);
}

static inline void wino4_b1(const float d[6], float r[6]) {
    r[0] = 4 * d[0] - 5 * d[2] + d[4];
    r[1] = -4 * d[1] - 4 * d[2] + d[3] + d[4];
    r[2] = 4 * d[1] - 4 * d[2] - d[3] + d[4];
    r[3] = -2 * d[1] - d[2] + 2 * d[3] + d[4];
    r[4] = 2 * d[1] - d[2] - 2 * d[3] + d[4];
    r[5] = 4 * d[1] - 5 * d[3] + d[5];
}

/* Aᵀ·x for F(4×4, 3×3): 6 → 4. */
FK_INLINE void wino4_a(const __m256 x[6], __m256 y[4]) {
    __m256 p12 = _mm256_add_ps(x[1], x[2]), m12 = _mm256_sub_ps(x[1], x[2]);
    __m256 p34 = _mm256_add_ps(x[3], x[4]), m34 = _mm256_sub_ps(x[3], x[4]);
    y[0] = _mm256_add_ps(_mm256_add_ps(x[0], p12), p34);
    y[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), m34, m12);
    y[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), p34, p12);
    y[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), m34, m12), x[5]);
}

static inline void wino4_a1(const float x[6], float y[4]) {
    y[0] = x[0] + x[1] + x[2] + x[3] + x[4];
    y[1] = x[1] - x[2] + 2 * (x[3] - x[4]);
    y[2] = x[1] + x[2] + 4 * (x[3] + x[4]);
    y[3] = x[1] - x[2] + 8 * (x[3] - x[4]) + x[5];
}

static void wino4_input(const fk_wino *w, const float *in, int c, int tw, size_t t0, int nt, size_t ps, float *v) {
    for (int it = 0; it < nt; it++) {
        const size_t t = t0 + (size_t)it;
        const int ty = (int)(t / (size_t)tw), tx = (int)(t % (size_t)tw);
        const float *src[6][6];
        int ok[6][6];
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) {
                int y = 4 * ty + i, x = 4 * tx + j;
                ok[i][j] = y < w->in_h && x < w->in_w;
                src[i][j] = ok[i][j] ? in + (ptrdiff_t)y * w->in_row + (ptrdiff_t)x * w->in_pix : in;
            }
        float *dst = v + (size_t)it * c;
        int k = 0;
        for (; k + 8 <= c; k += 8) {
            __m256 r[6][6];
            for (int j = 0; j < 6; j++) {  /* Bᵀ·d, column j */
                __m256 d[6], t6[6];
                for (int i = 0; i < 6; i++) d[i] = ok[i][j] ? _mm256_loadu_ps(src[i][j] + k) : _mm256_setzero_ps();
                wino4_b(d, t6);
                for (int i = 0; i < 6; i++) r[i][j] = t6[i];
            }
            for (int i = 0; i < 6; i++) {  /* (Bᵀ·d)·B, row i */
                __m256 o6[6];
                wino4_b(r[i], o6);
                for (int j = 0; j < 6; j++) _mm256_storeu_ps(dst + (size_t)(i * 6 + j) * ps + k, o6[j]);
            }
        }
        for (; k < c; k++) {
            float r[6][6];
            for (int j = 0; j < 6; j++) {
                float d[6], t6[6];
                for (int i = 0; i < 6; i++) d[i] = ok[i][j] ? src[i][j][k] : 0.0f;
                wino4_b1(d, t6);
                for (int i = 0; i < 6; i++) r[i][j] = t6[i];
            }
            for (int i = 0; i < 6; i++) {
                float o6[6];
                wino4_b1(r[i], o6);
                for (int j = 0; j < 6; j++) dst[(size_t)(i * 6 + j) * ps + k] = o6[j];
            }
        }
    }
}

static void wino4_output(const fk_wino *w, const float *mm, int c, int tw, size_t t0, int nt, size_t ps, const float *bias,
                         float *out) {
    const __m256 s = _mm256_set1_ps(w->act_scale);
    const int act = w->act;
    for (int it = 0; it < nt; it++) {
        const size_t t = t0 + (size_t)it;
        const int ty = (int)(t / (size_t)tw), tx = (int)(t % (size_t)tw);
        const int ny = w->out_h - 4 * ty < 4 ? w->out_h - 4 * ty : 4, nx = w->out_w - 4 * tx < 4 ? w->out_w - 4 * tx : 4;
        float *o00 = out + (ptrdiff_t)(4 * ty) * w->out_row + (ptrdiff_t)(4 * tx) * w->out_pix;
        const float *src = mm + (size_t)it * c;
        int k = 0;
        for (; k + 8 <= c; k += 8) {
            __m256 r[4][6];
            for (int j = 0; j < 6; j++) {  /* Aᵀ·M, column j */
                __m256 x[6], y[4];
                for (int i = 0; i < 6; i++) x[i] = _mm256_loadu_ps(src + (size_t)(i * 6 + j) * ps + k);
                wino4_a(x, y);
                for (int i = 0; i < 4; i++) r[i][j] = y[i];
            }
            const __m256 b = bias ? _mm256_loadu_ps(bias + k) : _mm256_setzero_ps();
            for (int i = 0; i < ny; i++) {  /* (Aᵀ·M)·A, row i */
                __m256 y[4];
                wino4_a(r[i], y);
                for (int j = 0; j < nx; j++)
                    _mm256_storeu_ps(o00 + i * w->out_row + j * w->out_pix + k, cv_act256(_mm256_add_ps(y[j], b), act, s));
            }
        }
        for (; k < c; k++) {
            float r[4][6];
            for (int j = 0; j < 6; j++) {
                float x[6], y[4];
                for (int i = 0; i < 6; i++) x[i] = src[(size_t)(i * 6 + j) * ps + k];
                wino4_a1(x, y);
                for (int i = 0; i < 4; i++) r[i][j] = y[i];
            }
            const float b = bias ? bias[k] : 0.0f;
            for (int i = 0; i < ny; i++) {
                float y[4];
                wino4_a1(r[i], y);
                for (int j = 0; j < nx; j++) o00[i * w->out_row + j * w->out_pix + k] = cv_act1(y[j] + b, act, w->act_scale);
            }
        }
    }
}

/* The products of one position: M[i][·] = V[i][·]·U for nt tiles (rows vrow / mrow floats apart),
 * U packed as fk_conv2d_pack packs a 1×1 convolution: blocks of 16 output channels, each
 * [cin][16]. np (≤ 6) tiles × 16 channels of accumulators; nothing else to do per tile (no bias,
 * no activation, no channel tail), so the tile's fixed cost stays small next to its cin steps. */
FK_INLINE void wino_tile(const float *v, size_t vrow, const float *u, int cin, float *m, size_t mrow, const int np,
                         const float *pf) {
#define DECL(i) const float *q##i = v + (size_t)(i) * vrow; __m256 a##i##0 = _mm256_setzero_ps(), a##i##1 = a##i##0;
    CV_P6(DECL)
#undef DECL
    for (int ic = 0; ic < cin; ic++) {
        const __m256 w0 = _mm256_load_ps(u), w1 = _mm256_load_ps(u + 8);
        u += 16;
        if (pf) _mm_prefetch((const char *)(pf + (size_t)ic * 16), _MM_HINT_T1);
#define STEP(i) if (np > i) { const __m256 x = _mm256_broadcast_ss(q##i + ic); \
        a##i##0 = _mm256_fmadd_ps(x, w0, a##i##0); a##i##1 = _mm256_fmadd_ps(x, w1, a##i##1); }
        CV_P6(STEP)
#undef STEP
    }
#define STORE(i) if (np > i) { _mm256_storeu_ps(m + (size_t)(i) * mrow, a##i##0); _mm256_storeu_ps(m + (size_t)(i) * mrow + 8, a##i##1); }
    CV_P6(STORE)
#undef STORE
}

static void wino_products(const float *v, size_t vrow, const float *u, int cin, int cout, float *m, size_t mrow, int nt,
                          const float *next) {
    const int groups = (nt + 5) / 6;
    for (int c0 = 0; c0 < cout; c0 += 16, u += (size_t)cin * 16, next = next ? next + (size_t)cin * 16 : NULL) {
        int i0 = 0;
        for (int gi = 0; gi < groups; gi++) {  /* tiles in groups of as equal sizes as possible */
            const int sz = nt / groups + (gi < nt % groups);
            const float *vi = v + (size_t)i0 * vrow;
            float *mi = m + (size_t)i0 * mrow + c0;
#define TILE(np) wino_tile(vi, vrow, u, cin, mi, mrow, np, gi == 0 ? next : NULL)
            CV_BY_SIZE6(sz, TILE)
#undef TILE
            i0 += sz;
        }
    }
}

void fk_wino_run(const fk_wino *w, size_t lo, size_t hi, float *scratch) {
    const int mt = wino_m(w->tile), np = wino_positions(w->tile);
    const int th = (w->out_h + mt - 1) / mt, tw = (w->out_w + mt - 1) / mt;
    const size_t ch = wino_chunk(w), tiles = (size_t)th * tw, chunks = (tiles + ch - 1) / ch;
    if (chunks == 0) return;
    const int cin = w->cin_g, cout = w->cout_g;
    const size_t ps = wino_pos_size(cin, cout);
    const size_t vs = wino_stride(ch, cin), ms = wino_stride(ch, cout);
    float *v = scratch, *m = scratch + (size_t)np * vs;
    for (size_t task = lo; task < hi; task++) {
        const int g = (int)(task / chunks);
        if (g >= w->groups) return;
        const size_t t0 = (task % chunks) * ch;
        const int nt = (int)(tiles - t0 < ch ? tiles - t0 : ch);
        if (mt == 4) wino4_input(w, w->in + (ptrdiff_t)g * cin, cin, tw, t0, nt, vs, v);
        else wino_input(w, w->in + (ptrdiff_t)g * cin, cin, tw, t0, nt, vs, v);
        for (int pos = 0; pos < np; pos++) {
            if (cout % 16 == 0) {
                /* The next position's filters (the next group's first after the last) are prefetched
                 * during these products: they come from memory, and waiting for them stalls the FMAs. */
                const size_t nextpos = (size_t)g * np + pos + 1;
                wino_products(v + (size_t)pos * vs, (size_t)cin, w->weight + ((size_t)g * np + pos) * ps, cin, cout,
                              m + (size_t)pos * ms, (size_t)cout, nt,
                              nextpos < (size_t)w->groups * np ? w->weight + nextpos * ps : NULL);
                continue;
            }
            fk_conv2d c = {
                .in = v + (size_t)pos * vs, .in_row = (ptrdiff_t)nt * cin, .in_pix = cin,
                .weight = w->weight + ((size_t)g * np + pos) * ps, .bias = NULL,
                .out = m + (size_t)pos * ms, .out_row = (ptrdiff_t)nt * cout, .out_pix = cout,
                .out_h = 1, .out_w = nt, .kh = 1, .kw = 1, .stride = 1, .groups = 1, .cin_g = cin, .cout_g = cout,
                .act = FK_ACT_NONE, .act_scale = 1.0f,
            };
            fk_conv2d_run(&c, 0, fk_conv2d_tasks(&c));
        }
        const float *bias = w->bias ? w->bias + (size_t)g * cout : NULL;
        if (mt == 4) wino4_output(w, m, cout, tw, t0, nt, ms, bias, w->out + (ptrdiff_t)g * cout);
        else wino_output(w, m, cout, tw, t0, nt, ms, bias, w->out + (ptrdiff_t)g * cout);
    }
}
