/* Hand-written AVX2/FMA convolution kernels for the NFNet vision encoder
 * (Sources/FlamingoCore/CPU/Convolution.swift drives them, docs/nfnet.md
 * describes the layouts). Internal to libflamingo, not exported.
 *
 * Activations are NHWC: pixel (y, x) of a plane starts at
 * base + y*row + x*pix and holds its channels contiguously. Convolutions
 * read an input that is already zero-padded (TF "SAME" padding is laid out
 * by the caller), so the kernels have no bounds checks: output pixel
 * (oy, ox) reads the padded rows oy*stride + ky and columns ox*stride + kx.
 *
 * Every kernel has scalar/masked tails: no size needs to be a multiple of
 * the vector width, and nothing outside the described outputs is written. */
#ifndef FLAMINGO_CONV_KERNELS_H
#define FLAMINGO_CONV_KERNELS_H
#include <stddef.h>

/* Activations applied by fk_nf_act and the convolution epilogue; the result
 * is multiplied by a scale (NFNet's gamma, times beta where it applies). */
enum {
    FK_ACT_NONE = 0,      /* y = x·scale */
    FK_ACT_GELU = 1,      /* y = 0.5·x·(1 + erf(x/√2))·scale (exact GELU) */
    FK_ACT_GELU_TANH = 2  /* y = 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))·scale */
};

/* y[i] = act(x[i])·scale; x == y is allowed. */
void fk_nf_act(const float *x, float *y, size_t n, int act, float scale);

/* A direct convolution (any kernel size, stride, groups) over a padded NHWC
 * input. Weights are packed by fk_conv2d_pack: per group, output channels in
 * blocks of 16 (the last block of a group 8 or 16 wide, zero-filled past
 * cout_g), each block as [kh][kw][cin_g][16 or 8]. The kernel keeps 6
 * output pixels × 16 channels (or 8 × 8) of accumulators in registers and
 * broadcasts one input value per FMA pair. */
typedef struct {
    const float *in;          /* padded input, channel 0 of pixel (0, 0) */
    ptrdiff_t in_row, in_pix; /* floats between padded rows / pixels */
    const float *weight;      /* packed weights */
    const float *bias;        /* [groups·cout_g] or NULL */
    float *out;               /* output, channel 0 of pixel (0, 0) */
    ptrdiff_t out_row, out_pix;
    int out_h, out_w;
    int kh, kw, stride;
    int groups, cin_g, cout_g;
    int act;                  /* FK_ACT_*, applied to conv + bias */
    float act_scale;
} fk_conv2d;

/* Floats the packed weights of such a convolution take. */
size_t fk_conv2d_packed_size(int kh, int kw, int groups, int cin_g, int cout_g);
/* w: PyTorch layout [groups·cout_g][cin_g][kh][kw]. */
void fk_conv2d_pack(const float *w, int kh, int kw, int groups, int cin_g, int cout_g, float *packed);
/* The work is split into independent tasks (group × channel block × run of
 * output pixels); fk_conv2d_run computes tasks [lo, hi). */
size_t fk_conv2d_tasks(const fk_conv2d *c);
void fk_conv2d_run(const fk_conv2d *c, size_t lo, size_t hi);

/* Winograd F(m×m, 3×3), m = tile = 2 or 4, for stride-1 3×3 convolutions over the same padded
 * input as fk_conv2d (cin = groups·cin_g input channels, cout = groups·cout_g outputs). Filters
 * are transformed (U = G·g·Gᵀ) and packed at load: fk_wino_packed_size floats, tmp holds
 * (m+2)²·groups·cout_g·cin_g. A task is one group × a run of m×m output tiles; fk_wino_run needs
 * fk_wino_scratch_size floats of scratch per concurrent caller. The padded input is read up to in_h × in_w (zero past it),
 * outputs are written only inside out_h × out_w. */
typedef struct {
    const float *in;
    ptrdiff_t in_row, in_pix;
    int in_h, in_w;           /* padded extents */
    const float *weight;      /* fk_wino_pack */
    const float *bias;        /* [groups·cout_g] or NULL */
    float *out;
    ptrdiff_t out_row, out_pix;
    int out_h, out_w;
    int groups, cin_g, cout_g;
    int act;
    float act_scale;
    int tile;                 /* m: 2 or 4 */
    int chunk;                /* output tiles per task (0: 48) */
} fk_wino;

size_t fk_wino_packed_size(int tile, int groups, int cin_g, int cout_g);
void fk_wino_pack(const float *w, int tile, int groups, int cin_g, int cout_g, float *packed, float *tmp);
size_t fk_wino_tasks(const fk_wino *w);
size_t fk_wino_scratch_size(const fk_wino *w);
void fk_wino_run(const fk_wino *w, size_t lo, size_t hi, float *scratch);

/* 2×2 average pool, stride 2, ceil mode, padding excluded from the count
 * (PyTorch AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)):
 * in [h][w][c] contiguous → out [⌈h/2⌉][⌈w/2⌉][c] contiguous. Output rows
 * [row_lo, row_hi). */
void fk_avgpool2x2(const float *in, int h, int w, int c, float *out, int row_lo, int row_hi);

/* out[j] = mean over n pixels of in[p·c + j] for j < c (in contiguous). */
void fk_channel_mean(const float *in, size_t n, size_t c, float *out);

/* out[p][c] = sc[p][c] + h[p][c]·scale[c] for n pixels of c channels
 * (contiguous); out may be sc or h. */
void fk_scale_add(const float *h, const float *scale, const float *sc, float *out, size_t n, size_t c);

#endif
