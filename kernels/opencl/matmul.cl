/* Linear layers y = alpha·act(x·Wᵀ + b) (+ y when accumulate), W [N, K] in
 * PyTorch layout (row n = output n), x [M, K], y [M, N], every matrix with
 * its own row stride, so a layer can read a slice of a fused activation
 * (e.g. q of a qkv row) and write straight into a KV cache or add into the
 * residual stream (accumulate) with no extra pass. y must not overlap x.
 * f32 accumulation throughout; weights f32, f16 or bf16 (see common.cl), or
 * affine-quantized (`_affine` kernels): uint words of `bits`-bit codes
 * [N, K·bits/32] (element k of a word at bits k·bits), f32 scales and biases
 * [N, K/group], value = scale·q + bias (docs/model-format.md); whole
 * matrices only (no offset, row stride K), K a multiple of the group. */

/* Weight (n, k) of an affine-quantized matrix. */
static inline float load_affine(const __global uchar *w, const __global float *sc, const __global float *bi,
                                int bits, int group, int K, int n, int k) {
    const int per = 32 / bits;
    const uint word = ((const __global uint *)w)[(ulong)n * (K / per) + k / per];
    const uint q = (word >> ((k % per) * bits)) & ((1u << bits) - 1u);
    const ulong g = (ulong)n * (K / group) + k / group;
    return fma(sc[g], (float)q, bi[g]);
}

/* Weights (n, k..k+3), k a multiple of 4: one word, one group (group ≥ 32). */
static inline float4 load_affine4(const __global uchar *w, const __global float *sc, const __global float *bi,
                                  int bits, int group, int K, int n, int k) {
    const int per = 32 / bits;
    const uint word = ((const __global uint *)w)[(ulong)n * (K / per) + k / per];
    const uint sh = (uint)((k % per) * bits), mask = (1u << bits) - 1u;
    const float4 q = (float4)((float)((word >> sh) & mask), (float)((word >> (sh + bits)) & mask),
                              (float)((word >> (sh + 2 * bits)) & mask), (float)((word >> (sh + 3 * bits)) & mask));
    const ulong g = (ulong)n * (K / group) + k / group;
    return q * sc[g] + bi[g];
}

/* ---- GEMM: prefill and the vision encoder (M > a few rows) ----
 * A 64×64 output tile per 16×16 work-group, 4×4 outputs per work-item,
 * K in steps of 16 through local memory. Loads outside the matrices read
 * as zero and stores are bounds-checked, so any M, N, K works. */
#define GEMM_TS 64
#define GEMM_TK 16

