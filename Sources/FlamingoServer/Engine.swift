import FlamingoCore
import Foundation

/// One completion to compute: a rendered Flamingo prompt, its images, the decoding
/// settings; its results go to `events` as they are produced.
final class Job: @unchecked Sendable {
    enum Event {
        /// New text (already past any stop string check).
        case text(String)
        case done(Outcome)
        case failed(RequestError)
    }

    struct Outcome {
        var finishReason: String  // "stop" or "length"
        var promptTokens = 0
        var completionTokens = 0
        var cachedImages = 0
        var images = 0
        var promptSeconds = 0.0
        var generateSeconds = 0.0
    }

    let prompt: String
    let images: [[UInt8]]
    let config: GenerationConfig
    /// Index of this choice among the request's `n` (its sampling stream).
    let choice: Int
    let stop: [String]
    /// nil: the rest of the context.
    let maxTokens: Int?
    let events: AsyncStream<Event>.Continuation
    private let cancelFlag = NSLock()
    private var _cancelled = false

    init(prompt: String, images: [[UInt8]], config: GenerationConfig, choice: Int, stop: [String], maxTokens: Int?,
         events: AsyncStream<Event>.Continuation) {
        self.prompt = prompt
        self.images = images
        self.config = config
        self.choice = choice
        self.stop = stop
        self.maxTokens = maxTokens
        self.events = events
    }

    /// Set when the client went away; the engine frees the job's session at its next step.
    var cancelled: Bool {
        get { cancelFlag.withLock { _cancelled } }
        set { cancelFlag.withLock { _cancelled = newValue } }
    }
}

/// The engine thread: owns every session. Each step admits waiting jobs (prefill, up to
/// `parallel` sessions), then advances every active session by one token in one batched
/// forward pass (each weight is read once for all of them) and hands the new text to the
/// jobs' streams. Beam search (only when a request asks for it) runs alone at admission.
final class Engine: @unchecked Sendable {
    let flamingo: Flamingo
    let tokenizer: Tokenizer
    let parallel: Int
    let contextLength: Int
    let queueLimit: Int
    let metrics: Metrics
    private let images: VisualTokenCache
    private let condition = NSCondition()
    private var waiting: [Job] = []

    init(flamingo: Flamingo, parallel: Int, contextLength: Int, queueLimit: Int, imageCacheBytes: Int,
         metrics: Metrics) throws {
        guard let tokenizer = flamingo.tokenizer else {
            throw FlamingoError.unsupported("the model directory has no tokenizer; the server needs one")
        }
        self.flamingo = flamingo
        self.tokenizer = tokenizer
        self.parallel = parallel
        self.contextLength = contextLength
        self.queueLimit = queueLimit
        self.metrics = metrics
        images = VisualTokenCache(flamingo: flamingo, capacityBytes: imageCacheBytes, metrics: metrics)
    }

    enum SubmitError: Error { case queueFull }

    /// Queues jobs (all of one request, or none when the queue is full).
    func submit(_ jobs: [Job]) throws {
        condition.lock()
        defer { condition.unlock() }
        guard waiting.count + jobs.count <= queueLimit else { throw SubmitError.queueFull }
        waiting += jobs
        metrics.set(\.queueDepth, waiting.count)
        condition.signal()
    }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "flamingo-engine"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// A job between admission and its end.
    private final class Active {
        let job: Job
        let sequence: TokenSequence
        var picker: TokenPicker
        let decoder: StreamDecoder
        var outcome: Job.Outcome
        var stopFilter: StopFilter
        let began = Date()

        init(job: Job, sequence: TokenSequence, picker: TokenPicker, decoder: StreamDecoder, outcome: Job.Outcome) {
            self.job = job
            self.sequence = sequence
            self.picker = picker
            self.decoder = decoder
            self.outcome = outcome
            stopFilter = StopFilter(job.stop)
        }
    }

