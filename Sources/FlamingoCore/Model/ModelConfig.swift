/// config.json of a model directory (docs/model-format.md): the whole
/// architecture, from which the exact tensor inventory follows.
public struct ModelConfig: Equatable, Sendable {
    public struct SpecialTokens: Equatable, Sendable {
        public var image: Int
        public var endOfChunk: Int
        public var pad: Int?
        public var bos: Int?
        public var eos: Int?
    }

    public struct Preprocess: Equatable, Sendable {
        public var imageSize: Int
        public var mean: [Float]
        public var std: [Float]
    }

    public static let formatVersion = 1

    public var architecture: String
    public var weightFiles: [String]?
    public var tokenizerFile: String
    public var vision: VisionEncoderConfig
    public var resampler: PerceiverResamplerConfig
    public var crossAttention: GatedCrossAttentionConfig
    public var languageModel: LanguageModelConfig
    public var tokens: SpecialTokens
    public var preprocess: Preprocess
    /// Present when some matrices are stored as affine integers.
    public var quantization: QuantizationConfig?

    public init(json: JSON) throws {
        var r = try ConfigReader(json, path: "")
        _ = try r.string("format", oneOf: ["flamingo"])
        let version = try r.int("format_version", max: 1 << 20)
        guard version <= Self.formatVersion else {
            throw FlamingoError.unsupported("config.json: format_version \(version) is newer than this library supports (\(Self.formatVersion))")
        }
        architecture = try r.string("architecture", oneOf: ["openflamingo"])
        if let files = r.raw("weights"), files != .null {
            guard let a = files.array, !a.isEmpty else {
                throw FlamingoError.invalidFormat("config.json: weights must be a non-empty array of file names")
            }
            weightFiles = try a.map {
                guard let s = $0.string, !s.isEmpty, !s.contains("/"), s != "..", s != "." else {
                    throw FlamingoError.invalidFormat("config.json: weights entries must be plain file names in the model directory")
                }
                return s
            }
        }
        tokenizerFile = try r.string("tokenizer", default: "tokenizer.json")
        guard !tokenizerFile.contains("/") else {
            throw FlamingoError.invalidFormat("config.json: tokenizer must be a plain file name in the model directory")
        }

        var v = try r.child("vision"); vision = try VisionEncoderConfig(&v); try v.finish()
        var p = try r.child("resampler"); resampler = try PerceiverResamplerConfig(&p); try p.finish()
        var x = try r.child("cross_attention"); crossAttention = try GatedCrossAttentionConfig(&x); try x.finish()
        var l = try r.child("language_model"); languageModel = try LanguageModelConfig(&l); try l.finish()

        let vocab = languageModel.vocabSize
        var t = try r.child("tokens")
        tokens = SpecialTokens(image: try t.int("image", min: 0, max: vocab - 1),
                               endOfChunk: try t.int("endofchunk", min: 0, max: vocab - 1),
                               pad: try t.optionalInt("pad", max: vocab - 1),
                               bos: try t.optionalInt("bos", max: vocab - 1),
                               eos: try t.optionalInt("eos", max: vocab - 1))
        try t.finish()

        if let q = r.raw("quantization"), q != .null { quantization = try QuantizationConfig(q) }

        var pp = try r.child("preprocess")
        preprocess = Preprocess(imageSize: try pp.int("image_size", max: 4096),
                                mean: try pp.floats("mean", count: 3),
                                std: try pp.floats("std", count: 3))
        _ = try pp.string("resize", default: "bicubic", oneOf: ["bicubic"])
        _ = try pp.string("crop", default: "center", oneOf: ["center"])
        try pp.finish()
        try r.finish()

        guard preprocess.std.allSatisfy({ $0 > 0 }) else {
            throw FlamingoError.invalidFormat("config.json: preprocess.std must be positive")
        }
        guard preprocess.imageSize == vision.imageSize else {
            throw FlamingoError.invalidFormat("config.json: preprocess.image_size \(preprocess.imageSize) differs from vision.image_size \(vision.imageSize)")
        }
        guard resampler.dim == vision.width else {
            throw FlamingoError.invalidFormat("config.json: resampler.dim \(resampler.dim) must equal vision.width \(vision.width)")
        }
    }

    /// Decoder layers preceded by a gated cross-attention block.
    public var crossAttentionLayers: [Int] {
        crossAttention.layerIndices(numLayers: languageModel.layers)
    }

    /// The complete tensor inventory the weights must match exactly.
    public var expectedWeights: [WeightSpec] {
        var w = vision.weights(prefix: "vision_encoder")
        w += resampler.weights(prefix: "perceiver")
        w += languageModel.weights(prefix: "lang_encoder")
        for i in crossAttentionLayers {
            w += crossAttention.weights(prefix: "lang_encoder.\(languageModel.layersPath).\(i).gated_cross_attn_layer",
                                        lmDim: languageModel.hiddenSize, visualDim: resampler.dim)
        }
        return w
    }
}
