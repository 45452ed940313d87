/* Shared by every op family: prepended to each family's source before it is
 * built (see Sources/FlamingoCore/OpenCL/CLPrograms.swift).
 *
 * OpenCL C 1.2 only: NVIDIA's platform compiles OpenCL C 1.2 and has no
 * cl_khr_fp16, so 16-bit weights arrive as raw 16-bit words and are widened
 * here: IEEE half through vload_half (legal on a `half *` without the
 * extension), bfloat16 by a 16-bit shift into the high half of a float.
 *
 * Offsets are element offsets passed as ulong (a buffer may hold a whole
 * model); indices inside one matrix are int (the host checks they fit). */

#define WT_F32  0
#define WT_F16  1
#define WT_BF16 2

/* Element i of a weight array of type wt (a literal at every call site, so
 * the branch folds away after inlining). */
static inline float load_w(const __global uchar *w, int wt, ulong i) {
    if (wt == WT_F16) return vload_half(i, (const __global half *)w);
    if (wt == WT_BF16) return as_float((uint)((const __global ushort *)w)[i] << 16);
    return ((const __global float *)w)[i];
}

/* Four consecutive weights from element i (no alignment beyond the element's). */
static inline float4 load_w4(const __global uchar *w, int wt, ulong i) {
    /* Byte arithmetic, then the cast: arithmetic on a half pointer is not
     * portable without cl_khr_fp16. */
    if (wt == WT_F16) return vload_half4(0, (const __global half *)(w + 2 * i));
    if (wt == WT_BF16) {
        ushort4 b = vload4(0, (const __global ushort *)w + i);
        return as_float4(convert_uint4(b) << 16);
    }
    return vload4(0, (const __global float *)w + i);
}

/* Sum / max over a 1-D work-group whose size n is a power of two. Every
 * work-item must call them (they hold barriers); buf has n floats and is
 * free again on return. */
static inline float wg_sum(float v, __local float *buf) {
    const int lid = get_local_id(0), n = get_local_size(0);
    buf[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n >> 1; s > 0; s >>= 1) {
        if (lid < s) buf[lid] += buf[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = buf[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

static inline float wg_max(float v, __local float *buf) {
    const int lid = get_local_id(0), n = get_local_size(0);
    buf[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = n >> 1; s > 0; s >>= 1) {
        if (lid < s) buf[lid] = fmax(buf[lid], buf[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = buf[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* erfc(z) for z >= 0: the Numerical Recipes Chebyshev fit (relative error
 * < 1.2e-7), the same formula as the CPU kernel (kernels/cpu), so both
 * backends round alike; PoCL's library erfc is also ~50x slower than this. */
static inline float erfc_nonneg(float z) {
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
static inline float act_gelu(float v) {
    const float e = erfc_nonneg(fabs(v) * M_SQRT1_2_F);
    return signbit(v) ? v * (0.5f * e) : v * fma(-0.5f, e, 1.0f);
}

/* QuickGELU of the OpenAI CLIP weights: x·σ(1.702·x). */
static inline float act_quick_gelu(float v) { return v / (1.0f + exp(-1.702f * v)); }

/* The activation epilogue of the matrix kernels: 0 none, 1 GELU, 2 QuickGELU. */
#define ACT_NONE 0
#define ACT_GELU 1
#define ACT_QUICK_GELU 2
static inline float activate(float v, int act) {
    return act == ACT_GELU ? act_gelu(v) : act == ACT_QUICK_GELU ? act_quick_gelu(v) : v;
}

/* The matrix kernels' epilogue for output element y[at] (column gn):
 * alpha·act(v + bias[gn]), stored or added to y. y is read only when
 * accumulating: it may hold garbage (NaN) otherwise. */
static inline void store_linear(__global float *y, ulong at, float v, const __global float *bias, ulong bias_at,
                                int has_bias, float alpha, int act, int accumulate) {
    if (has_bias) v += bias[bias_at];
    v = alpha * activate(v, act);
    y[at] = accumulate ? y[at] + v : v;
}
