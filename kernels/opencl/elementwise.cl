/* Element-wise ops over a [rows, cols] region of strided rows. Launched as
 * a (cols rounded up to 64) × rows grid with work-groups of 64×1, so PoCL
 * compiles one work-group function per kernel whatever the shape; the
 * column bound is checked here. */
#define EW_WG 64
#define EW_INDEX                                   \
    const int c = get_global_id(0);                \
    const ulong r = get_global_id(1);              \
    if (c >= cols) return;

/* erfc(z) for z >= 0: the Numerical Recipes Chebyshev fit (relative error
 * < 1.2e-7), the same formula as the CPU kernel (kernels/cpu), so both
 * backends round alike; PoCL's library erfc is also ~50x slower than this. */
static inline float erfc_pos(float z) {
    const float t = 1.0f / fma(0.5f, z, 1.0f);
    float p = 0.17087277f;
    p = fma(p, t, -0.82215223f);
    p = fma(p, t, 1.48851587f);
    p = fma(p, t, -1.13520398f);
    p = fma(p, t, 0.27886807f);
    p = fma(p, t, -0.18628806f);
    p = fma(p, t, 0.09678418f);
    p = fma(p, t, 0.37409196f);
    p = fma(p, t, 1.00002368f);
    p = fma(p, t, -1.26551223f);
    return t * exp(p - z * z);
}

/* Exact GELU, 0.5·x·(1 + erf(x/√2)), written with erfc(|x|/√2) so that the
 * negative tail keeps full relative accuracy (1 + erf cancels there):
 * x ≥ 0: x·(1 − erfc/2); x < 0: x·erfc/2. */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void gelu(const __global float *x, ulong xoff, int ldx, __global float *y, ulong yoff, int ldy, int cols) {
    EW_INDEX
    const float v = x[xoff + r * ldx + c];
    const float e = erfc_pos(fabs(v) * M_SQRT1_2_F);
    y[yoff + r * ldy + c] = signbit(v) ? v * (0.5f * e) : v * fma(-0.5f, e, 1.0f);
}

/* QuickGELU of the OpenAI CLIP weights: x·σ(1.702·x). */
__kernel __attribute__((reqd_work_group_size(EW_WG, 1, 1)))
void quick_gelu(const __global float *x, ulong xoff, int ldx, __global float *y, ulong yoff, int ldy, int cols) {
    EW_INDEX
    const float v = x[xoff + r * ldx + c];
    y[yoff + r * ldy + c] = v / (1.0f + exp(-1.702f * v));
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
