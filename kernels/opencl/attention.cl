/* Scaled dot-product attention with the semantics of the CPU's
 * attentionBlock / attendRow (Sources/FlamingoCore/CPU/Attention.swift):
 *   score(i, j) = scale·q_i·k_j + slope_h·(j − pos_i)   (ALiBi when slopes are given)
 *   keys outside the row's range, or with valid[j] == 0, get exactly zero weight;
 *   a row whose keys are all masked attends uniformly to all nk keys (the
 *   reference's softmax over an all-minimum row); selection "none" gives a
 *   zero row and "uniform" the mean of all nk value rows.
 * Query head h reads K/V head h / (heads / kv_heads) (grouped-query).
 * Softmax is computed online (running max and sum, rescaling the output
 * accumulator per block of 64 keys), so scores never go to global memory.
 * One work-group of 64 per (query row, head); each work-item owns up to 4
 * output channels (head_dim ≤ 256, checked by the host). */
#define ATT_WG 64
#define ATT_DPT 4
#define ATT_MAX_HD (ATT_WG * ATT_DPT)

/* Per-row selection codes (sel[2i], sel[2i+1]); otherwise a key range [lo, hi). */
#define SEL_NONE    (-1)
#define SEL_UNIFORM (-2)

/* Folds keys [lo, hi) into the running (m, l, acc) of one query row/head.
 * qs: the query in local memory; k, v: row 0 of this head's keys/values. */
