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
        _ = try r.string("kind", oneOf: ["clip_vit"])
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