    private func run() {
        var active: [Active] = []
        while true {
            condition.lock()
            while waiting.isEmpty && active.isEmpty { condition.wait() }
            let admitted = Array(waiting.prefix(max(0, parallel - active.count)))
            waiting.removeFirst(admitted.count)
            metrics.set(\.queueDepth, waiting.count)
            condition.unlock()

            for job in admitted where !job.cancelled {
                do {
                    if let a = try admit(job) { active.append(a) }
                } catch {
                    job.events.yield(.failed(RequestError(error)))
                    job.events.finish()
                }
            }
            active.removeAll { $0.job.cancelled }
            metrics.set(\.busySessions, active.count)
            if active.isEmpty { continue }

            let steps = active.indices.map { i in Step(active[i].sequence, [active[i].picker.pick(active[i].sequence)]) }
            do {
                _ = try flamingo.evaluate(steps)
            } catch {
                for a in active { a.job.events.yield(.failed(RequestError(error))); a.job.events.finish() }
                active.removeAll()
                continue
            }
            metrics.add(\.generatedTokens, active.count)
            active.removeAll { a in !advance(a) }
        }
    }

    /// Prefill: the prompt with its images (visual tokens from the cache). Returns nil when
    /// the job is already complete (beam search, or no room for a token).
    private func admit(_ job: Job) throws -> Active? {
        let began = Date()
        var outcome = Job.Outcome(finishReason: "length")
        var media: [MediaInput] = []
        for bytes in job.images {
            let (tokens, hit) = try images.visualTokens(bytes)
            media.append(.visualTokens(tokens))
            outcome.cachedImages += hit ? 1 : 0
        }
        outcome.images = job.images.count
        let promptTokens = try flamingo.tokenize(prompt: job.prompt, mediaCount: media.count).count
        guard promptTokens < contextLength else {
            throw RequestError(message: "the prompt has \(promptTokens) tokens; the context holds \(contextLength) (with room for one new token)",
                               type: "exceed_context_size_error", extra: ["n_prompt_tokens": promptTokens, "n_ctx": contextLength])
        }
        let sequence = try flamingo.makeSequence(capacity: contextLength)
        try sequence.setPrompt(job.prompt, media: media)
        outcome.promptTokens = sequence.length
        outcome.promptSeconds = Date().timeIntervalSince(began)
        metrics.add(\.promptTokens, sequence.length)
        metrics.add(\.promptSeconds, outcome.promptSeconds)
        var config = job.config
        let room = contextLength - sequence.length
        config.maxNewTokens = min(job.maxTokens ?? room, room)
        let decoder = tokenizer.makeStreamDecoder(skipSpecialTokens: true)
        if config.maxNewTokens <= 0 {
            finish(job, outcome)
            return nil
        }
        if config.numBeams > 1 {
            let genBegan = Date()
            let result = try Generator.generate(sequence, config: config)
            var filter = StopFilter(job.stop)
            var text = ""
            for t in result.tokens { text += try decoder.push(t) }
            text += try decoder.flush()
            let (out, stopped) = filter.push(text)
            if !out.isEmpty { job.events.yield(.text(out)) }
            let tail = filter.flush()
            if !tail.isEmpty && !stopped { job.events.yield(.text(tail)) }
            outcome.completionTokens = result.tokens.count
            outcome.finishReason = stopped || result.stopReason == .stopToken ? "stop" : "length"
            outcome.generateSeconds = Date().timeIntervalSince(genBegan)
            metrics.add(\.generatedTokens, result.tokens.count)
            finish(job, outcome)
            return nil
        }
        try config.validate(vocabSize: flamingo.config.languageModel.vocabSize)
        return Active(job: job, sequence: sequence, picker: TokenPicker(config: config, stream: UInt64(job.choice)),
                      decoder: decoder, outcome: outcome)
    }

