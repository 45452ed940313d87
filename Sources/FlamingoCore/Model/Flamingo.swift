import Glibc

/// Where a model's forward pass runs.
public enum ComputeBackend {
    /// SIMD kernels and OpenBLAS on the host.
    case cpu
    /// An OpenCL device: weights, activations, KV caches and media on the device.
    case openCL(OpenCLRuntime)

    /// The OpenCL backend on the device `spec` names (an index of
    /// `Devices.all()`, a name substring, or nil for the default; the
    /// FLAMINGO_DEVICE environment variable overrides it), sharing one
    /// runtime (context, queue, compiled programs) per device in the process.
    public static func openCL(device spec: String?) throws -> ComputeBackend {
        .openCL(try OpenCLRuntime.shared(OpenCLDevice.select(spec)))
    }
}

/// The whole model (spec/00 §2): vision encoder → Perceiver Resampler →
/// gated cross-attention blocks interleaved with the frozen LM layers.
public final class Flamingo: @unchecked Sendable {
    public let model: Model
    public let config: ModelConfig
    /// The host vision encoder (nil when the device runs it).
    let vision: VisionEncoder?
    /// Host part of the resampler (time embeddings; the whole resampler on the CPU backend).
    let resampler: PerceiverResampler
    /// The CPU backend's language model and gated cross-attention blocks.
    let text: HostText?
    /// The OpenCL backend's model.
    let device: DeviceFlamingo?
    /// The model's tokenizer, when the directory has one.
    public let tokenizer: Tokenizer?

    struct HostText {
        let lm: LanguageModel
        /// Gated cross-attention block before decoder layer i, if any.
        let crossAttention: [GatedCrossAttention?]
    }

    public init(_ model: Model, backend: ComputeBackend = .cpu) throws {
        self.model = model
        let c = model.config
        config = c
        resampler = try PerceiverResampler(model, config: c.resampler, prefix: "perceiver")
        tokenizer = try Self.loadTokenizer(model)
        switch backend {
        case .cpu:
            device = nil
            vision = try c.vision.load(model, prefix: "vision_encoder")
            let lm = try LanguageModel(model, config: c.languageModel, prefix: "lang_encoder")
            let blocks = Set(c.crossAttentionLayers)
            let xattn = try (0..<c.languageModel.layers).map { i -> GatedCrossAttention? in
                guard blocks.contains(i) else { return nil }
                return try GatedCrossAttention(model, config: c.crossAttention,
                                               prefix: "lang_encoder.\(c.languageModel.layersPath).\(i).gated_cross_attn_layer",
                                               latentsPerMedia: c.resampler.numLatents)
            }
            text = HostText(lm: lm, crossAttention: xattn)
        case .openCL(let rt):
            let d = try DeviceFlamingo(model, runtime: rt)
            device = d
            vision = nil  // the device runs the vision encoder (ViT or NFNet)
            text = nil
        }
    }

    /// Loads tokenizer.json when present and checks that its special tokens
    /// have the ids config.json states.
    static func loadTokenizer(_ model: Model) throws -> Tokenizer? {
        let path = model.tokenizerPath
        guard access(path, F_OK) == 0 else { return nil }
        let t = try withContext(model.config.tokenizerFile) { try Tokenizer(path: path) }
        let tokens = model.config.tokens
        for (name, id) in [("<image>", tokens.image), ("<|endofchunk|>", tokens.endOfChunk)] {
            guard let found = t.id(of: name) else {
                throw FlamingoError.invalidFormat("\(model.config.tokenizerFile) has no \(name) token")
            }
            guard found == id else {
                throw FlamingoError.invalidFormat("\(model.config.tokenizerFile) maps \(name) to \(found) but config.json says \(id)")
            }
        }
        guard t.vocabSize <= model.config.languageModel.vocabSize else {
            throw FlamingoError.invalidFormat("\(model.config.tokenizerFile) has \(t.vocabSize) tokens, more than the model's vocabulary of \(model.config.languageModel.vocabSize)")
        }
        return t
    }

    /// Visual tokens per media item.
    public var latentsPerMedia: Int { config.resampler.numLatents }
    public var visualWidth: Int { config.resampler.dim }

