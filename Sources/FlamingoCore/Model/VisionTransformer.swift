/// Vision encoder: open_clip's VisionTransformer as OpenFlamingo uses it
/// (spec/10). Features are the patch tokens of the last block, class token
/// dropped, with `ln_post` only when `lnPostOnTokens` (open_clip >= 2.23).
public struct VisionTransformerConfig: Equatable, Sendable {
    public enum Activation: String, Sendable { case quickGELU = "quick_gelu", gelu }

    public var imageSize: Int
    public var patchSize: Int
    public var width: Int
    public var layers: Int
    public var heads: Int
    public var mlpDim: Int
    public var activation: Activation
    public var layerNormEps: Float
    public var lnPostOnTokens: Bool

    public var gridSize: Int { imageSize / patchSize }
    /// Tokens per image handed to the resampler.
    public var numPatches: Int { gridSize * gridSize }

    init(_ r: inout ConfigReader) throws {
        imageSize = try r.int("image_size", max: 4096)
        patchSize = try r.int("patch_size", max: 4096)
        width = try r.int("width")
        layers = try r.int("layers", min: 0)
        heads = try r.int("heads")
        mlpDim = try r.int("mlp_dim")
        activation = Activation(rawValue: try r.string("activation", default: "quick_gelu",
                                                       oneOf: ["quick_gelu", "gelu"])) ?? .quickGELU
        layerNormEps = Float(try r.double("layer_norm_eps", default: 1e-5, min: 0, max: 1))
        lnPostOnTokens = try r.bool("ln_post_on_tokens", default: false)
        guard imageSize % patchSize == 0 else {
            throw FlamingoError.invalidFormat("config.json: vision.image_size \(imageSize) is not a multiple of patch_size \(patchSize)")
        }
        guard width % heads == 0 else {
            throw FlamingoError.invalidFormat("config.json: vision.width \(width) is not divisible by heads \(heads)")
        }
    }

    func weights(prefix p: String) -> [WeightSpec] {
        var w: [WeightSpec] = [
            WeightSpec("\(p).conv1.weight", [width, 3, patchSize, patchSize]),
            WeightSpec("\(p).class_embedding", [width]),
            WeightSpec("\(p).positional_embedding", [numPatches + 1, width]),
        ]
        w.norm("\(p).ln_pre", width)
        for i in 0..<layers {
            let b = "\(p).transformer.resblocks.\(i)"
            w.norm("\(b).ln_1", width)
            w.append(WeightSpec("\(b).attn.in_proj_weight", [3 * width, width]))
            w.append(WeightSpec("\(b).attn.in_proj_bias", [3 * width]))
            w.linear("\(b).attn.out_proj", out: width, in: width, bias: true)
            w.norm("\(b).ln_2", width)
            w.linear("\(b).mlp.c_fc", out: mlpDim, in: width, bias: true)
            w.linear("\(b).mlp.c_proj", out: width, in: mlpDim, bias: true)
        }
        w.norm("\(p).ln_post", width)
        return w
    }
}

/// The encoder itself: pixels [3, H, W] of one image → [numPatches, width].
public final class VisionTransformer {
    /// The image's patches [numPatches, 3·p·p], each flattened in (channel,
    /// dy, dx) order, the conv weight's order: the patch embedding is then a
    /// matrix product.
    static func patches(_ pixels: UnsafePointer<Float>, config c: VisionTransformerConfig) -> Buffer {
        let ps = c.patchSize, g = c.gridSize, s = c.imageSize
        let patches = Buffer(c.numPatches * 3 * ps * ps)
        var o = 0
        for py in 0..<g { for px in 0..<g { for ch in 0..<3 { for dy in 0..<ps { for dx in 0..<ps {
            patches[o] = pixels[(ch * s + py * ps + dy) * s + px * ps + dx]
            o += 1
        } } } } }
        return patches
    }

    public let config: VisionTransformerConfig
    let patchEmbedding: Matrix       // conv1 as [width, 3·p·p]
    let classEmbedding: Matrix
    let positionalEmbedding: Matrix  // [numPatches + 1, width]
    let lnPre: (weight: Matrix, bias: Matrix?)
    let lnPost: (weight: Matrix, bias: Matrix?)
    let blocks: [Block]

