/* NFNet ops (docs/nfnet.md, docs/opencl.md): direct 2-D convolution with
 * TF-SAME padding computed in the kernel, the activation act(x)·scale,
 * 2×2 average pooling (ceil mode, padding not counted), the squeeze-excite
 * channel mean and the gated residual add. f32 throughout.
 *
 * Activation planes: element (y, x, c) of a plane is at
 * off + y·row + x·pix + c·ch (ch = 1 for NHWC; the first conv reads the
 * [3, H, W] pixels directly with pix = 1, ch = H·W). Every kernel has a
 * fixed work-group size and bounds-checks its indices (only the channel
 * mean has barriers, and no return ahead of them). The 1×1 convolutions
 * run as `linear` (matmul.cl) over the pixels, followed by `nf_act`. */

#define NF_WG 64

#define NF_ACT_NONE 0
#define NF_ACT_GELU 1
#define NF_ACT_GELU_TANH 2
#define NF_ACT_RELU 3

/* act(v)·scale, the same formulas as the CPU kernel (kernels/cpu/conv.c,
 * cv_act256): GELU with erf from Eigen's / XLA's rational approximation on
 * [−4, 4]; the tanh form as x·σ(2u), without the cancellation of 1 + tanh. */
static inline float nf_act1(float v, int act, float scale) {
    if (act == NF_ACT_GELU) {
        const float x = v * 0.70710678118654752f;
        const float z = fmax(fmin(x, 4.0f), -4.0f);
        const float z2 = z * z;
        float p = fma(z2, -2.72614225801306e-10f, 2.77068142495902e-08f);
        p = fma(z2, p, -2.10102402082508e-06f);
        p = fma(z2, p, -5.69250639462346e-05f);
        p = fma(z2, p, -7.34990630326855e-04f);
        p = fma(z2, p, -2.95459980854025e-03f);
        p = fma(z2, p, -1.60960333262415e-02f);
        p = z * p;
        float q = fma(z2, -1.45660718464996e-05f, -2.13374055278905e-04f);
        q = fma(z2, q, -1.68282697438203e-03f);
        q = fma(z2, q, -7.37332916720468e-03f);
        q = fma(z2, q, -1.42647390514189e-02f);
        const float hx = 0.5f * v;
        v = fma(hx, p / q, hx);
    } else if (act == NF_ACT_GELU_TANH) {
        const float u2 = v * -1.5957691216057308f * fma(v * v, 0.044715f, 1.0f);
        v = v / (1.0f + exp(fmin(u2, 80.0f)));
    } else if (act == NF_ACT_RELU) {
        v = fmax(v, 0.0f);
    }
    return v * scale;
}

/* y = act(conv(x) + bias)·scale, one work-item per output element (pixel p,
 * channel oc), over a flat grid of out_h·out_w·cout (rounded up to NF_WG),
 * channels fastest: consecutive work-items read consecutive weights (the
 * [k·k][cin_g][cout] layout, w_oc = 1) and the same input pixel. Weight
 * element (oc, ic, ky·k + kx) is at woff + oc·w_oc + ic·w_ic + (ky·k + kx)·w_kk,
 * so PyTorch's [cout][cin_g][k][k] works too (w_oc = cin_g·k·k, w_ic = k·k,
 * w_kk = 1). Input pixel (oy·stride + ky − pad_top, ox·stride + kx − pad_left)
 * outside the in_h × in_w input reads as zero (TF-SAME padding). */
__kernel __attribute__((reqd_work_group_size(NF_WG, 1, 1)))
void conv2d(const __global float *x, ulong xoff, int x_row, int x_pix, int x_ch, int in_h, int in_w,
            const __global float *w, ulong woff, int w_oc, int w_ic, int w_kk,
            const __global float *bias, ulong boff, int has_bias,
            __global float *y, ulong yoff, int y_row, int y_pix,
            int out_h, int out_w, int cout, int k, int stride, int pad_top, int pad_left,
            int cin_g, int cout_g, int act, float scale) {
    const ulong gid = get_global_id(0);
    const ulong n = (ulong)out_h * (ulong)out_w * (ulong)cout;
    if (gid >= n) return;
    const int oc = (int)(gid % (ulong)cout);
    const int p = (int)(gid / (ulong)cout);
    const int oy = p / out_w, ox = p % out_w;
    const int iy0 = oy * stride - pad_top, ix0 = ox * stride - pad_left;
    const int g = oc / cout_g;
    const __global float *xg = x + xoff + (long)g * cin_g * x_ch;
    const __global float *wo = w + woff + (long)oc * w_oc;
    float acc = 0.0f;
    for (int ky = 0; ky < k; ky++) {
        const int iy = iy0 + ky;
        if (iy < 0 || iy >= in_h) continue;
        for (int kx = 0; kx < k; kx++) {
            const int ix = ix0 + kx;
            if (ix < 0 || ix >= in_w) continue;
            const __global float *xp = xg + (long)iy * x_row + (long)ix * x_pix;
            const __global float *wp = wo + (long)(ky * k + kx) * w_kk;
            for (int ic = 0; ic < cin_g; ic++) acc = fma(xp[(long)ic * x_ch], wp[(long)ic * w_ic], acc);
        }
    }
    if (has_bias) acc += bias[boff + oc];
    y[yoff + (long)oy * y_row + (long)ox * y_pix + oc] = nf_act1(acc, act, scale);
}

