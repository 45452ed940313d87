/* Linear layers with 16-bit weights on NVIDIA tensor cores: the same
 * contract as gemm_* in matmul.cl (y = alpha·act(x·Wᵀ + b) (+ y)), with x
 * rounded to the weight's 16-bit type (f16 or bf16, round to nearest even)
 * and f32 accumulation, through PTX `mma.sync.aligned.m16n8k16.row.col`.
 *
 * Built with -DFLAMINGO_MMA_PTX on NVIDIA platforms only (inline PTX is an
 * NVIDIA extension of OpenCL C). Everywhere else `mma_16x8x16` is emulated
 * with the exact fragment layout of the PTX ISA through local memory, so the
 * kernel's tiling and fragment addressing are tested on any device (PoCL in
 * CI); on NVIDIA the library also checks the kernel against the portable one
 * before using it (OpenCLRuntime.tensorCoresVerified).
 *
 * Work-group: 128 work-items = 4 warps; tile 64 (rows of x) × 64 (outputs);
 * warp w computes rows 16w…16w+15 of the tile as eight 16×8 mma tiles; K in
 * steps of 16 through local memory (stored as 16-bit words). */
#define MMA_WG 128
#define MMA_TM 64
#define MMA_TN 64
#define MMA_TK 16
#define MMA_LD (MMA_TK + 2)   /* local row stride in 16-bit words (even: 32-bit pairs stay aligned) */

/* f32 → 16-bit word of type wt (round to nearest even); 16-bit word → f32. */
static inline ushort to_w16(float v, int wt) {
    if (wt == WT_BF16) {
        uint u = as_uint(v);
        u += 0x7FFFu + ((u >> 16) & 1u);
        return (ushort)(u >> 16);
    }
    ushort h;
    vstore_half_rte(v, 0, (__private half *)&h);
    return h;
}

static inline float from_w16(ushort h, int wt) {
    if (wt == WT_BF16) return as_float((uint)h << 16);
    return vload_half(0, (const __private half *)&h);
}

/* Two consecutive 16-bit words as one .b32 register: the lower column in
 * the low half (the PTX f16x2/bf16x2 packing). */
static inline uint pack2(__local const ushort *p) { return (uint)p[0] | ((uint)p[1] << 16); }

#ifdef FLAMINGO_MMA_PTX
/* d = a·b + c for one warp: a 16×16 (row), b 16×8 (col), c/d 16×8 f32. */
#define MMA_16x8x16(WT, d, a, b, em_a, em_b, lane)                                                       \
    if (WT == WT_BF16)                                                                                  \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "                            \
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                            \
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                   \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));               \
    else                                                                                                \
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "                              \
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"                            \
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                   \
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
/* The same operation, emulated per warp through local memory. Fragment
 * layout (PTX ISA, mma.m16n8k16, 16-bit A/B, f32 C/D), with g = lane / 4 and
 * t = lane % 4: register i of A holds (row g + 8·(i & 1), columns 2t, 2t+1
 * + 8·(i >> 1)); register i of B holds (rows 2t, 2t+1 + 8·i, column g); D
 * element j is (row g + 8·(j >> 1), column 2t + (j & 1)). Every work-item
 * of the work-group must call it (barriers). */
