/// Attention on the device (kernels/opencl/attention.cl), with the
/// semantics of the CPU's `attentionBlock` and `attendRow`.
///
/// Layout: q rows hold `heads` heads of `headDim` (head h at column h·headDim),
/// k and v rows `kvHeads` heads; query head h reads K/V head
/// h / (heads / kvHeads). Optional ALiBi slopes are `heads` f32 values on the
/// device; the optional key mask is one byte per key (0: padding, no weight).
extension OpenCLRuntime {
    /// Which keys each query row attends to.
    public enum AttentionMask {
        /// Self-attention over a KV cache: query row i is at position
        /// start + i and sees keys [0, start + i] (keys: start + rows).
        case causal(start: Int)
        /// Per-row selections on the device, two Int32 per row as made by
        /// `encodeSelections` (reusable across layers); row i is at position
        /// positionBase + i (for ALiBi).
        case selections(CLView, positionBase: Int)
    }

    /// Device encoding of `KeySelection`s: (lo, hi) for a key range, (-1, 0)
    /// for none (zero output row), (-2, 0) for uniform over all keys.
    public static func encodeSelections(_ s: [KeySelection]) -> [Int32] {
        var out = [Int32]()
        out.reserveCapacity(2 * s.count)
        for sel in s {
            switch sel {
            case .none: out += [-1, 0]
            case .uniform: out += [-2, 0]
            case .range(let r):
                out += [Int32(clamping: max(r.lowerBound, 0)), Int32(clamping: max(r.upperBound, 0))]
            }
        }
        return out
    }

    /// The largest head size the attention kernels take (4 channels per work-item × 64).
    public static let maxHeadDim = 256

    private func checkAttention(_ op: String, q: CLView, k: CLView, v: CLView, out: CLView, nq: Int, nk: Int,
                                heads: Int, kvHeads: Int, headDim: Int, alibiSlopes: CLView?, keyValid: CLView?) throws {
        guard heads > 0, kvHeads > 0, heads % kvHeads == 0 else {
            throw FlamingoError.invalidArgument("OpenCL \(op): \(heads) query heads over \(kvHeads) key/value heads")
        }
        guard headDim > 0, headDim <= Self.maxHeadDim else {
            throw FlamingoError.unsupported("OpenCL \(op): head size \(headDim) (supported: 1...\(Self.maxHeadDim))")
        }
        guard nq >= 0, nk >= 0 else { throw FlamingoError.invalidArgument("OpenCL \(op): \(nq) queries over \(nk) keys") }
        try q.check(rows: nq, cols: heads * headDim, "q", op)
        try out.check(rows: nq, cols: heads * headDim, "out", op)
        try k.check(rows: nk, cols: kvHeads * headDim, "k", op)
        try v.check(rows: nk, cols: kvHeads * headDim, "v", op)
        if let alibiSlopes { try alibiSlopes.check(rows: 1, cols: heads, "alibiSlopes", op) }
        if let keyValid { try keyValid.check(rows: 1, cols: nk, elementSize: 1, "keyValid", op) }
    }

    /// Which kernel `attention` uses.
    public enum AttentionKernel: Sendable {
        /// Query-tiled for 2+ rows with head size ≤ 128, else per-row.
        case automatic
        /// One work-group per (row, head): any head size up to 256.
        case rowwise
        /// 16 rows per work-group sharing each key and value block; head size ≤ 128.
        case tiled
    }

    /// The largest head size of the query-tiled kernel (TILED_MAX_HD).
    public static let tiledMaxHeadDim = 128

    /// Multi-head attention of `queries` rows over `keys` rows (prefill,
    /// vision encoder, resampler, cross-attention). One launch for all rows
    /// and heads.
    public func attention(q: CLView, k: CLView, v: CLView, out: CLView, queries nq: Int, keys nk: Int,
                          heads: Int, kvHeads: Int, headDim: Int, scale: Float,
                          alibiSlopes: CLView? = nil, keyValid: CLView? = nil, mask: AttentionMask,
                          kernel: AttentionKernel = .automatic) throws {
        let op = "attention"
        try checkAttention(op, q: q, k: k, v: v, out: out, nq: nq, nk: nk, heads: heads, kvHeads: kvHeads,
                           headDim: headDim, alibiSlopes: alibiSlopes, keyValid: keyValid)
        var causalStart = -1, positionBase = 0
        var selections: CLView? = nil
        switch mask {
        case .causal(let start):
            guard start >= 0, start + nq <= nk else {
                throw FlamingoError.invalidArgument("OpenCL attention: causal queries \(start)..<\(start + nq) over \(nk) keys")
            }
            causalStart = start
        case .selections(let s, let base):
            try s.check(rows: 1, cols: 2 * nq, elementSize: 4, "selections", op)
            selections = s
            positionBase = base
        }
        let tiled: Bool
        switch kernel {
        case .automatic: tiled = nq > 1 && headDim <= Self.tiledMaxHeadDim
        case .rowwise: tiled = false
        case .tiled:
            guard headDim <= Self.tiledMaxHeadDim else {
                throw FlamingoError.unsupported("OpenCL attention: the tiled kernel takes head sizes up to \(Self.tiledMaxHeadDim), not \(headDim)")
            }
            tiled = true
        }
        let global = tiled ? [64 * heads, (nq + 15) / 16] : [64 * heads, nq]
        try launch(tiled ? "attention_tiled" : "attention", family: "attention", global: global, local: [64, 1]) { a in
            try a.buffer(q.buffer); try a.offset(q.offset); try a.int(max(q.stride, heads * headDim))
            try a.buffer(k.buffer); try a.offset(k.offset); try a.int(max(k.stride, kvHeads * headDim))
            try a.buffer(v.buffer); try a.offset(v.offset); try a.int(max(v.stride, kvHeads * headDim))
            try a.buffer(out.buffer); try a.offset(out.offset); try a.int(max(out.stride, heads * headDim))
            try a.int(nk); try a.int(heads); try a.int(kvHeads); try a.int(headDim); try a.float(scale)
            try a.buffer(alibiSlopes?.buffer); try a.offset(alibiSlopes?.offset ?? 0)
            try a.flag(alibiSlopes != nil)
            try a.buffer(keyValid?.buffer); try a.offset(keyValid?.offset ?? 0); try a.flag(keyValid != nil)
            try a.buffer(selections?.buffer); try a.offset(selections?.offset ?? 0)
            try a.int(causalStart); try a.int(positionBase)
            if tiled { try a.int(nq) }
        }
    }

