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

public final class PerceiverResampler {
    public let config: PerceiverResamplerConfig
    let latents: Matrix
    /// Learned per-frame and per-media-item embeddings (video models only).
    let frameEmbeddings: Matrix?
    let mediaTimeEmbeddings: Matrix?
    let layers: [Layer]
    let norm: (weight: Matrix, bias: Matrix?)
    static let eps: Float = 1e-5

    struct Layer {
        let normMedia, normLatents, ffNorm: (weight: Matrix, bias: Matrix?)
        let toQ, toKV, toOut, ff1, ff2: Weight
    }

    init(_ model: WeightSource, config c: PerceiverResamplerConfig, prefix p: String) throws {
        config = c
        latents = try model.matrix("\(p).latents")
        frameEmbeddings = c.maxNumFrames != nil ? try model.matrix("\(p).frame_embs") : nil
        mediaTimeEmbeddings = c.maxNumMedia != nil ? try model.matrix("\(p).media_time_embs") : nil
        norm = try model.layer("\(p).norm")
        layers = try (0..<c.depth).map { l in
            let a = "\(p).layers.\(l).0", f = "\(p).layers.\(l).1"
            return Layer(normMedia: try model.layer("\(a).norm_media"), normLatents: try model.layer("\(a).norm_latents"),
                         ffNorm: try model.layer("\(f).0"), toQ: try model.weight("\(a).to_q.weight"),
                         toKV: try model.weight("\(a).to_kv.weight"), toOut: try model.weight("\(a).to_out.weight"),
                         ff1: try model.weight("\(f).1.weight"), ff2: try model.weight("\(f).3.weight"))
        }
    }

    /// Resamples one media item of `frames` frames, each `tokensPerFrame`
    /// feature tokens ([frames · tokensPerFrame, dim], frame-major): adds
    /// frame embedding f to frame f's tokens and the media-time embedding of
    /// item `mediaIndex` to all of them (when the model has them), then
    /// resamples the frames jointly into one set of latents, as open_flamingo.
    public func resample(_ features: UnsafePointer<Float>, frames: Int, tokensPerFrame v: Int,
                         mediaIndex: Int) throws -> Buffer {
        let x = try timeEmbedded(features, frames: frames, tokensPerFrame: v, mediaIndex: mediaIndex)
        return self(x.p, tokens: frames * v)
    }

    /// The media tokens with the frame and media-time embeddings added: the
    /// resampler's input for one media item (shared with the device path).
    func timeEmbedded(_ features: UnsafePointer<Float>, frames: Int, tokensPerFrame v: Int,
                      mediaIndex: Int) throws -> Buffer {
        let d = config.dim, m = frames * v
        guard frames >= 1, v >= 1 else { throw FlamingoError.invalidArgument("a media item needs at least one frame and token") }
        if let max = config.maxNumFrames, frames > max {
            throw FlamingoError.invalidArgument("\(frames) frames in one media item; the model has embeddings for \(max)")
        }
        if frameEmbeddings == nil && frames > 1 {
            throw FlamingoError.unsupported("the model has no frame embeddings: media items must be single images")
        }
        if let max = config.maxNumMedia, mediaIndex >= max {
            throw FlamingoError.invalidArgument("media item \(mediaIndex + 1) is beyond the model's \(max) media-time embeddings")
        }
        let x = Buffer(m * d)
        x.p.update(from: features, count: m * d)
        if let fe = frameEmbeddings {
            for f in 0..<frames { for t in 0..<v { add(fe.row(f), into: x.p + (f * v + t) * d, count: d) } }
        }
        if let te = mediaTimeEmbeddings {
            for t in 0..<m { add(te.row(mediaIndex), into: x.p + t * d, count: d) }
        }
        return x
    }

    /// Resamples the `m` feature tokens of one media item [m, dim] into
    /// [numLatents, dim]. Keys and values are media ∥ latents; the media is
    /// re-normalised by every layer and never updated.
    public func callAsFunction(_ media: UnsafePointer<Float>, tokens m: Int) -> Buffer {
        let c = config, d = c.dim, n = c.numLatents, inner = c.heads * c.dimHead, eps = Self.eps
        let z = Buffer(n * d)
        z.p.update(from: latents.data, count: n * d)
        let kvIn = Buffer((m + n) * d), q = Buffer(n * inner), kv = Buffer((m + n) * 2 * inner)
        let o = Buffer(n * inner), t = Buffer(n * d), ff = Buffer(n * d * c.ffMult), ws = Workspace()
        for L in layers {
            layerNorm(media, rows: m, dim: d, weight: L.normMedia.weight, bias: L.normMedia.bias, eps: eps, into: kvIn.p)
            layerNorm(z.p, rows: n, dim: d, weight: L.normLatents.weight, bias: L.normLatents.bias, eps: eps, into: kvIn.p + m * d)
            linear(kvIn.p + m * d, m: n, L.toQ, into: q.p)
            linear(kvIn.p, m: m + n, L.toKV, into: kv.p)
            ws.reset()
            attentionBlock(q: q.p, qStride: inner, k: kv.p, v: kv.p + inner, kvStride: 2 * inner, nq: n, nk: m + n,
                           heads: c.heads, kvHeads: c.heads, headDim: c.dimHead, scale: 1 / Float(c.dimHead).squareRoot(),
                           select: { _ in .range(0..<(m + n)) }, out: o.p, outStride: inner, ws: ws)
            linear(o.p, m: n, L.toOut, into: t.p)
            add(t.p, into: z.p, count: n * d)
            layerNorm(z.p, rows: n, dim: d, weight: L.ffNorm.weight, bias: L.ffNorm.bias, eps: eps, into: t.p)
            linear(t.p, m: n, L.ff1, into: ff.p)
            gelu(ff.p, count: ff.count)
            linear(ff.p, m: n, L.ff2, into: t.p)
            add(t.p, into: z.p, count: n * d)
        }
        layerNorm(z.p, rows: n, dim: d, weight: norm.weight, bias: norm.bias, eps: eps, into: z.p)
        return z
    }
}
