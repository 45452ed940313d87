/// The vision encoder of a model: OpenFlamingo's CLIP ViT or the Flamingo
/// paper's NFNet (config.json `vision.kind`). Both turn one preprocessed
/// image [3, S, S] into `numPatches` tokens of `width` channels, which is all
/// the Perceiver Resampler needs to know.
public enum VisionEncoderConfig: Equatable, Sendable {
    case clipViT(VisionTransformerConfig)
    case nfnet(NFNetConfig)

    init(_ r: inout ConfigReader) throws {
        let kind = try r.string("kind", oneOf: ["clip_vit", "nfnet"])
        switch kind {
        case "nfnet": self = .nfnet(try NFNetConfig(&r))
        default: self = .clipViT(try VisionTransformerConfig(&r))
        }
    }

    public var kind: String {
        switch self {
        case .clipViT: return "clip_vit"
        case .nfnet: return "nfnet"
        }
    }

    public var imageSize: Int {
        switch self {
        case .clipViT(let c): return c.imageSize
        case .nfnet(let c): return c.imageSize
        }
    }

    /// Tokens per image handed to the resampler.
    public var numPatches: Int {
        switch self {
        case .clipViT(let c): return c.numPatches
        case .nfnet(let c): return c.numPatches
        }
    }

    /// Channels per token (the resampler's dim).
    public var width: Int {
        switch self {
        case .clipViT(let c): return c.width
        case .nfnet(let c): return c.featureChannels
        }
    }

    /// Pixels per token side: the ViT's patch, the NFNet's total stride.
    public var patchSize: Int {
        switch self {
        case .clipViT(let c): return c.patchSize
        case .nfnet(let c): return c.imageSize / max(c.outputSize(height: c.imageSize, width: c.imageSize).height, 1)
        }
    }

    /// Transformer blocks, or NFNet residual blocks.
    public var layers: Int {
        switch self {
        case .clipViT(let c): return c.layers
        case .nfnet(let c): return c.blocks.count
        }
    }

    /// Attention heads (0 for the convolutional NFNet).
    public var heads: Int {
        switch self {
        case .clipViT(let c): return c.heads
        case .nfnet: return 0
        }
    }

    func weights(prefix p: String) -> [WeightSpec] {
        switch self {
        case .clipViT(let c): return c.weights(prefix: p)
        case .nfnet(let c): return c.weights(prefix: p)
        }
    }

    /// The encoder with its weights from `model` under `prefix`.
    func load(_ model: Model, prefix: String) throws -> VisionEncoder {
        switch self {
        case .clipViT(let c): return try VisionTransformer(model, config: c, prefix: prefix)
        case .nfnet(let c): return try NFNet(model, config: c, prefix: prefix)
        }
    }
}

/// One image [3, S, S] (normalised) → tokens [numPatches, width].
protocol VisionEncoder: AnyObject {
    func callAsFunction(_ pixels: UnsafePointer<Float>) -> Buffer
}

extension VisionTransformer: VisionEncoder {}
extension NFNet: VisionEncoder {}