    /// Encodes `count` normalised images [count, 3, S, S] into visual tokens
    /// [count · latents, dim], one media item per image.
    public func encodeImages(_ pixels: UnsafePointer<Float>, count: Int) throws -> Buffer {
        let s = config.vision.imageSize, per = latentsPerMedia * visualWidth
        let out = Buffer(count * per)
        for t in 0..<count {
            let z = try encodeMedia(frames: [pixels + t * 3 * s * s], mediaIndex: t)
            (out.p + t * per).update(from: z.p, count: per)
        }
        return out
    }

    /// Visual tokens [latents, dim] of one media item: each frame (a
    /// preprocessed image [3, S, S]) through the vision encoder, then all
    /// frames resampled jointly with the frame and media-time embeddings of
    /// the `mediaIndex`-th item (spec/20; video models only have them).
    public func encodeMedia(frames: [UnsafePointer<Float>], mediaIndex: Int) throws -> Buffer {
        let v = config.vision.numPatches, w = config.vision.width
        let features = Buffer(frames.count * v * w)
        if let vision {
            for (f, pixels) in frames.enumerated() {
                let feats = vision(pixels)
                (features.p + f * v * w).update(from: feats.p, count: v * w)
            }
        } else if let device, let feats = try device.features(frames) {
            // The ViT ran on the device; the time embeddings are added on the host.
            let all = try device.rt.download(feats.buffer, count: features.count)
            features.p.update(from: all, count: features.count)
        }
        guard let device else {
            return try resampler.resample(features.p, frames: frames.count, tokensPerFrame: v, mediaIndex: mediaIndex)
        }
        let x = try resampler.timeEmbedded(features.p, frames: frames.count, tokensPerFrame: v, mediaIndex: mediaIndex)
        return try device.resample(x, tokens: frames.count * v)
    }

    /// Per decoder layer: no media keys/values.
    var noMedia: [GatedCrossAttention.MediaKV?] { Array(repeating: nil, count: config.languageModel.layers) }

    public func makeSequence(capacity: Int? = nil) throws -> TokenSequence {
        let lmc = config.languageModel, n = capacity ?? lmc.maxSeqLen
        guard let device else {
            return TokenSequence(self, cache: KVCache(layers: lmc.layers, capacity: n, width: lmc.kvHeads * lmc.headDim))
        }
        // The host cache keeps only the bookkeeping; keys and values live on the device.
        return TokenSequence(self, cache: KVCache(layers: 0, capacity: n, width: 0),
                             device: try device.makeSequence(capacity: n))
    }
}

/// New tokens for one sequence in a forward step.
public struct Step {
    public let sequence: TokenSequence
    public let tokens: [Int]
    public let valid: [Bool]
    public init(_ sequence: TokenSequence, _ tokens: [Int], valid: [Bool]? = nil) {
        self.sequence = sequence
        self.tokens = tokens
        self.valid = valid ?? [Bool](repeating: true, count: tokens.count)
    }
}

