/// GATED XATTN-DENSE (spec/30): masked cross-attention from text to visual
/// latents and a feed-forward, each scaled by tanh of a learned gate,
/// inserted before decoder layer i when (i+1) % everyNLayers == 0.
public struct GatedCrossAttentionConfig: Equatable, Sendable {
    public enum MediaSemantics: String, Sendable {
        /// open_flamingo >= 2.0: a token attends to the latest image at or before it.
        case current
        /// open_flamingo 0.1.x with attend_previous = false (spec/30 §2.1).
        case v1
    }

    public var everyNLayers: Int
    public var heads: Int
    public var dimHead: Int
    public var ffMult: Int
    public var mediaSemantics: MediaSemantics

    init(_ r: inout ConfigReader) throws {
        everyNLayers = try r.int("every_n_layers")
        heads = try r.int("heads")
        dimHead = try r.int("dim_head")
        ffMult = try r.int("ff_mult", default: 4)
        mediaSemantics = MediaSemantics(rawValue: try r.string("media_semantics", default: "current",
                                                               oneOf: ["current", "v1"])) ?? .current
    }

    /// Decoder layer indices that get a block.
    public func layerIndices(numLayers: Int) -> [Int] {
        (0..<numLayers).filter { ($0 + 1) % everyNLayers == 0 }
    }

    func weights(prefix p: String, lmDim: Int, visualDim: Int) -> [WeightSpec] {
        let inner = heads * dimHead
        var w: [WeightSpec] = [WeightSpec("\(p).attn_gate", [1]), WeightSpec("\(p).ff_gate", [1])]
        w.norm("\(p).attn.norm", lmDim)
        w.linear("\(p).attn.to_q", out: inner, in: lmDim, bias: false)
        w.linear("\(p).attn.to_kv", out: 2 * inner, in: visualDim, bias: false)
        w.linear("\(p).attn.to_out", out: lmDim, in: inner, bias: false)
        w.norm("\(p).ff.0", lmDim)
        w.linear("\(p).ff.1", out: lmDim * ffMult, in: lmDim, bias: false)
        w.linear("\(p).ff.3", out: lmDim, in: lmDim * ffMult, bias: false)
        return w
    }
}

public final class GatedCrossAttention {
    public let config: GatedCrossAttentionConfig
    let attnGate: Float, ffGate: Float   // tanh already applied
    let norm, ffNorm: (weight: Matrix, bias: Matrix?)
    let toQ, toKV, toOut, ff1, ff2: Weight
    let latentsPerMedia: Int
    static let eps: Float = 1e-5

    /// Keys and values of the visual tokens, computed once per set of media
    /// (constant while decoding): [T·latents, 2·inner], K then V per row.
    public final class MediaKV {
        public let kv: Buffer
        public let tokens: Int
        init(kv: Buffer, tokens: Int) { self.kv = kv; self.tokens = tokens }
    }

    init(_ model: WeightSource, config c: GatedCrossAttentionConfig, prefix p: String, latentsPerMedia: Int) throws {
        config = c
        self.latentsPerMedia = latentsPerMedia
        attnGate = tanhf(try model.tensor("\(p).attn_gate").float(at: 0))
        ffGate = tanhf(try model.tensor("\(p).ff_gate").float(at: 0))
        norm = try model.layer("\(p).attn.norm")
        ffNorm = try model.layer("\(p).ff.0")
        toQ = try model.weight("\(p).attn.to_q.weight")
        toKV = try model.weight("\(p).attn.to_kv.weight")
        toOut = try model.weight("\(p).attn.to_out.weight")
        ff1 = try model.weight("\(p).ff.1.weight")
        ff2 = try model.weight("\(p).ff.3.weight")
    }

    /// K/V of `tokens` visual tokens [tokens, visualDim] (all media of one
    /// sequence, media-major).
    public func mediaKV(_ media: UnsafePointer<Float>, tokens: Int) -> MediaKV {
        let kv = Buffer(tokens * toKV.rows)
        linear(media, m: tokens, toKV, into: kv.p)
        return MediaKV(kv: kv, tokens: tokens)
    }

    /// The rows of one sequence in a batched step, with what its text
    /// attends to: `textTime[i]` is the 1-based index of the media its row i
    /// sees (0: none, the output is exactly zero; beyond the media count:
    /// uniform over all visual tokens, as the reference).
    public struct Rows {
        public let rows: Range<Int>
        public let textTime: [Int]
        public let media: MediaKV?
    }

    /// x ← x + tanh(α_attn)·xattn(x) ; x ← x + tanh(α_ff)·FF(x), for all
    /// `rows` rows of hidden size D.
    public func callAsFunction(_ x: UnsafeMutablePointer<Float>, rows: Int, parts: [Rows], ws: Workspace) {
        let c = config, d = toQ.cols, inner = c.heads * c.dimHead, n = latentsPerMedia, eps = Self.eps
        let h = ws.take(rows * max(d, inner)), q = ws.take(rows * inner), o = ws.take(rows * inner)
        layerNorm(x, rows: rows, dim: d, weight: norm.weight, bias: norm.bias, eps: eps, into: h)
        linear(h, m: rows, toQ, into: q)
        // Without media o stays zero (spec/30 §1: zeroed attention rows).
        for part in parts {
            guard let media = part.media else { continue }
            let numMedia = media.tokens / n, first = part.rows.lowerBound
            attentionBlock(q: q + first * inner, qStride: inner, k: media.kv.p, v: media.kv.p + inner, kvStride: 2 * inner,
                           nq: part.rows.count, nk: media.tokens, heads: c.heads, kvHeads: c.heads, headDim: c.dimHead,
                           scale: 1 / Float(c.dimHead).squareRoot(),
                           select: { i in
                               let t = part.textTime[i]
                               return t == 0 ? .none : t <= numMedia ? .range(((t - 1) * n)..<(t * n)) : .uniform
                           }, out: o + first * inner, outStride: inner, ws: ws)
        }
        linear(o, m: rows, toOut, into: h)
        axpy(attnGate, h, into: x, count: rows * d)
        let f = ws.take(rows * ff1.rows)
        layerNorm(x, rows: rows, dim: d, weight: ffNorm.weight, bias: ffNorm.bias, eps: eps, into: h)
        linear(h, m: rows, ff1, into: f)
        gelu(f, count: rows * ff1.rows)
        linear(f, m: rows, ff2, into: h)
        axpy(ffGate, h, into: x, count: rows * d)
    }

    /// text_time for a token sequence (spec/30 §2): normal mode counts the
    /// <image> tokens at or before each position; `v1` shifts text to the
    /// next image and drops positions past the last one.
    public static func textTime(tokens: [Int], imageToken: Int, semantics: GatedCrossAttentionConfig.MediaSemantics) -> [Int] {
        var count = 0
        var out = tokens.map { tok -> Int in
            if tok == imageToken { count += 1 }
            return count
        }
        if semantics == .v1 {
            for i in out.indices where tokens[i] != imageToken { out[i] += 1 }
            for i in out.indices where out[i] > count { out[i] = 0 }
        }
        return out
    }
}

import Glibc
