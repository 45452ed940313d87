/// The whole model (spec/00 §2): vision encoder → Perceiver Resampler →
/// gated cross-attention blocks interleaved with the frozen LM layers.
public final class Flamingo: @unchecked Sendable {
    public let model: Model
    public let config: ModelConfig
    let vision: VisionTransformer
    let resampler: PerceiverResampler
    let lm: LanguageModel
    /// Gated cross-attention block before decoder layer i, if any.
    let crossAttention: [GatedCrossAttention?]

    public init(_ model: Model) throws {
        self.model = model
        let c = model.config
        config = c
        vision = try VisionTransformer(model, config: c.vision, prefix: "vision_encoder")
        resampler = try PerceiverResampler(model, config: c.resampler, prefix: "perceiver")
        lm = try LanguageModel(model, config: c.languageModel, prefix: "lang_encoder")
        let blocks = Set(c.crossAttentionLayers)
        crossAttention = try (0..<c.languageModel.layers).map { i in
            guard blocks.contains(i) else { return nil }
            return try GatedCrossAttention(model, config: c.crossAttention,
                                           prefix: "lang_encoder.\(c.languageModel.layersPath).\(i).gated_cross_attn_layer",
                                           latentsPerMedia: c.resampler.numLatents)
        }
    }

    /// Visual tokens per media item.
    public var latentsPerMedia: Int { config.resampler.numLatents }
    public var visualWidth: Int { config.resampler.dim }

    /// Encodes `count` normalised images [count, 3, S, S] into visual tokens
    /// [count · latents, dim], one media item per image.
    public func encodeImages(_ pixels: UnsafePointer<Float>, count: Int) -> Buffer {
        let s = config.vision.imageSize, per = latentsPerMedia * visualWidth
        let out = Buffer(count * per)
        for t in 0..<count {
            let feats = vision(pixels + t * 3 * s * s)
            let z = resampler(feats.p, tokens: config.vision.numPatches)
            (out.p + t * per).update(from: z.p, count: per)
        }
        return out
    }

    public func makeSequence(capacity: Int? = nil) -> Sequence {
        let lmc = config.languageModel
        return Sequence(self, cache: KVCache(layers: lmc.layers, capacity: capacity ?? lmc.maxSeqLen,
                                             width: lmc.kvHeads * lmc.headDim))
    }
}

/// One token sequence being evaluated: its KV cache, its media and the
/// per-layer media keys/values (computed once when media is set).
public final class Sequence {
    public let flamingo: Flamingo
    let cache: KVCache
    private let workspace = Workspace()
    private var hidden = Buffer(0)
    public private(set) var tokens: [Int] = []
    private var mediaKV: [GatedCrossAttention.MediaKV?] = []
    public private(set) var mediaCount = 0
    /// Logits of the last evaluated position (what generation continues from).
    public private(set) var lastLogits: [Float] = []

    /// Observes intermediate activations: (name, rows × D values).
    public typealias Observer = (String, UnsafePointer<Float>, Int) -> Void

    init(_ f: Flamingo, cache: KVCache) {
        flamingo = f
        self.cache = cache
        mediaKV = f.crossAttention.map { _ in nil }
    }

    /// An independent sequence with the same tokens, cache and media (the
    /// media keys/values are immutable and shared).
    public func copy() -> Sequence {
        let s = Sequence(flamingo, cache: cache.copy())
        s.tokens = tokens
        s.mediaKV = mediaKV
        s.mediaCount = mediaCount
        s.lastLogits = lastLogits
        return s
    }

    public var length: Int { cache.length }

    /// Sets the visual tokens [count · latents, dim] the text attends to
    /// (nil or 0 removes the media).
    public func setMedia(_ visual: UnsafePointer<Float>?, count: Int) {
        guard let visual, count > 0 else {
            mediaCount = 0
            mediaKV = flamingo.crossAttention.map { _ in nil }
            return
        }
        mediaCount = count
        let tokens = count * flamingo.latentsPerMedia
        mediaKV = flamingo.crossAttention.map { $0?.mediaKV(visual, tokens: tokens) }
    }

    /// Appends `newTokens` (with `valid[i] == false` marking left padding)
    /// and returns their logits [rows, vocab], or only the last row's.
    public func evaluate(_ newTokens: [Int], valid: [Bool]? = nil, allLogits: Bool = false,
                         observe: Observer? = nil) throws -> Buffer {
        let c = flamingo.config, lmc = c.languageModel, d = lmc.hiddenSize, rows = newTokens.count
        guard rows > 0 else { throw FlamingoError.invalidArgument("no tokens to evaluate") }
        for t in newTokens where t < 0 || t >= lmc.vocabSize {
            throw FlamingoError.invalidArgument("token id \(t) is outside the vocabulary [0, \(lmc.vocabSize))")
        }
        let valid = valid ?? [Bool](repeating: true, count: rows)
        guard valid.count == rows else { throw FlamingoError.invalidArgument("valid mask has \(valid.count) entries for \(rows) tokens") }
        let start = try cache.append(valid: valid)
        // text_time counts <image> tokens over the whole sequence, so decode
        // steps attend to the last image of the prompt (cached-media mode).
        let all = tokens + newTokens
        let textTime = Array(GatedCrossAttention.textTime(tokens: all, imageToken: c.tokens.image,
                                                          semantics: c.crossAttention.mediaSemantics)[start...])
        if hidden.count < rows * d { hidden = Buffer(rows * d) }
        let x = hidden
        flamingo.lm.embed(newTokens, into: x.p)
        observe?("hidden.embed", x.p, rows)
        for (i, layer) in flamingo.lm.layers.enumerated() {
            if let block = flamingo.crossAttention[i] {
                // Without media the attention part is zero; the gated
                // feed-forward still applies (spec/30 §1).
                workspace.reset()
                block(x.p, rows: rows, textTime: textTime, media: mediaKV[i], ws: workspace)
                observe?("xattn.\(i)", x.p, rows)
            }
            workspace.reset()
            layer(x.p, rows: rows, start: start, layer: i, cache: cache, ws: workspace)
            observe?("hidden.\(i)", x.p, rows)
        }
        tokens = all
        let outRows = allLogits ? rows : 1
        let first = x.p + (rows - outRows) * d
        let logits = Buffer(outRows * lmc.vocabSize)
        flamingo.lm.logits(first, rows: outRows, into: logits.p)
        observe?("hidden.final", first, outRows)
        lastLogits = Array(UnsafeBufferPointer(start: logits.p + (outRows - 1) * lmc.vocabSize, count: lmc.vocabSize))
        return logits
    }

    /// Returns to an earlier state of this sequence (its length and the
    /// logits it had then): used to undo a failed generation.
    func restore(length n: Int, lastLogits logits: [Float]) {
        truncate(to: n)
        lastLogits = logits
    }

    /// Forgets every token from position `n` on (keeps the media).
    public func truncate(to n: Int) {
        cache.truncate(to: n)
        tokens.removeSubrange(min(max(n, 0), tokens.count)...)
        lastLogits = []
    }
}