    /// Hands the newest token's text to the job; false when the job is complete.
    private func advance(_ a: Active) -> Bool {
        a.outcome.completionTokens = a.picker.generated.count
        do {
            let piece = try a.decoder.push(a.picker.generated[a.picker.generated.count - 1])
            var (out, stopped) = a.stopFilter.push(piece)
            let reason = a.picker.stopReason
            if reason != nil && !stopped {
                let rest = try a.decoder.flush()
                let (more, s) = a.stopFilter.push(rest)
                out += more
                stopped = s
                if !stopped { out += a.stopFilter.flush() }
            }
            if !out.isEmpty { a.job.events.yield(.text(out)) }
            guard stopped || reason != nil else { return true }
            a.outcome.finishReason = stopped || reason == .stopToken ? "stop" : "length"
        } catch {
            a.job.events.yield(.failed(RequestError(error)))
            a.job.events.finish()
            return false
        }
        a.outcome.generateSeconds = Date().timeIntervalSince(a.began) - a.outcome.promptSeconds
        metrics.add(\.generateSeconds, a.outcome.generateSeconds)
        finish(a.job, a.outcome)
        return false
    }

    private func finish(_ job: Job, _ outcome: Job.Outcome) {
        job.events.yield(.done(outcome))
        job.events.finish()
    }
}

/// Holds back text that could be the beginning of a stop string, and cuts the text at the
/// first stop string (which is not returned).
struct StopFilter {
    let stops: [String]
    private var held = ""

    init(_ stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// The text that is safe to emit, and whether a stop string was found.
    mutating func push(_ piece: String) -> (String, Bool) {
        held += piece
        if stops.isEmpty { defer { held = "" }; return (held, false) }
        if let cut = stops.compactMap({ held.range(of: $0)?.lowerBound }).min() {
            let out = String(held[..<cut])
            held = ""
            return (out, true)
        }
        // Keep the longest suffix that is a prefix of some stop string.
        var keep = 0
        for s in stops {
            for n in stride(from: min(s.count - 1, held.count), to: 0, by: -1) where held.hasSuffix(String(s.prefix(n))) {
                keep = max(keep, n)
                break
            }
        }
        let out = String(held.dropLast(keep))
        held = String(held.suffix(keep))
        return (out, false)
    }

    /// Whatever is held back, at the end of generation.
    mutating func flush() -> String {
        defer { held = "" }
        return held
    }
}

/// Visual tokens of recently seen images, keyed by their encoded bytes (compared in full:
/// no hash collision can hand one client's tokens to another): few-shot prompts repeat the
/// same demonstration images in every request, and their encoding is the costly part of a
/// prompt. Bounded by the bytes it holds (keys and tokens); least recently used go first.
final class VisualTokenCache {
    private let flamingo: Flamingo
    private let capacityBytes: Int
    private let metrics: Metrics
    private var entries: [[UInt8]: (tokens: [Float], used: Int)] = [:]
    private var bytes = 0
    private var clock = 0

    init(flamingo: Flamingo, capacityBytes: Int, metrics: Metrics) {
        self.flamingo = flamingo
        self.capacityBytes = capacityBytes
        self.metrics = metrics
    }

    /// Only the engine thread calls this.
    func visualTokens(_ image: [UInt8]) throws -> ([Float], Bool) {
        clock += 1
        if let e = entries[image] {
            entries[image]?.used = clock
            metrics.add(\.imageCacheHits, 1)
            return (e.tokens, true)
        }
        let began = Date()
        let buffer = try flamingo.visualTokens(for: [.encoded(image)])
        let tokens = Array(UnsafeBufferPointer(start: buffer.p, count: buffer.count))
        metrics.add(\.imageCacheMisses, 1)
        metrics.add(\.encodeSeconds, Date().timeIntervalSince(began))
        let size = image.count + 4 * tokens.count
        guard size <= capacityBytes else { return (tokens, false) }
        while bytes + size > capacityBytes, let oldest = entries.min(by: { $0.value.used < $1.value.used }) {
            entries[oldest.key] = nil
            bytes -= oldest.key.count + 4 * oldest.value.tokens.count
        }
        entries[image] = (tokens, clock)
        bytes += size
        metrics.set(\.imageCacheBytes, bytes)
        return (tokens, false)
    }
}
