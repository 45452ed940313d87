/// Perceiver Resampler (spec/20): learned latents cross-attend to the media
/// tokens (keys = media ∥ latents) in `depth` layers, then a final LayerNorm.
public struct PerceiverResamplerConfig: Equatable, Sendable {
    public var dim: Int
    public var depth: Int
    public var heads: Int
    public var dimHead: Int
    public var numLatents: Int
    public var ffMult: Int
    /// Rows of `media_time_embs` / `frame_embs` when present (video models).
    public var maxNumMedia: Int?
    public var maxNumFrames: Int?

    init(_ r: inout ConfigReader) throws {
        dim = try r.int("dim")
        depth = try r.int("depth", min: 0)
        heads = try r.int("heads")
        dimHead = try r.int("dim_head")
        numLatents = try r.int("num_latents")
        ffMult = try r.int("ff_mult", default: 4)
        maxNumMedia = try r.optionalInt("max_num_media", min: 1)
        maxNumFrames = try r.optionalInt("max_num_frames", min: 1)
    }

    func weights(prefix p: String) -> [WeightSpec] {
        let inner = heads * dimHead
        var w: [WeightSpec] = [WeightSpec("\(p).latents", [numLatents, dim])]
        if let n = maxNumFrames { w.append(WeightSpec("\(p).frame_embs", [n, dim])) }
        if let n = maxNumMedia { w.append(WeightSpec("\(p).media_time_embs", [n, 1, dim])) }
        for l in 0..<depth {
            let a = "\(p).layers.\(l).0"
            w.norm("\(a).norm_media", dim)
            w.norm("\(a).norm_latents", dim)
            w.linear("\(a).to_q", out: inner, in: dim, bias: false)
            w.linear("\(a).to_kv", out: 2 * inner, in: dim, bias: false)
            w.linear("\(a).to_out", out: dim, in: inner, bias: false)
            let f = "\(p).layers.\(l).1"
            w.norm("\(f).0", dim)
            w.linear("\(f).1", out: dim * ffMult, in: dim, bias: false)
            w.linear("\(f).3", out: dim, in: dim * ffMult, bias: false)
        }
        w.norm("\(p).norm", dim)
        return w
    }
}
