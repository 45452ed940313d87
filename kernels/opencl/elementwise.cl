/* Element-wise ops over a [rows, cols] region of strided rows. Launched as
 * a (cols rounded up to 64) × rows grid with work-groups of 64×1, so PoCL
 * compiles one work-group function per kernel whatever the shape; the
 * column bound is checked here. */
#define EW_WG 64
#define EW_INDEX                                   \
    const int c = get_global_id(0);                \
    const ulong r = get_global_id(1);              \
    if (c >= cols) return;

/* Exact GELU (common.cl). */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void gelu(const __global float *x, ulong xoff, int ldx, __global float *y, ulong yoff, int ldy, int cols) {
    EW_INDEX
    y[yoff + r * ldy + c] = act_gelu(x[xoff + r * ldx + c]);
}

/* QuickGELU of the OpenAI CLIP weights: x·σ(1.702·x). */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void quick_gelu(const __global float *x, ulong xoff, int ldx, __global float *y, ulong yoff, int ldy, int cols) {
    EW_INDEX
    y[yoff + r * ldy + c] = act_quick_gelu(x[xoff + r * ldx + c]);
}

/* SwiGLU: y = silu(gate)·up; y may be gate or up. */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void swiglu(const __global float *g, ulong goff, int ldg, const __global float *u, ulong uoff, int ldu,
            __global float *y, ulong yoff, int ldy, int cols) {
    EW_INDEX
    const float v = g[goff + r * ldg + c];
    y[yoff + r * ldy + c] = v / (1.0f + exp(-v)) * u[uoff + r * ldu + c];
}

/* y += a·x (a = 1: the residual add; a = tanh(gate): the gated adds of
 * GATED XATTN-DENSE). */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void axpy(const __global float *x, ulong xoff, int ldx, __global float *y, ulong yoff, int ldy, int cols, float a) {
    EW_INDEX
    __global float *d = y + yoff + r * ldy + c;
    *d += a * x[xoff + r * ldx + c];
}

/* y = a·x (in place when y is x). */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void scale(const __global float *x, ulong xoff, int ldx, __global float *y, ulong yoff, int ldy, int cols, float a) {
    EW_INDEX
    y[yoff + r * ldy + c] = a * x[xoff + r * ldx + c];
}

/* y = x: gathers a column slice of strided rows (e.g. k and v of a fused
 * qkv row into the KV cache). The regions must not overlap. */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void copy_rows(const __global float *x, ulong xoff, int ldx, __global float *y, ulong yoff, int ldy, int cols) {
    EW_INDEX
    y[yoff + r * ldy + c] = x[xoff + r * ldx + c];
}

/* Two row copies of the same shape in one launch (a step's keys and values
 * into the KV cache): grid dimension 2 picks the pair. */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void copy_rows2(const __global float *x0, ulong x0off, int ldx0, __global float *y0, ulong y0off, int ldy0,
                const __global float *x1, ulong x1off, int ldx1, __global float *y1, ulong y1off, int ldy1, int cols) {
    EW_INDEX
    if (get_global_id(2) == 0) y0[y0off + r * ldy0 + c] = x0[x0off + r * ldx0 + c];
    else y1[y1off + r * ldy1 + c] = x1[x1off + r * ldx1 + c];
}
