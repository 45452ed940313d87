/* Row normalisations, one work-group of 128 per row. Same arithmetic as the
 * CPU (Sources/FlamingoCore/CPU/Norm.swift): LayerNorm with the two-pass
 * biased variance of PyTorch, RMSNorm as x·(1/sqrt(mean(x²)+eps))·w.
 * x and y may be the same rows (each element is read before it is written
 * by the same work-item). */
#define NORM_WG 128

__kernel __attribute__((reqd_work_group_size(NORM_WG, 1, 1)))
void layer_norm(const __global float *x, ulong xoff, int ldx,
                __global float *y, ulong yoff, int ldy,
                const __global float *weight, ulong woff, int has_weight,
                const __global float *bias, ulong boff, int has_bias,
                int dim, float eps) {
    __local float buf[NORM_WG];
    const int lid = get_local_id(0);
    const __global float *xr = x + xoff + (ulong)get_group_id(0) * ldx;
    __global float *yr = y + yoff + (ulong)get_group_id(0) * ldy;
    float s = 0.0f;
    for (int i = lid; i < dim; i += NORM_WG) s += xr[i];
    const float mean = wg_sum(s, buf) / (float)dim;
    float ss = 0.0f;
    for (int i = lid; i < dim; i += NORM_WG) { const float d = xr[i] - mean; ss = fma(d, d, ss); }
    const float inv = 1.0f / sqrt(wg_sum(ss, buf) / (float)dim + eps);
    for (int i = lid; i < dim; i += NORM_WG) {
        float v = (xr[i] - mean) * inv;
        if (has_weight) v *= weight[woff + i];
        if (has_bias) v += bias[boff + i];
        yr[i] = v;
    }
}

__kernel __attribute__((reqd_work_group_size(NORM_WG, 1, 1)))
void rms_norm(const __global float *x, ulong xoff, int ldx,
              __global float *y, ulong yoff, int ldy,
              const __global float *weight, ulong woff,
              int dim, float eps) {
    __local float buf[NORM_WG];
    const int lid = get_local_id(0);
    const __global float *xr = x + xoff + (ulong)get_group_id(0) * ldx;
    __global float *yr = y + yoff + (ulong)get_group_id(0) * ldy;
    float ss = 0.0f;
    for (int i = lid; i < dim; i += NORM_WG) ss = fma(xr[i], xr[i], ss);
    const float inv = 1.0f / sqrt(wg_sum(ss, buf) / (float)dim + eps);
    for (int i = lid; i < dim; i += NORM_WG) yr[i] = xr[i] * inv * weight[woff + i];
}
