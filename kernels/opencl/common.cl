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
