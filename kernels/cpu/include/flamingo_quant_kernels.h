/* Matrix-vector products and row dequantization for weights stored in 16 bits
 * (f16, bf16) or as affine 8/4-bit integers per group (the MLX layout, see
 * docs/model-format.md). Internal to libflamingo, not exported.
 *
 * A weight W [rows, cols] is read where it lies (usually a memory map):
 *  - FK_W_F16 / FK_W_BF16: `w` holds rows·cols 16-bit values, row-major.
 *  - FK_W_Q8 / FK_W_Q4: `w` holds rows·cols·bits/32 little-endian 32-bit
 *    words; element k of a word sits at bits k·bits. `scales` and `biases`
 *    hold rows·(cols/group) values of type `sb_type`; element j of row r is
 *    scales[r][j/group]·q + biases[r][j/group] with q unsigned.
 * cols must be a multiple of group (32, 64 or 128) for the affine formats;
 * the caller validates shapes before building an fk_weight. */
#ifndef FLAMINGO_QUANT_KERNELS_H
#define FLAMINGO_QUANT_KERNELS_H
#include <stddef.h>
#include <stdint.h>

enum { FK_W_F16 = 1, FK_W_BF16 = 2, FK_W_Q8 = 3, FK_W_Q4 = 4 };
enum { FK_SB_F32 = 0, FK_SB_F16 = 1, FK_SB_BF16 = 2 };

typedef struct {
    const void *w;
    const void *scales;
    const void *biases;
    int format;
    int sb_type;
    long rows, cols, group;
} fk_weight;

/* The activation of an integer matrix-vector product: x quantized to int8
 * per block of `block` inputs (the weight's group: one scale per block and
 * group, so a group's integer products sum exactly before one float FMA),
 * d = max|x|/127 and q = round(x/d), plus the exact float sum of x per block.
 * For FK_W_Q4 each run of 64 inputs (32 for groups of 32) holds its even
 * elements first, then its odd ones: the order of the low and high nibbles
 * of the packed bytes. For FK_W_Q8 the order is natural.
 * Sizes: q cols bytes, d and sum cols/block floats. */
typedef struct {
    int8_t *q;
    float *d;
    float *sum;
    long cols;
    long block;
    int format;
} fk_qx;

/* Fills a (whose q, d, sum, cols, block and format are set) from x[0..cols);
 * cols must be a multiple of block, block a multiple of 32. */
void fk_quantize_x(const float *x, fk_qx *a);

/* Up to this many activation rows share each weight read in fk_gemv_rows. */
#define FK_GEMV_MAX_ROWS 4

/* y[i·y_stride + r − r0] = Σ_j W[r][j]·x[i·x_stride + j] for rows r in
 * [r0, r1) and activation rows i < m (1 ≤ m ≤ FK_GEMV_MAX_ROWS; others do
 * nothing): each weight is read once for all m.
 * 16-bit formats: exact products of the widened weights, f32 accumulation.
 * Affine formats: integer dot products of q with the quantized activations
 * a[0..m) (each prepared by fk_quantize_x from its row of x), scaled per
 * group, plus the group biases times the exact sums of x. `x` is used by the
 * 16-bit formats, `a` by the affine ones. Row i's result does not depend on m. */
void fk_gemv_rows(const fk_weight *w, const float *x, long x_stride, const fk_qx *a, long m, float *y, long y_stride,
                  long r0, long r1);

/* out[(r − r0)·cols + j] = W[r][j] in f32, for rows r in [r0, r1). */
void fk_dequant_rows(const fk_weight *w, float *out, long r0, long r1);

#endif