extension Flamingo {
    /// Evaluates new tokens of one or more sequences in a single forward
    /// pass: the matrix products run over the rows of all of them (each
    /// weight is read once per step, which is what makes batched decoding and
    /// beam search cheap), attention runs per sequence over its own cache and
    /// media. Returns each sequence's logits (all rows or the last one).
    /// Nothing changes if any step is invalid.
    public func evaluate(_ steps: [Step], allLogits: Bool = false, observe: TokenSequence.Observer? = nil) throws -> [Buffer] {
        guard !steps.isEmpty else { return [] }
        guard Set(steps.map { ObjectIdentifier($0.sequence) }).count == steps.count else {
            throw FlamingoError.invalidArgument("a sequence appears twice in one batch")
        }
        for s in steps {
            guard s.sequence.flamingo === self else { throw FlamingoError.invalidArgument("a sequence of another model is in the batch") }
            try s.sequence.validate(s)
        }
        let lmc = config.languageModel, vocab = lmc.vocabSize
        var segments: [BatchSegment] = [], textTimes: [[Int]] = [], row = 0
        let before = steps.map { ($0.sequence.length, $0.sequence.lastLogits) }
        for s in steps {
            let (start, textTime) = try s.sequence.begin(s)
            segments.append(BatchSegment(rows: row..<(row + s.tokens.count), start: start, cache: s.sequence.cache))
            textTimes.append(textTime)
            row += s.tokens.count
        }
        // Final norm and head on the rows whose logits are wanted.
        let wanted = segments.map { allLogits ? $0.rows : ($0.rows.upperBound - 1)..<$0.rows.upperBound }
        let all: Buffer
        if let text {
            all = hostForward(text, steps, segments: segments, textTimes: textTimes, wanted: wanted, observe: observe)
        } else if let device {
            do {
                all = try deviceForward(device, steps, segments: segments, textTimes: textTimes, wanted: wanted)
            } catch {
                // A device error (e.g. out of memory) leaves every sequence as it was.
                for (s, b) in zip(steps, before) { s.sequence.restore(length: b.0, lastLogits: b.1) }
                throw error
            }
        } else {
            throw FlamingoError.internal("a model without a backend")
        }
        var out: [Buffer] = [], at = 0
        for (s, r) in zip(steps, wanted) {
            let b = Buffer(r.count * vocab)
            b.p.update(from: all.p + at * vocab, count: r.count * vocab)
            s.sequence.finish(logits: b.p + (r.count - 1) * vocab)
            out.append(b)
            at += r.count
        }
        return out
    }

    /// The step on the host; returns the wanted rows' logits.
    private func hostForward(_ text: HostText, _ steps: [Step], segments: [BatchSegment], textTimes: [[Int]],
                             wanted: [Range<Int>], observe: TokenSequence.Observer?) -> Buffer {
        let lmc = config.languageModel, d = lmc.hiddenSize, rows = segments.last?.rows.upperBound ?? 0
        let lead = steps[0].sequence, ws = lead.workspaceForStep
        let x = lead.hiddenBuffer(rows * d)
        for (s, seg) in zip(steps, segments) { text.lm.embed(s.tokens, into: x.p + seg.rows.lowerBound * d) }
        observe?("hidden.embed", x.p, rows)
        for (i, layer) in text.lm.layers.enumerated() {
            if let block = text.crossAttention[i] {
                ws.reset()
                let parts = zip(steps, zip(segments, textTimes)).map {
                    GatedCrossAttention.Rows(rows: $1.0.rows, textTime: $1.1, media: $0.sequence.media(layer: i))
                }
                block(x.p, rows: rows, parts: parts, ws: ws)
                observe?("xattn.\(i)", x.p, rows)
            }
            ws.reset()
            layer(x.p, rows: rows, segments: segments, layer: i, ws: ws)
            observe?("hidden.\(i)", x.p, rows)
        }
        let count = wanted.reduce(0) { $0 + $1.count }
        let h = Buffer(count * d), all = Buffer(count * lmc.vocabSize)
        var o = 0
        for r in wanted { (h.p + o * d).update(from: x.p + r.lowerBound * d, count: r.count * d); o += r.count }
        text.lm.logits(h.p, rows: count, into: all.p)
        observe?("hidden.final", h.p, count)
        return all
    }

    /// The step on the OpenCL device (intermediate activations are not observable there).
    private func deviceForward(_ device: DeviceFlamingo, _ steps: [Step], segments: [BatchSegment], textTimes: [[Int]],
                               wanted: [Range<Int>]) throws -> Buffer {
        var deviceSegments: [DeviceSegment] = []
        for (s, seg) in zip(steps, segments) {
            guard let state = s.sequence.device else { throw FlamingoError.internal("a host sequence on a device model") }
            try state.reserve(seg.start + seg.rows.count, length: seg.start)
            try state.setValid(s.valid, from: seg.start)
            let positions = try seg.cache.positions[seg.start..<(seg.start + seg.rows.count)].map { p -> Int32 in
                guard let v = Int32(exactly: p) else { throw FlamingoError.invalidArgument("position \(p) does not fit 32 bits") }
                return v
            }
            deviceSegments.append(DeviceSegment(rows: seg.rows, start: seg.start, state: state,
                                                positions: CLView(try device.rt.temporaryBuffer(positions))))
        }
        return try device.forward(tokens: steps.flatMap(\.tokens), segments: deviceSegments, textTimes: textTimes,
                                  wanted: wanted)
    }
}