    /// Masked cross-attention with host selections (GATED XATTN-DENSE: none
    /// before any image, the latents of the row's image, or uniform).
    public func crossAttention(q: CLView, k: CLView, v: CLView, out: CLView, queries nq: Int, keys nk: Int,
                               heads: Int, headDim: Int, scale: Float, select: [KeySelection]) throws {
        guard select.count == nq else {
            throw FlamingoError.invalidArgument("OpenCL crossAttention: \(select.count) selections for \(nq) rows")
        }
        guard nq > 0 else { return }
        let s = try temporaryBuffer(Self.encodeSelections(select))
        try attention(q: q, k: k, v: v, out: out, queries: nq, keys: nk, heads: heads, kvHeads: heads,
                      headDim: headDim, scale: scale, mask: .selections(CLView(s), positionBase: 0))
    }

    /// Fused decode attention: one query row (at `position`) over keys
    /// [0, keys) of a KV cache, all heads, in two launches: the keys are
    /// split into chunks so that a long context keeps the whole device busy
    /// (flash-decoding), then the chunks are combined per head.
    public func decodeAttention(q: CLView, k: CLView, v: CLView, out: CLView, keys nk: Int, heads: Int, kvHeads: Int,
                                headDim: Int, scale: Float, alibiSlopes: CLView? = nil, keyValid: CLView? = nil,
                                position: Int, splits requestedSplits: Int? = nil) throws {
        let op = "decodeAttention"
        try checkAttention(op, q: q, k: k, v: v, out: out, nq: 1, nk: nk, heads: heads, kvHeads: kvHeads,
                           headDim: headDim, alibiSlopes: alibiSlopes, keyValid: keyValid)
        // Enough (chunk, head) groups for ~4 per compute unit, chunks of a
        // multiple of 64 keys (the kernel's block), at most 64 chunks.
        let blocks = max(1, (nk + 63) / 64)
        let wanted = requestedSplits ?? max(1, (4 * max(computeUnits, 1) + heads - 1) / heads)
        let splits0 = min(max(wanted, 1), blocks, 64)
        let chunk = ((blocks + splits0 - 1) / splits0) * 64
        let splits = max(1, (nk + chunk - 1) / chunk)
        let partFloats = heads * splits * (headDim + 2)
        try lock.locked {
            if (decodeScratch?.byteCount ?? 0) < partFloats * 4 {
                decodeScratch = try buffer(bytes: partFloats * 4, zeroed: false)
            }
            guard let part = decodeScratch else { throw FlamingoError.internal("OpenCL: no decode scratch") }
            try launch("attention_decode_part", family: "attention", global: [64 * splits, heads], local: [64, 1]) { a in
                try a.buffer(q.buffer); try a.offset(q.offset)
                try a.buffer(k.buffer); try a.offset(k.offset); try a.int(max(k.stride, kvHeads * headDim))
                try a.buffer(v.buffer); try a.offset(v.offset); try a.int(max(v.stride, kvHeads * headDim))
                try a.buffer(part)
                try a.int(nk); try a.int(heads); try a.int(kvHeads); try a.int(headDim); try a.float(scale)
                try a.buffer(alibiSlopes?.buffer); try a.offset(alibiSlopes?.offset ?? 0); try a.flag(alibiSlopes != nil)
                try a.buffer(keyValid?.buffer); try a.offset(keyValid?.offset ?? 0); try a.flag(keyValid != nil)
                try a.int(position); try a.int(chunk)
            }
            try launch("attention_decode_reduce", family: "attention", global: [64 * heads], local: [64]) { a in
                try a.buffer(part); try a.buffer(out.buffer); try a.offset(out.offset)
                try a.int(nk); try a.int(headDim); try a.int(splits)
            }
        }
    }
}
