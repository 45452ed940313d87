/// The frozen decoder LM (spec/40). One config covers every family; the
/// family-specific keys are accepted only for their family.
public struct LanguageModelConfig: Equatable, Sendable {
    public enum Family: String, Sendable, CaseIterable {
        case mpt, mosaicGPT = "mosaic_gpt", gptNeoX = "gpt_neox", llama
    }

    public var family: Family
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var intermediateSize: Int
    public var vocabSize: Int
    public var maxSeqLen: Int
    public var normEps: Float
    public var tieWordEmbeddings: Bool
    // ALiBi families (mpt, mosaic_gpt)
    public var alibiBiasMax: Float = 8
    public var qkLayerNorm = false
    public var normBias = false
    // rotary families (gpt_neox, llama)
    public var rotaryPct: Float = 1
    public var ropeTheta: Float = 10000
    public var parallelResidual = false

    public var headDim: Int { hiddenSize / heads }

    /// Module path of the decoder layer list (open_flamingo's
    /// decoder_layers_attr_name), under which cross-attention blocks live.
    public var layersPath: String {
        switch family {
        case .mpt, .mosaicGPT: return "transformer.blocks"
        case .gptNeoX: return "gpt_neox.layers"
        case .llama: return "model.layers"
        }
    }

    init(_ r: inout ConfigReader) throws {
        let name = try r.string("family", oneOf: Family.allCases.map(\.rawValue))
        family = Family(rawValue: name) ?? .mpt
        hiddenSize = try r.int("hidden_size")
        layers = try r.int("layers")
        heads = try r.int("heads")
        intermediateSize = try r.int("intermediate_size")
        vocabSize = try r.int("vocab_size")
        maxSeqLen = try r.int("max_seq_len", max: 1 << 24)
        normEps = Float(try r.double("norm_eps", default: family == .llama ? 1e-6 : 1e-5, min: 0, max: 1))
        tieWordEmbeddings = try r.bool("tie_word_embeddings", default: family == .mpt || family == .mosaicGPT)
        kvHeads = heads
        switch family {
        case .mpt, .mosaicGPT:
            alibiBiasMax = Float(try r.double("alibi_bias_max", default: 8, min: 0))
            qkLayerNorm = try r.bool("qk_ln", default: family == .mosaicGPT)
            if family == .mpt { normBias = try r.bool("norm_bias", default: false) }
            guard tieWordEmbeddings else {
                throw FlamingoError.unsupported("config.json: language_model: \(name) models have tied word embeddings")
            }
        case .gptNeoX:
            rotaryPct = Float(try r.double("rotary_pct", default: 1, min: 0, max: 1))
            ropeTheta = Float(try r.double("rope_theta", default: 10000, min: 1))
            parallelResidual = try r.bool("parallel_residual", default: false)
        case .llama:
            kvHeads = try r.int("kv_heads", default: heads)
            ropeTheta = Float(try r.double("rope_theta", default: 10000, min: 1))
        }
        guard hiddenSize % heads == 0 else {
            throw FlamingoError.invalidFormat("config.json: language_model.hidden_size \(hiddenSize) is not divisible by heads \(heads)")
        }
        guard heads % kvHeads == 0 else {
            throw FlamingoError.invalidFormat("config.json: language_model.heads \(heads) is not a multiple of kv_heads \(kvHeads)")
        }
    }

    /// Every tensor of the LM under `prefix`, decoder layers included.
    func weights(prefix p: String) -> [WeightSpec] {
        switch family {
        case .mpt: return MPT.weights(self, prefix: p)
        case .mosaicGPT: return MosaicGPT.weights(self, prefix: p)
        case .gptNeoX: return GPTNeoX.weights(self, prefix: p)
        case .llama: return LLaMA.weights(self, prefix: p)
        }
    }
}
