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