static inline void gemm_body(const __global float *x, ulong xoff, int ldx,
                             const __global uchar *w, ulong woff, int ldw, int wt,
                             const __global float *bias, ulong boff, int has_bias,
                             __global float *y, ulong yoff, int ldy,
                             int M, int N, int K, float alpha, int accumulate, int act,
                             const __global float *sc, const __global float *bi, int bits, int group,
                             __local float (*xs)[GEMM_TS + 1], __local float (*ws)[GEMM_TS + 1]) {
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int t = ty * 16 + tx;
    const int m0 = get_group_id(1) * GEMM_TS, n0 = get_group_id(0) * GEMM_TS;
    x += xoff;
    y += yoff;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += GEMM_TK) {
        /* 64 rows × 16 columns of x and of W: 4 elements per work-item,
         * consecutive work-items on consecutive k (coalesced in a row). */
        for (int e = t; e < GEMM_TS * GEMM_TK; e += 256) {
            const int r = e / GEMM_TK, c = e % GEMM_TK, gk = k0 + c;
            const int gm = m0 + r, gn = n0 + r;
            xs[c][r] = (gm < M && gk < K) ? x[(ulong)gm * ldx + gk] : 0.0f;
            ws[c][r] = (gn < N && gk < K) ? (bits ? load_affine(w, sc, bi, bits, group, K, gn, gk)
                                                  : load_w(w, wt, woff + (ulong)gn * ldw + gk)) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < GEMM_TK; kk++) {
            float a[4], b[4];
            for (int i = 0; i < 4; i++) a[i] = xs[kk][ty + 16 * i];
            for (int j = 0; j < 4; j++) b[j] = ws[kk][tx + 16 * j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int i = 0; i < 4; i++) {
        const int gm = m0 + ty + 16 * i;
        if (gm >= M) continue;
        for (int j = 0; j < 4; j++) {
            const int gn = n0 + tx + 16 * j;
            if (gn >= N) continue;
            store_linear(y, (ulong)gm * ldy + gn, acc[i][j], bias, boff + gn, has_bias, alpha, act, accumulate);
        }
    }
}

#define GEMM_KERNEL(NAME, WT)                                                                        \
__kernel __attribute__((reqd_work_group_size(16, 16, 1)))                                            \
void NAME(const __global float *x, ulong xoff, int ldx,                                              \
          const __global uchar *w, ulong woff, int ldw,                                              \
          const __global float *bias, ulong boff, int has_bias,                                      \
          __global float *y, ulong yoff, int ldy,                                                    \
          int M, int N, int K, float alpha, int accumulate, int act) {                               \
    __local float xs[GEMM_TK][GEMM_TS + 1];                                                          \
    __local float ws[GEMM_TK][GEMM_TS + 1];                                                          \
    gemm_body(x, xoff, ldx, w, woff, ldw, WT, bias, boff, has_bias, y, yoff, ldy,                    \
              M, N, K, alpha, accumulate, act, 0, 0, 0, 0, xs, ws);                                  \
}

GEMM_KERNEL(gemm_f32, WT_F32)
GEMM_KERNEL(gemm_f16, WT_F16)
GEMM_KERNEL(gemm_bf16, WT_BF16)

/* The arguments of the other kernels, then the quantization's. */
__kernel __attribute__((reqd_work_group_size(16, 16, 1)))
void gemm_affine(const __global float *x, ulong xoff, int ldx, const __global uchar *w, ulong woff, int ldw,
                 const __global float *bias, ulong boff, int has_bias, __global float *y, ulong yoff, int ldy,
                 int M, int N, int K, float alpha, int accumulate, int act,
                 const __global float *sc, const __global float *bi, int bits, int group) {
    __local float xs[GEMM_TK][GEMM_TS + 1];
    __local float ws[GEMM_TK][GEMM_TS + 1];
    gemm_body(x, xoff, ldx, w, woff, ldw, WT_F32, bias, boff, has_bias, y, yoff, ldy,
              M, N, K, alpha, accumulate, act, sc, bi, bits, group, xs, ws);
}

/* ---- GEMV: decode (1 to GEMV_ROWS rows) ----
 * One work-group of 128 per output n streams row n of W once, four weights
 * per load, for all (up to 4) rows of x, then reduces in local memory:
 * decoding is bound by reading W, so each weight is read exactly once and
 * consecutive work-items read consecutive 16-byte chunks. */
#define GEMV_WG 128
#define GEMV_ROWS 4

static inline void gemv_body(const __global float *x, ulong xoff, int ldx,
                             const __global uchar *w, ulong woff, int ldw, int wt,
                             const __global float *bias, ulong boff, int has_bias,
                             __global float *y, ulong yoff, int ldy,
                             int M, int N, int K, float alpha, int accumulate, int act,
                             const __global float *sc, const __global float *bi, int bits, int group,
                             __local float *red) {
    const int lid = get_local_id(0);
    const int n = get_group_id(0);
    /* The grid has exactly N groups: no bounds return (PoCL mishandles a
     * return ahead of barriers). */
    x += xoff;
    y += yoff;
    const ulong wrow = woff + (ulong)n * ldw;
    float acc[GEMV_ROWS];
    for (int r = 0; r < GEMV_ROWS; r++) acc[r] = 0.0f;
    const int k4 = K & ~3;
    for (int k = lid * 4; k < k4; k += GEMV_WG * 4) {
        const float4 wv = bits ? load_affine4(w, sc, bi, bits, group, K, n, k) : load_w4(w, wt, wrow + k);
        for (int r = 0; r < GEMV_ROWS; r++)
            if (r < M) acc[r] += dot(wv, vload4(0, x + (ulong)r * ldx + k));
    }
    for (int k = k4 + lid; k < K; k += GEMV_WG) {
        const float wv = bits ? load_affine(w, sc, bi, bits, group, K, n, k) : load_w(w, wt, wrow + k);
        for (int r = 0; r < GEMV_ROWS; r++)
            if (r < M) acc[r] = fma(wv, x[(ulong)r * ldx + k], acc[r]);
    }
    for (int r = 0; r < GEMV_ROWS; r++) red[r * GEMV_WG + lid] = acc[r];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = GEMV_WG / 2; s > 0; s >>= 1) {
        if (lid < s)
            for (int r = 0; r < GEMV_ROWS; r++) red[r * GEMV_WG + lid] += red[r * GEMV_WG + lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid < M) {
        store_linear(y, (ulong)lid * ldy + n, red[lid * GEMV_WG], bias, boff + n, has_bias, alpha, act, accumulate);
    }
}

#define GEMV_KERNEL(NAME, WT)                                                                        \
__kernel __attribute__((reqd_work_group_size(GEMV_WG, 1, 1)))                                        \
void NAME(const __global float *x, ulong xoff, int ldx,                                              \
          const __global uchar *w, ulong woff, int ldw,                                              \
          const __global float *bias, ulong boff, int has_bias,                                      \
          __global float *y, ulong yoff, int ldy,                                                    \
          int M, int N, int K, float alpha, int accumulate, int act) {                               \
    __local float red[GEMV_ROWS * GEMV_WG];                                                          \
    gemv_body(x, xoff, ldx, w, woff, ldw, WT, bias, boff, has_bias, y, yoff, ldy,                    \
              M, N, K, alpha, accumulate, act, 0, 0, 0, 0, red);                                     \
}

GEMV_KERNEL(gemv_f32, WT_F32)
GEMV_KERNEL(gemv_f16, WT_F16)
GEMV_KERNEL(gemv_bf16, WT_BF16)

__kernel __attribute__((reqd_work_group_size(GEMV_WG, 1, 1)))
void gemv_affine(const __global float *x, ulong xoff, int ldx, const __global uchar *w, ulong woff, int ldw,
                 const __global float *bias, ulong boff, int has_bias, __global float *y, ulong yoff, int ldy,
                 int M, int N, int K, float alpha, int accumulate, int act,
                 const __global float *sc, const __global float *bi, int bits, int group) {
    __local float red[GEMV_ROWS * GEMV_WG];
    gemv_body(x, xoff, ldx, w, woff, ldw, WT_F32, bias, boff, has_bias, y, yoff, ldy,
              M, N, K, alpha, accumulate, act, sc, bi, bits, group, red);
}
