import Glibc

/// GATED XATTN-DENSE on the device (GatedCrossAttention.swift, spec/30):
/// x += tanh(α_attn)·xattn(x); x += tanh(α_ff)·FF(x). The tanh-gated adds
/// are folded into the output projections (alpha, accumulate).
final class DeviceCrossAttention {
    let config: GatedCrossAttentionConfig
    let rt: OpenCLRuntime
    let attnGate: Float, ffGate: Float   // tanh already applied
    let norm, ffNorm: (weight: CLView, bias: CLView?)
    let toQ, toKV, toOut, ff1, ff2: CLWeight
    let latentsPerMedia: Int

    init(_ w: DeviceWeights, config c: GatedCrossAttentionConfig, prefix p: String, latentsPerMedia: Int) throws {
        config = c
        rt = w.rt
        self.latentsPerMedia = latentsPerMedia
        attnGate = tanhf(try w.model.tensor("\(p).attn_gate").float(at: 0))
        ffGate = tanhf(try w.model.tensor("\(p).ff_gate").float(at: 0))
        norm = try w.norm("\(p).attn.norm")
        ffNorm = try w.norm("\(p).ff.0")
        toQ = try w.matrix("\(p).attn.to_q.weight")
        toKV = try w.matrix("\(p).attn.to_kv.weight")
        toOut = try w.matrix("\(p).attn.to_out.weight")
        ff1 = try w.matrix("\(p).ff.1.weight")
        ff2 = try w.matrix("\(p).ff.3.weight")
    }

    /// Keys|values [tokens, 2·inner] of visual tokens already on the device.
    func mediaKV(_ media: CLView, tokens: Int) throws -> CLBuffer {
        let kv = try rt.buffer(bytes: max(tokens * toKV.rows, 1) * 4, zeroed: false)
        try rt.linear(media, rows: tokens, toKV, into: CLView(kv))
        return kv
    }

    /// One sequence's rows in a batched step and the media their rows see:
    /// `selections` encodes, per row, the latents of its image (none before
    /// the first image, uniform beyond the last: GatedCrossAttention.Rows),
    /// uploaded once per step and shared by every block.
    struct Rows {
        let rows: Range<Int>
        let selections: CLView
        let media: CLBuffer?
        let mediaTokens: Int
    }

    /// The device encoding of a segment's per-row key selections.
    static func selections(textTime: [Int], mediaTokens: Int, latentsPerMedia n: Int) -> [Int32] {
        let numMedia = mediaTokens / max(n, 1)
        return OpenCLRuntime.encodeSelections(textTime.map { t -> KeySelection in
            t == 0 ? .none : t <= numMedia ? .range(((t - 1) * n)..<(t * n)) : .uniform
        })
    }

    func callAsFunction(_ x: CLView, rows: Int, parts: [Rows], scratch: DeviceScratch) throws {
        let c = config, d = toQ.cols, inner = c.heads * c.dimHead
        let h = try scratch.take("h", rows * d)
        let q = CLView(try scratch.take("xq", rows * inner).buffer, stride: inner)
        let o = CLView(try scratch.take("xo", rows * inner).buffer, stride: inner)
        try rt.layerNorm(x, rows: rows, dim: d, weight: norm.weight, bias: norm.bias, eps: GatedCrossAttention.eps, into: h)
        try rt.linear(h, rows: rows, toQ, into: q)
        // Rows without media attend to nothing: a zero output (spec/30 §1).
        try rt.fill(o.buffer, with: 0, count: rows * inner)
        for part in parts {
            guard let media = part.media, !part.rows.isEmpty else { continue }
            let kv = CLView(media, stride: 2 * inner)
            try rt.attention(q: q.rows(from: part.rows.lowerBound), k: kv, v: kv.columns(from: inner),
                             out: o.rows(from: part.rows.lowerBound), queries: part.rows.count, keys: part.mediaTokens,
                             heads: c.heads, kvHeads: c.heads, headDim: c.dimHead,
                             scale: 1 / Float(c.dimHead).squareRoot(), mask: .selections(part.selections, positionBase: 0))
        }
        try rt.linear(o, rows: rows, toOut, into: x, alpha: attnGate, accumulate: true)
        let f = try scratch.take("ffn", rows * ff1.rows)
        try rt.layerNorm(x, rows: rows, dim: d, weight: ffNorm.weight, bias: ffNorm.bias, eps: GatedCrossAttention.eps, into: h)
        try rt.linear(h, rows: rows, ff1, into: f, activation: .gelu)
        try rt.linear(f, rows: rows, ff2, into: x, alpha: ffGate, accumulate: true)
    }
}