/* Plane kernels: a (c rounded up to NF_WG) × w × h grid, channels fastest. */
#define NF_PLANE_INDEX                     \
    const int c = get_global_id(0);        \
    const int px = get_global_id(1);       \
    const int py = get_global_id(2);       \
    if (c >= cols) return;

/* y = act(x)·scale over an h × w × cols plane (in place when y is x). */
__kernel __attribute__((reqd_work_group_size(NF_WG, 1, 1)))
void nf_act(const __global float *x, ulong xoff, int x_row, int x_pix,
            __global float *y, ulong yoff, int y_row, int y_pix, int cols, int act, float scale) {
    NF_PLANE_INDEX
    const float v = x[xoff + (long)py * x_row + (long)px * x_pix + c];
    y[yoff + (long)py * y_row + (long)px * y_pix + c] = nf_act1(v, act, scale);
}

/* 2×2 average pool, stride 2, ceil mode, padding not counted (timm's
 * DownsampleAvg): output pixel (py, px) of an in_h × in_w input; the grid
 * covers the ⌈in_h/2⌉ × ⌈in_w/2⌉ output. The same summation order as the
 * CPU kernel. */
__kernel __attribute__((reqd_work_group_size(NF_WG, 1, 1)))
void nf_avgpool2x2(const __global float *x, ulong xoff, int x_row, int x_pix, int in_h, int in_w,
                   __global float *y, ulong yoff, int y_row, int y_pix, int cols) {
    NF_PLANE_INDEX
    const int y0 = 2 * py, x0 = 2 * px;
    const int ny = y0 + 1 < in_h ? 2 : 1, nx = x0 + 1 < in_w ? 2 : 1;
    const __global float *r0 = x + xoff + (long)y0 * x_row + (long)x0 * x_pix + c;
    float s = r0[0];
    if (nx == 2) s += r0[x_pix];
    if (ny == 2) {
        s += r0[x_row];
        if (nx == 2) s += r0[x_row + x_pix];
    }
    y[yoff + (long)py * y_row + (long)px * y_pix + c] = s * (1.0f / (float)(ny * nx));
}

/* mean[c] over the h × w pixels of a plane (the squeeze-excite squeeze).
 * A work-group of NF_MEAN_C channels × NF_MEAN_L lanes: lane l sums the
 * pixels l, l + NF_MEAN_L, … with Kahan compensation (long sums stay
 * accurate; the kernels build without fast-math), then the lanes are added
 * in local memory. The grid is (c rounded up to NF_MEAN_C) × NF_MEAN_L;
 * work-items past c compute on channel 0 and store nothing (no return ahead
 * of a barrier: PoCL mishandles it). */
#define NF_MEAN_C 16
#define NF_MEAN_L 16
__kernel __attribute__((reqd_work_group_size(NF_MEAN_C, NF_MEAN_L, 1)))
void nf_channel_mean(const __global float *x, ulong xoff, int x_row, int x_pix, int h, int w,
                     __global float *mean, ulong moff, int cols) {
    __local float part[NF_MEAN_L][NF_MEAN_C];
    const int lc = get_local_id(0), lane = get_local_id(1);
    const int c0 = get_global_id(0);
    const int c = c0 < cols ? c0 : 0;
    const int n = h * w;
    float sum = 0.0f, comp = 0.0f;
    for (int p = lane; p < n; p += NF_MEAN_L) {
        const int yy = p / w, xx = p % w;
        const float v = x[xoff + (long)yy * x_row + (long)xx * x_pix + c] - comp;
        const float t = sum + v;
        comp = (t - sum) - v;
        sum = t;
    }
    part[lane][lc] = sum;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = NF_MEAN_L / 2; s > 0; s >>= 1) {
        if (lane < s) part[lane][lc] += part[lane + s][lc];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lane == 0 && c0 < cols) mean[moff + c0] = n > 0 ? part[0][lc] * (1.0f / (float)n) : 0.0f;
}

/* The end of a NormFreeBlock: out = h·g[c] + shortcut, where
 * g[c] = attn_gain·σ(se[c])·common with squeeze-excite logits se (has_se),
 * else common (= skipinit_gain·α). out may be the shortcut (in place). */
__kernel __attribute__((reqd_work_group_size(NF_WG, 1, 1)))
void nf_scale_add(const __global float *hx, ulong hoff, int h_row, int h_pix,
                  const __global float *se, ulong soff, int has_se, float attn_gain, float common,
                  const __global float *sc, ulong scoff, int sc_row, int sc_pix,
                  __global float *out, ulong ooff, int o_row, int o_pix, int cols) {
    NF_PLANE_INDEX
    const float g = has_se ? attn_gain * (1.0f / (1.0f + exp(-se[soff + c]))) * common : common;
    const float v = hx[hoff + (long)py * h_row + (long)px * h_pix + c];
    const float s = sc[scoff + (long)py * sc_row + (long)px * sc_pix + c];
    out[ooff + (long)py * o_row + (long)px * o_pix + c] = fma(v, g, s);
}
