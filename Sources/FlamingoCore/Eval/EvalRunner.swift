/// Evaluation settings; the defaults are open_flamingo's (spec/70 §2).
public struct EvalSettings: Sendable {
    public var demos: DemoMode = .random
    public var seed = 42
    public var beams = 3
    public var lengthPenalty: Float = 0
    /// nil: 20 for captioning, 5 for VQA.
    public var maxNewTokens: Int?
    /// Evaluate only the first `limit` test examples (file order).
    public var limit: Int?
    /// Visual tokens kept for reuse across prompts (oldest dropped first).
    public var imageCacheBytes = 2 << 30

    public init() {}

    public func maxNewTokens(for task: EvalTask) -> Int { maxNewTokens ?? (task == .vqa ? 5 : 20) }
}

public struct EvalPrediction: Sendable, Equatable {
    public var id: String
    public var text: String
}

public struct EvalResult: Sendable {
    public var shots: Int
    /// ×100: CIDEr as papers report it, accuracies in percent.
    public var score: Double
    public var n: Int
    public var predictions: [EvalPrediction]
}

/// Runs the few-shot evaluation of one dataset: builds open_flamingo's
/// prompts, decodes (or ranks classes) with the engine, scores.
public final class EvalRunner {
    public let flamingo: Flamingo
    public let dataset: EvalDataset
    public let settings: EvalSettings
    let tokenizer: Tokenizer
    let poolIndex: [String: Int]
    let cache: VisualTokenCache
    let sequence: TokenSequence
    /// False for models with media-time embeddings: they encode an image
    /// differently per position, so its tokens cannot be reused.
    let shareVisualTokens: Bool
    /// Classification: the class names' token ids (no special tokens).
    var classTokens: [[Int]] = []

    public init(flamingo: Flamingo, dataset: EvalDataset, settings: EvalSettings = EvalSettings()) throws {
        guard let t = flamingo.tokenizer else { throw FlamingoError.unsupported("the model has no tokenizer; evaluation needs one") }
        guard settings.beams >= 1 else { throw FlamingoError.invalidArgument("beams must be >= 1") }
        guard !dataset.test.isEmpty else { throw FlamingoError.invalidArgument("the test set is empty") }
        self.flamingo = flamingo
        self.dataset = dataset
        self.settings = settings
        tokenizer = t
        poolIndex = Dictionary(dataset.train.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { first, _ in first })
        shareVisualTokens = flamingo.config.resampler.maxNumMedia == nil
        cache = VisualTokenCache(capacityBytes: settings.imageCacheBytes)
        sequence = try flamingo.makeSequence()
        if dataset.task == .classification {
            classTokens = try dataset.classes.map { name in
                let ids = try t.encode(name, addSpecialTokens: false)
                guard !ids.isEmpty else { throw FlamingoError.invalidFormat("class name \"\(name)\" has no tokens") }
                return ids
            }
        }
    }

    public var metricName: String {
        switch dataset.task {
        case .captioning: return "CIDEr"
        case .vqa: return "VQA accuracy"
        case .classification: return "top-1 accuracy"
        }
    }

    /// The test examples evaluated (the first `limit`).
    public var testSet: ArraySlice<EvalExample> { dataset.test.prefix(settings.limit ?? dataset.test.count) }

    /// Evaluates every test example with `shots` demonstrations;
    /// `progress(done, total)` is called after each.
    public func run(shots: Int, progress: ((Int, Int) -> Void)? = nil) throws -> EvalResult {
        guard shots >= 0 else { throw FlamingoError.invalidArgument("shots must be >= 0") }
        let tests = testSet
        var predictions: [EvalPrediction] = []
        for (q, example) in tests.enumerated() {
            let text = try withContext("test example \(example.id)") { try predict(query: q, shots: shots) }
            predictions.append(EvalPrediction(id: example.id, text: text))
            progress?(q + 1, tests.count)
        }
        return EvalResult(shots: shots, score: try score(predictions, Array(tests)), n: tests.count, predictions: predictions)
    }