/// One token sequence being evaluated: its KV cache, its media and the
/// per-layer media keys/values (computed once when media is set).
public final class TokenSequence {
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

    /// Keys/values and media on the device (OpenCL backend).
    let device: DeviceSequence?

    init(_ f: Flamingo, cache: KVCache, device: DeviceSequence? = nil) {
        flamingo = f
        self.cache = cache
        self.device = device
        mediaKV = f.noMedia
    }

    /// An independent sequence with the same tokens, cache and media (the
    /// media keys/values are immutable and shared).
    public func copy() throws -> TokenSequence {
        let s = TokenSequence(flamingo, cache: cache.copy(), device: try device?.copy(length: length))
        s.tokens = tokens
        s.mediaKV = mediaKV
        s.mediaCount = mediaCount
        s.lastLogits = lastLogits
        return s
    }

    public var length: Int { cache.length }

    /// Sets the visual tokens [count · latents, dim] the text attends to
    /// (nil or 0 removes the media).
    public func setMedia(_ visual: UnsafePointer<Float>?, count: Int) throws {
        let tokens = count * flamingo.latentsPerMedia
        if let device, let d = flamingo.device {
            try d.setMedia(device, visual, tokens: visual == nil ? 0 : tokens)
        }
        guard let visual, count > 0 else {
            mediaCount = 0
            mediaKV = flamingo.noMedia
            return
        }
        mediaCount = count
        mediaKV = flamingo.text?.crossAttention.map { $0?.mediaKV(visual, tokens: tokens) } ?? flamingo.noMedia
    }

    /// Appends `newTokens` (with `valid[i] == false` marking left padding)
    /// and returns their logits [rows, vocab], or only the last row's.
    public func evaluate(_ newTokens: [Int], valid: [Bool]? = nil, allLogits: Bool = false,
                         observe: Observer? = nil) throws -> Buffer {
        try flamingo.evaluate([Step(self, newTokens, valid: valid)], allLogits: allLogits, observe: observe)[0]
    }

    /// Checks a step's tokens and mask against the vocabulary and context.
    func validate(_ step: Step) throws {
        let lmc = flamingo.config.languageModel
        guard !step.tokens.isEmpty else { throw FlamingoError.invalidArgument("no tokens to evaluate") }
        for t in step.tokens where t < 0 || t >= lmc.vocabSize {
            throw FlamingoError.invalidArgument("token id \(t) is outside the vocabulary [0, \(lmc.vocabSize))")
        }
        guard step.valid.count == step.tokens.count else {
            throw FlamingoError.invalidArgument("valid mask has \(step.valid.count) entries for \(step.tokens.count) tokens")
        }
        guard cache.length + step.tokens.count <= cache.capacity else {
            throw FlamingoError.invalidArgument("sequence of \(cache.length + step.tokens.count) tokens exceeds the context of \(cache.capacity)")
        }
    }

    /// Appends a step's tokens to the cache bookkeeping; returns the
    /// segment's start position and its rows' text_time.
    func begin(_ step: Step) throws -> (start: Int, textTime: [Int]) {
        let c = flamingo.config
        let start = try cache.append(valid: step.valid)
        // text_time counts <image> tokens over the whole sequence, so decode
        // steps attend to the last image of the prompt (cached-media mode).
        tokens += step.tokens
        let textTime = Array(GatedCrossAttention.textTime(tokens: tokens, imageToken: c.tokens.image,
                                                          semantics: c.crossAttention.mediaSemantics)[start...])
        return (start, textTime)
    }

    func finish(logits: UnsafePointer<Float>) {
        lastLogits = Array(UnsafeBufferPointer(start: logits, count: flamingo.config.languageModel.vocabSize))
    }

    var workspaceForStep: Workspace { workspace }

    func hiddenBuffer(_ count: Int) -> Buffer {
        if hidden.count < count { hidden = Buffer(count) }
        return hidden
    }

    func media(layer: Int) -> GatedCrossAttention.MediaKV? { mediaKV[layer] }

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