static inline void mma_emulated(int wt, float *d, const uint *a, const uint *b,
                                __local float *em_a, __local float *em_b, int lane) {
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; i++) {
        const int row = g + 8 * (i & 1), col = 2 * t + 8 * (i >> 1);
        em_a[row * 16 + col] = from_w16((ushort)(a[i] & 0xFFFFu), wt);
        em_a[row * 16 + col + 1] = from_w16((ushort)(a[i] >> 16), wt);
    }
    for (int i = 0; i < 2; i++) {
        const int k = 2 * t + 8 * i;
        em_b[k * 8 + g] = from_w16((ushort)(b[i] & 0xFFFFu), wt);
        em_b[(k + 1) * 8 + g] = from_w16((ushort)(b[i] >> 16), wt);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int j = 0; j < 4; j++) {
        const int row = g + 8 * (j >> 1), col = 2 * t + (j & 1);
        float s = d[j];
        for (int k = 0; k < 16; k++) s = fma(em_a[row * 16 + k], em_b[k * 8 + col], s);
        d[j] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
#define MMA_16x8x16(WT, d, a, b, em_a, em_b, lane) mma_emulated(WT, d, a, b, em_a, em_b, lane);
#endif

static inline void gemm_mma_body(const __global float *x, ulong xoff, int ldx,
                                 const __global uchar *w, ulong woff, int ldw, int wt,
                                 const __global float *bias, ulong boff, int has_bias,
                                 __global float *y, ulong yoff, int ldy,
                                 int M, int N, int K, float alpha, int accumulate, int act,
                                 __local ushort *xs, __local ushort *ws, __local float *em) {
    const int lid = get_local_id(0), warp = lid / 32, lane = lid % 32;
    const int g = lane >> 2, t = lane & 3;
    const int m0 = get_group_id(1) * MMA_TM, n0 = get_group_id(0) * MMA_TN;
    __local float *em_a = em + warp * (256 + 128), *em_b = em_a + 256;
    x += xoff;
    y += yoff;
    float acc[8][4];
    for (int n8 = 0; n8 < 8; n8++)
        for (int j = 0; j < 4; j++) acc[n8][j] = 0.0f;

    for (int k0 = 0; k0 < K; k0 += MMA_TK) {
        /* 64×16 of x (rounded to 16 bits) and of W; zero outside the matrices. */
        for (int e = lid; e < MMA_TM * MMA_TK; e += MMA_WG) {
            const int r = e / MMA_TK, c = e % MMA_TK, gk = k0 + c;
            const int gm = m0 + r, gn = n0 + r;
            xs[r * MMA_LD + c] = (gm < M && gk < K) ? to_w16(x[(ulong)gm * ldx + gk], wt) : 0;
            ws[r * MMA_LD + c] = (gn < N && gk < K) ? ((const __global ushort *)w)[woff + (ulong)gn * ldw + gk] : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        const __local ushort *xa = xs + (16 * warp + g) * MMA_LD + 2 * t;
        uint a[4];
        a[0] = pack2(xa);
        a[1] = pack2(xa + 8 * MMA_LD);
        a[2] = pack2(xa + 8);
        a[3] = pack2(xa + 8 * MMA_LD + 8);
        for (int n8 = 0; n8 < 8; n8++) {
            const __local ushort *wb = ws + (8 * n8 + g) * MMA_LD + 2 * t;
            uint b[2];
            b[0] = pack2(wb);
            b[1] = pack2(wb + 8);
            MMA_16x8x16(wt, acc[n8], a, b, em_a, em_b, lane)
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int n8 = 0; n8 < 8; n8++)
        for (int j = 0; j < 4; j++) {
            const int gm = m0 + 16 * warp + g + 8 * (j >> 1), gn = n0 + 8 * n8 + 2 * t + (j & 1);
            if (gm < M && gn < N)
                store_linear(y, (ulong)gm * ldy + gn, acc[n8][j], bias, boff + gn, has_bias, alpha, act, accumulate);
        }
}

#define GEMM_MMA_KERNEL(NAME, WT)                                                                    \
__kernel __attribute__((reqd_work_group_size(MMA_WG, 1, 1)))                                         \
void NAME(const __global float *x, ulong xoff, int ldx,                                              \
          const __global uchar *w, ulong woff, int ldw,                                              \
          const __global float *bias, ulong boff, int has_bias,                                      \
          __global float *y, ulong yoff, int ldy,                                                    \
          int M, int N, int K, float alpha, int accumulate, int act) {                               \
    __local ushort xs[MMA_TM * MMA_LD];                                                              \
    __local ushort ws[MMA_TN * MMA_LD];                                                              \
    __local float em[4 * (256 + 128)];                                                               \
    gemm_mma_body(x, xoff, ldx, w, woff, ldw, WT, bias, boff, has_bias, y, yoff, ldy,                \
                  M, N, K, alpha, accumulate, act, xs, ws, em);                                      \
}

GEMM_MMA_KERNEL(gemm_mma_f16, WT_F16)
GEMM_MMA_KERNEL(gemm_mma_bf16, WT_BF16)
