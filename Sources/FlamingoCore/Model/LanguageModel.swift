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

/// The rows of one sequence inside a forward step that may batch several
/// sequences: matrix products run over all rows at once (each weight is read
/// once per step), attention runs per sequence over its own cache.
struct BatchSegment {
    let rows: Range<Int>   // rows of the step's activations
    let start: Int         // cache position of the first row
    let cache: KVCache

    /// Copies row r of `src` (stride `stride`, `count` values from `offset`)
    /// into this sequence's cache buffer `dst` at the row's position.
    func store(_ src: UnsafePointer<Float>, stride: Int, offset: Int, count: Int, into dst: Buffer) {
        for (i, r) in rows.enumerated() {
            (dst.p + (start + i) * cache.width).update(from: src + r * stride + offset, count: count)
        }
    }
}

/// One frozen decoder layer of some LM family. It appends each segment's
/// keys and values to that segment's cache and updates `x` [rows, D] in place.
protocol DecoderLayer {
    func callAsFunction(_ x: UnsafeMutablePointer<Float>, rows: Int, segments: [BatchSegment], layer: Int, ws: Workspace)
}

/// Causal self-attention of a segment's queries (q points at its first row)
/// over its cache, for every head; grouped-query heads share K/V.
func causalSelfAttention(q: UnsafePointer<Float>, segment seg: BatchSegment, layer: Int,
                         heads: Int, kvHeads: Int, headDim hd: Int, alibiSlopes: [Float]? = nil,
                         ws: Workspace, into o: UnsafeMutablePointer<Float>) {
    let group = heads / kvHeads, cache = seg.cache, kw = cache.width, start = seg.start, rows = seg.rows.count
    cache.valid.withUnsafeBufferPointer { valid in
        if rows > 1 {
            attentionBlock(q: q, qStride: heads * hd, k: cache.keys[layer].p, v: cache.values[layer].p, kvStride: kw,
                           nq: rows, nk: start + rows, heads: heads, kvHeads: kvHeads, headDim: hd,
                           scale: 1 / Float(hd).squareRoot(), alibiSlopes: alibiSlopes, queryPos: { start + $0 },
                           keyValid: valid.baseAddress, select: { .range(0..<(start + $0 + 1)) },
                           out: o, outStride: heads * hd, ws: ws)
            return
        }
        let scores = ws.take(start + 1)
        for h in 0..<heads {
            let kvOff = (h / group) * hd
            attendRow(q: q + h * hd, k: cache.keys[layer].p + kvOff, v: cache.values[layer].p + kvOff,
                      stride: kw, headDim: hd, keys: 0..<(start + 1), scale: 1 / Float(hd).squareRoot(),
                      alibiSlope: alibiSlopes?[h] ?? 0, queryPos: start, keyValid: valid.baseAddress,
                      scores: scores, out: o + h * hd)
        }
    }
}

/// Rotary embedding, rotate-half convention, on the first `dims` channels of
/// each head of a segment's rows of `x` (stride `stride`; x points at the
/// segment's first row), at the positions of the segment's cache.
func applyRotary(_ x: UnsafeMutablePointer<Float>, stride: Int, segment seg: BatchSegment, heads: Int, headDim hd: Int,
                 dims: Int, theta: Float) {
    let half = dims / 2
    guard half > 0 else { return }
    var invFreq = [Float](repeating: 0, count: half)
    for i in 0..<half { invFreq[i] = 1 / powf(theta, Float(2 * i) / Float(dims)) }
    for r in 0..<seg.rows.count {
        let pos = Float(seg.cache.positions[seg.start + r])
        for i in 0..<half {
            let angle = pos * invFreq[i]
            let c = cosf(angle), s = sinf(angle)
            for h in 0..<heads {
                let p = x + r * stride + h * hd
                let a = p[i], b = p[i + half]
                p[i] = a * c - b * s
                p[i + half] = b * c + a * s
            }
        }
    }
}

/// The LM around its decoder layers: embedding, final norm, output head.
public final class LanguageModel {
    public let config: LanguageModelConfig
    let embedding: Weight
    let head: Weight                         // == embedding when tied
    let finalNorm: (weight: Matrix, bias: Matrix?)
    let layers: [DecoderLayer]

    init(_ model: WeightSource, config c: LanguageModelConfig, prefix p: String) throws {
        config = c
        switch c.family {
        case .mpt:
            embedding = try model.weight("\(p).transformer.wte.weight")
            finalNorm = try model.layer("\(p).transformer.norm_f")
            layers = try (0..<c.layers).map { try MPT.Layer(model, config: c, prefix: "\(p).transformer.blocks.\($0)") }
        case .mosaicGPT:
            embedding = try model.weight("\(p).transformer.wte.weight")
            finalNorm = try model.layer("\(p).transformer.ln_f")
            layers = try (0..<c.layers).map { try MPT.Layer(model, config: c, prefix: "\(p).transformer.blocks.\($0)") }
        case .gptNeoX:
            embedding = try model.weight("\(p).gpt_neox.embed_in.weight")
            finalNorm = try model.layer("\(p).gpt_neox.final_layer_norm")
            layers = try (0..<c.layers).map { try GPTNeoX.Layer(model, config: c, prefix: "\(p).gpt_neox.layers.\($0)") }
        case .llama:
            embedding = try model.weight("\(p).model.embed_tokens.weight")
            finalNorm = try model.layer("\(p).model.norm")
            layers = try (0..<c.layers).map { try LLaMA.Layer(model, config: c, prefix: "\(p).model.layers.\($0)") }
        }
        if c.tieWordEmbeddings {
            head = embedding
        } else {
            head = try model.weight(c.family == .gptNeoX ? "\(p).embed_out.weight" : "\(p).lm_head.weight")
        }
    }

    func embed(_ tokens: [Int], into x: UnsafeMutablePointer<Float>) {
        let d = config.hiddenSize
        for (i, t) in tokens.enumerated() { embedding.row(t, into: x + i * d) }
    }

    /// Final norm in place, then logits [rows, vocab].
    func logits(_ x: UnsafeMutablePointer<Float>, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let d = config.hiddenSize
        if config.family == .llama {
            rmsNorm(x, rows: rows, dim: d, weight: finalNorm.weight, eps: config.normEps, into: x)
        } else {
            layerNorm(x, rows: rows, dim: d, weight: finalNorm.weight, bias: finalNorm.bias, eps: config.normEps, into: x)
        }
        linear(x, m: rows, head, into: out)
    }
}

import Glibc