    /// The prompt and its images (demos in order, then the query) for test
    /// example `query`: open_flamingo's builders; zero-shot keeps two demos'
    /// text without their <image> markers and passes only the query image.
    public func prompt(query: Int, shots: Int) throws -> (text: String, images: [String]) {
        let example = dataset.test[query]
        let demos = try DemoSampler.indices(for: example, query: query, pool: dataset.train, poolIndex: poolIndex,
                                            count: DemoSampler.effectiveShots(shots), mode: settings.demos, seed: settings.seed)
            .map { dataset.train[$0] }
        let full = build(demos: demos, query: example), queryOnly = build(demos: [], query: example)
        guard shots == 0 else { return (full, demos.map(\.image) + [example.image]) }
        let context = String(full.unicodeScalars.dropLast(queryOnly.unicodeScalars.count))
        return (context.replacingAll("<image>", with: "") + queryOnly, [example.image])
    }

    func build(demos: [EvalExample], query: EvalExample) -> String {
        switch dataset.task {
        case .captioning: return FewShot.captionPrompt(shots: demos.map(\.target))
        case .vqa: return FewShot.vqaPrompt(shots: demos.map { ($0.question ?? "", $0.target) }, question: query.question ?? "")
        case .classification: return FewShot.classificationPrompt(shots: demos.map(\.target))
        }
    }

    func predict(query: Int, shots: Int) throws -> String {
        let (text, images) = try prompt(query: query, shots: shots)
        let media: [MediaInput] = shareVisualTokens
            ? try images.map { .visualTokens(try cache.tokens(for: $0, flamingo)) } : images.map { .file($0) }
        try sequence.setPrompt(text, media: media)
        if dataset.task == .classification { return try rankClasses() }
        let result = try Generator.generate(sequence, config: generationConfig())
        let raw = try tokenizer.decode(result.tokens, skipSpecialTokens: true)
        return dataset.task == .captioning ? FewShot.postprocessCaption(raw) : FewShot.postprocessVQA(raw)
    }

    /// open_flamingo's decoding: beam search, stop only at <|endofchunk|>.
    func generationConfig() -> GenerationConfig {
        var c = GenerationConfig()
        c.maxNewTokens = settings.maxNewTokens(for: dataset.task)
        c.numBeams = settings.beams
        c.lengthPenalty = settings.lengthPenalty
        c.stopTokens = [flamingo.config.tokens.endOfChunk]
        return c
    }

    /// The class whose name has the highest mean token log-probability
    /// after the context (normalize_length=True); the first on ties.
    func rankClasses() throws -> String {
        let ll = try sequence.logLikelihoods(of: classTokens)
        var best = 0, bestScore = -Double.infinity
        for (i, (sum, ids)) in zip(ll, classTokens).enumerated() {
            let mean = Double(sum) / Double(ids.count)
            if mean > bestScore { best = i; bestScore = mean }
        }
        return dataset.classes[best]
    }

    func score(_ predictions: [EvalPrediction], _ tests: [EvalExample]) throws -> Double {
        switch dataset.task {
        case .captioning:
            return try CIDEr.score(candidates: predictions.map { CaptionTokenizer.tokenize($0.text) },
                                   references: tests.map { $0.references.map(CaptionTokenizer.tokenize) }).score * 100
        case .vqa:
            let total = zip(predictions, tests).reduce(0.0) { $0 + VQAAccuracy.score(prediction: $1.0.text, answers: $1.1.references) }
            return total / Double(tests.count) * 100
        case .classification:
            let correct = zip(predictions, tests).filter { $0.text == $1.target }.count
            return Double(correct) / Double(tests.count) * 100
        }
    }
}

/// Visual tokens by image path, oldest evicted first once over capacity:
/// a demonstration or query image is encoded once while it stays cached.
final class VisualTokenCache {
    let capacityBytes: Int
    private var entries: [String: [Float]] = [:]
    private var order: [String] = []
    private var head = 0, bytes = 0
    private(set) var encoded = 0

    init(capacityBytes: Int) { self.capacityBytes = capacityBytes }

    func tokens(for path: String, _ f: Flamingo) throws -> [Float] {
        if let hit = entries[path] { return hit }
        let v = try withContext(path) { try f.visualTokens(for: [.file(path)]).array }
        encoded += 1
        let size = v.count * MemoryLayout<Float>.size
        guard size <= capacityBytes else { return v }
        entries[path] = v
        order.append(path)
        bytes += size
        while bytes > capacityBytes, head < order.count {
            bytes -= (entries.removeValue(forKey: order[head])?.count ?? 0) * MemoryLayout<Float>.size
            head += 1
        }
        if head > 4096 && head * 2 > order.count { order.removeFirst(head); head = 0 }
        return v
    }
}