    struct Block {
        let ln1, ln2: (weight: Matrix, bias: Matrix?)
        let inProj, outProj, fc, proj: (weight: Weight, bias: Matrix?)
    }

    init(_ model: WeightSource, config c: VisionTransformerConfig, prefix p: String) throws {
        config = c
        let conv = try model.tensor("\(p).conv1.weight")
        patchEmbedding = Matrix(conv, rows: c.width, cols: 3 * c.patchSize * c.patchSize)
        classEmbedding = try model.matrix("\(p).class_embedding")
        positionalEmbedding = try model.matrix("\(p).positional_embedding")
        lnPre = try model.layer("\(p).ln_pre")
        lnPost = try model.layer("\(p).ln_post")
        blocks = try (0..<c.layers).map { i in
            let b = "\(p).transformer.resblocks.\(i)"
            return Block(ln1: try model.layer("\(b).ln_1"), ln2: try model.layer("\(b).ln_2"),
                         inProj: (try model.weight("\(b).attn.in_proj_weight"), try model.matrix("\(b).attn.in_proj_bias")),
                         outProj: try model.linearLayer("\(b).attn.out_proj"),
                         fc: try model.linearLayer("\(b).mlp.c_fc"), proj: try model.linearLayer("\(b).mlp.c_proj"))
        }
    }

    /// Patch tokens of one normalised image laid out [3, imageSize, imageSize]:
    /// [numPatches, width].
    public func callAsFunction(_ pixels: UnsafePointer<Float>) -> Buffer {
        let c = config, w = c.width, n = c.numPatches + 1
        let hd = w / c.heads, eps = c.layerNormEps
        let patches = Self.patches(pixels, config: c)
        let x = Buffer(n * w), h = Buffer(n * w), qkv = Buffer(n * 3 * w), attn = Buffer(n * w)
        let mlp = Buffer(n * c.mlpDim), ws = Workspace()
        x.p.update(from: classEmbedding.data, count: w)
        linear(patches.p, m: c.numPatches, patchEmbedding, into: x.p + w)
        add(positionalEmbedding.data, into: x.p, count: n * w)
        layerNorm(x.p, rows: n, dim: w, weight: lnPre.weight, bias: lnPre.bias, eps: eps, into: x.p)
        for b in blocks {
            layerNorm(x.p, rows: n, dim: w, weight: b.ln1.weight, bias: b.ln1.bias, eps: eps, into: h.p)
            linear(h.p, m: n, b.inProj.weight, bias: b.inProj.bias, into: qkv.p)
            ws.reset()
            attentionBlock(q: qkv.p, qStride: 3 * w, k: qkv.p + w, v: qkv.p + 2 * w, kvStride: 3 * w, nq: n, nk: n,
                           heads: c.heads, kvHeads: c.heads, headDim: hd, scale: 1 / Float(hd).squareRoot(),
                           select: { _ in .range(0..<n) }, out: attn.p, outStride: w, ws: ws)
            linear(attn.p, m: n, b.outProj.weight, bias: b.outProj.bias, into: h.p)
            add(h.p, into: x.p, count: n * w)
            layerNorm(x.p, rows: n, dim: w, weight: b.ln2.weight, bias: b.ln2.bias, eps: eps, into: h.p)
            linear(h.p, m: n, b.fc.weight, bias: b.fc.bias, into: mlp.p)
            switch c.activation {
            case .quickGELU: quickGELU(mlp.p, count: mlp.count)
            case .gelu: gelu(mlp.p, count: mlp.count)
            }
            linear(mlp.p, m: n, b.proj.weight, bias: b.proj.bias, into: h.p)
            add(h.p, into: x.p, count: n * w)
        }
        if c.lnPostOnTokens {
            layerNorm(x.p, rows: n, dim: w, weight: lnPost.weight, bias: lnPost.bias, eps: eps, into: x.p)
        }
        let out = Buffer(c.numPatches * w)
        out.p.update(from: x.p + w, count: c.numPatches * w)
        return out
    }
}