static inline void attend_keys(__local const float *qs,
                               const __global float *k, int ldk, const __global float *v, int ldv,
                               int lo, int hi, int hd, float scale, float slope, int pos,
                               const __global uchar *valid, int has_valid,
                               __local float *sc, __local float *red,
                               float *m_io, float *l_io, float *acc) {
    const int lid = get_local_id(0);
    float m = *m_io, l = *l_io;
    for (int kb = lo; kb < hi; kb += ATT_WG) {
        const int j = kb + lid;
        float s = -INFINITY;
        if (j < hi && (!has_valid || valid[j])) {
            const __global float *kr = k + (ulong)j * ldk;
            float d = 0.0f;
            int e = 0;
            for (; e + 4 <= hd; e += 4) d += dot(vload4(0, qs + e), vload4(0, kr + e));
            for (; e < hd; e++) d = fma(qs[e], kr[e], d);
            s = d * scale;
            if (slope != 0.0f) s += slope * (float)(j - pos);
        }
        /* A block without valid keys needs no special case (p = 0, corr = 1
         * or acc = 0), and must not `continue`: PoCL miscompiles jumps over
         * barriers even when every work-item takes them. */
        const float mn = fmax(m, wg_max(s, red));
        const float corr = m == -INFINITY ? 0.0f : exp(m - mn);
        const float p = s == -INFINITY ? 0.0f : exp(s - mn);
        sc[lid] = p;
        l = l * corr + wg_sum(p, red);           /* its barriers publish sc */
        for (int c = 0; c < ATT_DPT; c++) acc[c] *= corr;
        const int cnt = min(ATT_WG, hi - kb);
        for (int t = 0; t < cnt; t++) {
            const float pt = sc[t];
            if (pt == 0.0f) continue;
            const __global float *vr = v + (ulong)(kb + t) * ldv;
            for (int c = 0; c < ATT_DPT; c++) {
                const int d = lid + c * ATT_WG;
                if (d < hd) acc[c] = fma(pt, vr[d], acc[c]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);            /* sc is rewritten by the next block */
        m = mn;
    }
    *m_io = m;
    *l_io = l;
}

/* acc += Σ_{j in [lo, hi)} v_j (the uniform rows). */
static inline void sum_values(const __global float *v, int ldv, int lo, int hi, int hd, float *acc) {
    const int lid = get_local_id(0);
    for (int j = lo; j < hi; j++)
        for (int c = 0; c < ATT_DPT; c++) {
            const int d = lid + c * ATT_WG;
            if (d < hd) acc[c] += v[(ulong)j * ldv + d];
        }
}

static inline void load_query(__local float *qs, const __global float *q, int hd) {
    for (int d = get_local_id(0); d < hd; d += ATT_WG) qs[d] = q[d];
    barrier(CLK_LOCAL_MEM_FENCE);
}

static inline void store_row(__global float *o, int hd, const float *acc, float mul) {
    for (int c = 0; c < ATT_DPT; c++) {
        const int d = get_local_id(0) + c * ATT_WG;
        if (d < hd) o[d] = acc[c] * mul;
    }
}

/* Many query rows (prefill, vision, resampler, cross-attention). Grid:
 * (64·heads) × nq. causal_start ≥ 0: row i sees keys [0, causal_start+i]
 * at position causal_start+i (self-attention over a KV cache whose first
 * causal_start rows precede these queries); otherwise sel gives each row's
 * selection and its position is pos_base + i. */
__kernel __attribute__((reqd_work_group_size(ATT_WG, 1, 1)))
void attention(const __global float *q, ulong qoff, int ldq,
               const __global float *k, ulong koff, int ldk,
               const __global float *v, ulong voff, int ldv,
               __global float *o, ulong ooff, int ldo,
               int nk, int heads, int kv_heads, int hd, float scale,
               const __global float *alibi, ulong alioff, int has_alibi,
               const __global uchar *valid, ulong valoff, int has_valid,
               const __global int *sel, ulong seloff,
               int causal_start, int pos_base) {
    __local float qs[ATT_MAX_HD];
    __local float sc[ATT_WG];
    __local float red[ATT_WG];
    const int h = get_group_id(0), i = get_group_id(1);
    const int kvh = h / (heads / kv_heads);
    __global float *orow = o + ooff + (ulong)i * ldo + (ulong)h * hd;
    const __global float *kh = k + koff + (ulong)kvh * hd;
    const __global float *vh = v + voff + (ulong)kvh * hd;
    float acc[ATT_DPT];
    for (int c = 0; c < ATT_DPT; c++) acc[c] = 0.0f;

    /* mode: 0 key range, 1 none (zero row), 2 uniform. Straight-line code
     * with no early return: every work-item reaches every barrier (see
     * attend_keys); the range is empty for the other modes. */
    int lo = 0, hi = 0, pos = 0, mode = 0;
    if (causal_start >= 0) {
        hi = min(nk, causal_start + i + 1);
        pos = causal_start + i;
    } else {
        const int a = sel[seloff + 2 * (ulong)i], b = sel[seloff + 2 * (ulong)i + 1];
        mode = a == SEL_NONE ? 1 : a == SEL_UNIFORM ? 2 : 0;
        if (mode == 0) { lo = max(a, 0); hi = min(b, nk); }
        pos = pos_base + i;
    }
    load_query(qs, q + qoff + (ulong)i * ldq + (ulong)h * hd, hd);
    float m = -INFINITY, l = 0.0f;
    attend_keys(qs, kh, ldk, vh, ldv, lo, hi, hd, scale, has_alibi ? alibi[alioff + h] : 0.0f, pos,
                valid + valoff, has_valid, sc, red, &m, &l, acc);
    if (mode == 1 || nk == 0) {
        store_row(orow, hd, acc, 0.0f);
    } else if (mode == 0 && m != -INFINITY) {
        store_row(orow, hd, acc, 1.0f / l);
    } else {
        /* uniform, or a range whose keys are all masked: mean of all nk values */
        for (int c = 0; c < ATT_DPT; c++) acc[c] = 0.0f;
        sum_values(vh, ldv, 0, nk, hd, acc);
        store_row(orow, hd, acc, 1.0f / (float)nk);
    }
}

/* ---- Query-tiled attention (head_dim ≤ 128): prefill, vision, resampler ----
 * The kernel above reads every key and value row once per query row. Here
 * a work-group takes TQ = 16 query rows of one head and walks the union of
 * their key ranges in blocks of TKB = 32 keys: the key block goes through
 * local memory once for all 16 rows (scores: each work-item 8 rows × 1 key),
 * and each value row is read once for all 16 rows (output: each work-item
 * owns channels lid and lid + 64 of every row). Masking, ALiBi, the online
 * softmax and the fallbacks are those of `attention`; rows past nq are
 * computed as empty and not stored. */
#define TQ 16
#define TKB 32
#define TILED_MAX_HD 128

__kernel __attribute__((reqd_work_group_size(ATT_WG, 1, 1)))
void attention_tiled(const __global float *q, ulong qoff, int ldq,
                     const __global float *k, ulong koff, int ldk,
                     const __global float *v, ulong voff, int ldv,
                     __global float *o, ulong ooff, int ldo,
                     int nk, int heads, int kv_heads, int hd, float scale,
                     const __global float *alibi, ulong alioff, int has_alibi,
                     const __global uchar *valid, ulong valoff, int has_valid,
                     const __global int *sel, ulong seloff,
                     int causal_start, int pos_base, int nq) {
    __local float qs[TQ][TILED_MAX_HD + 1];
    __local float ks[TKB][TILED_MAX_HD + 1];
    __local float ps[TQ][TKB + 1];
    __local float rowm[TQ], rowl[TQ], rowc[TQ];
    __local int rowlo[TQ], rowhi[TQ], rowpos[TQ], rowmode[TQ];   /* mode 3: no such row */
    const int h = get_group_id(0), i0 = get_group_id(1) * TQ, lid = get_local_id(0);
    const int kvh = h / (heads / kv_heads);
    const __global float *kh = k + koff + (ulong)kvh * hd;
    const __global float *vh = v + voff + (ulong)kvh * hd;
    const float slope = has_alibi ? alibi[alioff + h] : 0.0f;

    if (lid < TQ) {
        const int i = i0 + lid;
        int lo = 0, hi = 0, pos = 0, mode = 3;
        if (i < nq) {
            if (causal_start >= 0) {
                mode = 0;
                hi = min(nk, causal_start + i + 1);
                pos = causal_start + i;
            } else {
                const int a = sel[seloff + 2 * (ulong)i], b = sel[seloff + 2 * (ulong)i + 1];
                mode = a == SEL_NONE ? 1 : a == SEL_UNIFORM ? 2 : 0;
                if (mode == 0) { lo = max(a, 0); hi = min(b, nk); }
                pos = pos_base + i;
            }
        }
        rowlo[lid] = lo;
        rowhi[lid] = max(hi, lo);
        rowpos[lid] = pos;
        rowmode[lid] = mode;
        rowm[lid] = -INFINITY;
        rowl[lid] = 0.0f;
    }
    for (int e = lid; e < TQ * hd; e += ATT_WG) {
        const int r = e / hd, d = e % hd, i = i0 + r;
        qs[r][d] = i < nq ? q[qoff + (ulong)i * ldq + (ulong)h * hd + d] : 0.0f;
    }
    barrier(CLK_LOCAL_MEM_FENCE);

    /* The keys any row of the tile may see (same in every work-item). */
    int klo = nk, khi = 0;
    for (int r = 0; r < TQ; r++)
        if (rowmode[r] == 0 && rowhi[r] > rowlo[r]) { klo = min(klo, rowlo[r]); khi = max(khi, rowhi[r]); }

    float acc[TQ][2];
    for (int r = 0; r < TQ; r++) { acc[r][0] = 0.0f; acc[r][1] = 0.0f; }
    const int t = lid % TKB, rg = (lid / TKB) * (TQ / 2);   /* key t of the block, rows rg..rg+7 */
    for (int kb = klo; kb < khi; kb += TKB) {
        for (int e = lid; e < TKB * hd; e += ATT_WG) {
            const int j = e / hd, d = e % hd;
            ks[j][d] = kb + j < nk ? kh[(ulong)(kb + j) * ldk + d] : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        float sc[TQ / 2];
        for (int r = 0; r < TQ / 2; r++) sc[r] = 0.0f;
        for (int d = 0; d < hd; d++) {
            const float kv = ks[t][d];
            for (int r = 0; r < TQ / 2; r++) sc[r] = fma(qs[rg + r][d], kv, sc[r]);
        }
        const int j = kb + t;
        const int ok = j < khi && (!has_valid || valid[valoff + j]);
        for (int r = 0; r < TQ / 2; r++) {
            const int rr = rg + r;
            float sv = -INFINITY;
            if (ok && rowmode[rr] == 0 && j >= rowlo[rr] && j < rowhi[rr]) {
                sv = sc[r] * scale;
                if (slope != 0.0f) sv += slope * (float)(j - rowpos[rr]);
            }
            ps[rr][t] = sv;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (lid < TQ) {   /* online softmax update of row lid */
            float bm = -INFINITY;
            for (int u = 0; u < TKB; u++) bm = fmax(bm, ps[lid][u]);
            const float m = rowm[lid], mn = fmax(m, bm);
            const float corr = m == -INFINITY ? 0.0f : exp(m - mn);
            float sum = 0.0f;
            for (int u = 0; u < TKB; u++) {
                const float sv = ps[lid][u];
                const float p = sv == -INFINITY ? 0.0f : exp(sv - mn);
                ps[lid][u] = p;
                sum += p;
            }
            rowl[lid] = rowl[lid] * corr + sum;
            rowm[lid] = mn;
            rowc[lid] = corr;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int r = 0; r < TQ; r++) { acc[r][0] *= rowc[r]; acc[r][1] *= rowc[r]; }
        const int cnt = min(TKB, khi - kb);
        for (int u = 0; u < cnt; u++) {
            const __global float *vr = vh + (ulong)(kb + u) * ldv;
            const float v0 = lid < hd ? vr[lid] : 0.0f, v1 = lid + ATT_WG < hd ? vr[lid + ATT_WG] : 0.0f;
            for (int r = 0; r < TQ; r++) {
                const float p = ps[r][u];
                acc[r][0] = fma(p, v0, acc[r][0]);
                acc[r][1] = fma(p, v1, acc[r][1]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);   /* ks and ps are rewritten by the next block */
    }

    /* Uniform rows (selected, or every key masked): the mean of all values. */
    int need_mean = 0;
    for (int r = 0; r < TQ; r++) need_mean |= rowmode[r] == 2 || (rowmode[r] == 0 && rowm[r] == -INFINITY);
    float mean0 = 0.0f, mean1 = 0.0f;
    if (need_mean && nk > 0) {
        for (int jj = 0; jj < nk; jj++) {
            const __global float *vr = vh + (ulong)jj * ldv;
            if (lid < hd) mean0 += vr[lid];
            if (lid + ATT_WG < hd) mean1 += vr[lid + ATT_WG];
        }
        mean0 *= 1.0f / (float)nk;
        mean1 *= 1.0f / (float)nk;
    }
    for (int r = 0; r < TQ; r++) {
        const int mode = rowmode[r];
        if (mode == 3) continue;   /* no barrier follows: a plain skip */
        float o0 = 0.0f, o1 = 0.0f;
        if (mode == 1 || nk == 0) {
        } else if (mode == 0 && rowm[r] != -INFINITY) {
            const float inv = 1.0f / rowl[r];
            o0 = acc[r][0] * inv;
            o1 = acc[r][1] * inv;
        } else {
            o0 = mean0;
            o1 = mean1;
        }
        __global float *orow = o + ooff + (ulong)(i0 + r) * ldo + (ulong)h * hd;
        if (lid < hd) orow[lid] = o0;
        if (lid + ATT_WG < hd) orow[lid + ATT_WG] = o1;
    }
}

/* ---- Fused decode attention: one query row, all heads, split over keys ----
 * Decoding has one query row, so a work-group per head leaves most of a GPU
 * idle on long contexts. Pass 1 gives each (key chunk, head) its own
 * work-group and writes the chunk's (max, sum, unnormalised output) to
 * `part` [heads][splits][2 + head_dim]; pass 2 rescales and combines the
 * chunks per head. A chunk without valid keys stores m = -inf and the plain
 * sum of its values, which pass 2 uses only if no chunk had a valid key
 * (then the row is uniform over all nk keys, as above). Keys are
 * [0, nk) with the valid mask; the query sits at position `pos`. */
__kernel __attribute__((reqd_work_group_size(ATT_WG, 1, 1)))
void attention_decode_part(const __global float *q, ulong qoff,
                           const __global float *k, ulong koff, int ldk,
                           const __global float *v, ulong voff, int ldv,
                           __global float *part,
                           int nk, int heads, int kv_heads, int hd, float scale,
                           const __global float *alibi, ulong alioff, int has_alibi,
                           const __global uchar *valid, ulong valoff, int has_valid,
                           int pos, int chunk) {
    __local float qs[ATT_MAX_HD];
    __local float sc[ATT_WG];
    __local float red[ATT_WG];
    const int c = get_group_id(0), h = get_group_id(1), splits = get_num_groups(0);
    const int kvh = h / (heads / kv_heads);
    const __global float *kh = k + koff + (ulong)kvh * hd;
    const __global float *vh = v + voff + (ulong)kvh * hd;
    const int lo = min(nk, c * chunk), hi = min(nk, lo + chunk);
    float acc[ATT_DPT];
    for (int e = 0; e < ATT_DPT; e++) acc[e] = 0.0f;
    load_query(qs, q + qoff + (ulong)h * hd, hd);
    float m = -INFINITY, l = 0.0f;
    attend_keys(qs, kh, ldk, vh, ldv, lo, hi, hd, scale, has_alibi ? alibi[alioff + h] : 0.0f, pos,
                valid + valoff, has_valid, sc, red, &m, &l, acc);
    if (m == -INFINITY) {
        for (int e = 0; e < ATT_DPT; e++) acc[e] = 0.0f;
        sum_values(vh, ldv, lo, hi, hd, acc);
        l = 0.0f;
    }
    __global float *pp = part + ((ulong)h * splits + c) * (ulong)(hd + 2);
    if (get_local_id(0) == 0) { pp[0] = m; pp[1] = l; }
    store_row(pp + 2, hd, acc, 1.0f);
}

__kernel __attribute__((reqd_work_group_size(ATT_WG, 1, 1)))
void attention_decode_reduce(const __global float *part, __global float *o, ulong ooff,
                             int nk, int hd, int splits) {
    const int h = get_group_id(0);
    const __global float *ph = part + (ulong)h * splits * (ulong)(hd + 2);
    __global float *orow = o + ooff + (ulong)h * hd;
    float acc[ATT_DPT];
    for (int e = 0; e < ATT_DPT; e++) acc[e] = 0.0f;
    if (nk == 0) { store_row(orow, hd, acc, 0.0f); return; }
    float mx = -INFINITY;
    for (int c = 0; c < splits; c++) mx = fmax(mx, ph[(ulong)c * (hd + 2)]);
    float l = 0.0f;
    for (int c = 0; c < splits; c++) {
        const __global float *pc = ph + (ulong)c * (hd + 2);
        float w = 1.0f;
        if (mx != -INFINITY) {
            if (pc[0] == -INFINITY) continue;
            w = exp(pc[0] - mx);
            l += w * pc[1];
        }
        for (int e = 0; e < ATT_DPT; e++) {
            const int d = get_local_id(0) + e * ATT_WG;
            if (d < hd) acc[e] = fma(w, pc[2 + d], acc[e]);
        }
    }
    store_row(orow, hd, acc, mx == -INFINITY ? 1.0f / (float)nk : 1.0f / l);
}
