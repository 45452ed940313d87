import Glibc

/// Continues a sequence whose prompt has been evaluated: greedy, sampling or
/// beam search with Hugging Face `generate` semantics (spec/70 §decoding).
/// Afterwards the sequence holds the prompt plus every returned token, so a
/// conversation can continue from it.
public enum Generator {
    public enum StopReason: Int32, Sendable {
        case maxTokens = 0, stopToken = 1, cancelled = 2
    }

    public struct Result: Sendable {
        public var tokens: [Int]
        public var stopReason: StopReason
    }

    /// Called with each new token of greedy or sampled decoding (beam search
    /// reports the final tokens); returning false stops generation.
    public typealias TokenCallback = (Int) -> Bool

    public static func generate(_ seq: TokenSequence, config c: GenerationConfig,
                                onToken: TokenCallback? = nil) throws -> Result {
        try c.validate(vocabSize: seq.flamingo.config.languageModel.vocabSize)
        guard !seq.lastLogits.isEmpty else {
            throw FlamingoError.invalidArgument("evaluate a prompt before generating")
        }
        guard seq.length + c.maxNewTokens <= seq.cache.capacity else {
            throw FlamingoError.invalidArgument("prompt of \(seq.length) tokens plus max_new_tokens \(c.maxNewTokens) exceeds the context of \(seq.cache.capacity)")
        }
        if c.maxNewTokens == 0 { return Result(tokens: [], stopReason: .maxTokens) }
        let (length, logits) = (seq.length, seq.lastLogits)
        do {
            return c.numBeams > 1 ? try beamSearch(seq, c, onToken) : try sampleOrGreedy(seq, c, onToken)
        } catch {
            seq.restore(length: length, lastLogits: logits)
            throw error
        }
    }

    static func sampleOrGreedy(_ seq: TokenSequence, _ c: GenerationConfig, _ onToken: TokenCallback?) throws -> Result {
        try sampleOrGreedy([seq], c, onToken.map { cb in { _, t in cb(t) } })[0]
    }

    /// Greedy or sampled continuation of several evaluated sequences at once
    /// (e.g. a left-padded batch of prompts): every step evaluates the next
    /// token of all unfinished sequences in one batched forward pass. Each
    /// sequence draws from its own random stream (seed + index). Beam search
    /// is per prompt (its beams are batched internally).
    public static func generate(batch seqs: [TokenSequence], config c: GenerationConfig,
                                onToken: ((Int, Int) -> Bool)? = nil) throws -> [Result] {
        guard c.numBeams == 1 else {
            return try seqs.enumerated().map { i, s in try generate(s, config: c, onToken: onToken.map { cb in { cb(i, $0) } }) }
        }
        guard let first = seqs.first else { return [] }
        try c.validate(vocabSize: first.flamingo.config.languageModel.vocabSize)
        for s in seqs {
            guard !s.lastLogits.isEmpty else { throw FlamingoError.invalidArgument("evaluate every prompt before generating") }
            guard s.length + c.maxNewTokens <= s.cache.capacity else {
                throw FlamingoError.invalidArgument("prompt of \(s.length) tokens plus max_new_tokens \(c.maxNewTokens) exceeds the context of \(s.cache.capacity)")
            }
        }
        if c.maxNewTokens == 0 { return seqs.map { _ in Result(tokens: [], stopReason: .maxTokens) } }
        let saved = seqs.map { ($0.length, $0.lastLogits) }
        do {
            return try sampleOrGreedy(seqs, c, onToken)
        } catch {
            for (s, (length, logits)) in zip(seqs, saved) { s.restore(length: length, lastLogits: logits) }
            throw error
        }
    }

    static func sampleOrGreedy(_ seqs: [TokenSequence], _ c: GenerationConfig, _ onToken: ((Int, Int) -> Bool)?) throws -> [Result] {
        var pickers = seqs.indices.map { TokenPicker(config: c, stream: UInt64($0)) }
        var reason = [StopReason?](repeating: nil, count: seqs.count)
        while true {
            var steps: [Step] = []
            for (i, seq) in seqs.enumerated() where reason[i] == nil {
                steps.append(Step(seq, [pickers[i].pick(seq)]))
            }
            if steps.isEmpty { break }
            _ = try seqs[0].flamingo.evaluate(steps)
            for (i, seq) in seqs.enumerated() where reason[i] == nil && steps.contains(where: { $0.sequence === seq }) {
                let next = pickers[i].generated[pickers[i].generated.count - 1]
                if let onToken, !onToken(i, next) { reason[i] = .cancelled } else { reason[i] = pickers[i].stopReason }
            }
        }
        return zip(pickers, reason).map { Result(tokens: $0.generated, stopReason: $1 ?? .maxTokens) }
    }

    /// Hugging Face's (transformers 5) beam search for one prompt: per step
    /// the top max(2, 1 + #stop tokens)·beams candidates of log-softmax plus
    /// beam score; candidates that hit a stop token (or the length limit)
    /// and rank within the first `beams` become finished hypotheses scored
    /// sum / length^length_penalty; the best unfinished ones continue.
    static func beamSearch(_ seq: TokenSequence, _ c: GenerationConfig, _ onToken: TokenCallback?) throws -> Result {
        let beams = c.numBeams, vocab = seq.lastLogits.count
        let keep = max(2, 1 + c.stopTokens.count) * beams
        let prompt = seq.tokens
        let penalty = { (length: Int) -> Float in powf(Float(length), c.lengthPenalty) }
        let dead: Float = -1e9

        var running: [TokenSequence] = try (0..<beams).map { _ in try seq.copy() }
        var runningTokens = [[Int]](repeating: [], count: beams)
        var runningScores = [Float](repeating: dead, count: beams)
        runningScores[0] = 0
        var finished = [(tokens: [Int], score: Float, done: Bool)](repeating: ([], dead, false), count: beams)
        var improvable = true
        var step = 0

        while true {
            // Candidates over beams × vocabulary.
            var candidates: [(score: Float, beam: Int, token: Int)] = []
            candidates.reserveCapacity(beams * vocab)
            for b in 0..<beams {
                var lp = LogitsProcessing.logSoftmax(running[b].lastLogits)
                LogitsProcessing.process(&lp, sequence: prompt + runningTokens[b], generated: step, config: c)
                for v in 0..<vocab { candidates.append((lp[v] + runningScores[b], b, v)) }
            }
            // torch.topk order: descending score, lower flat index first on ties.
            let top = Array(candidates.enumerated().sorted {
                $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset
            }.prefix(keep).map(\.element))
            let lastStep = step + 1 >= c.maxNewTokens
            let hits = top.map { lastStep || c.stopTokens.contains($0.token) }

            // Finished hypotheses: only stop-hitting candidates within the first `beams`.
            let allDone = finished.allSatisfy(\.done)
            var merged = finished
            for (k, cand) in top.enumerated() {
                var score = cand.score / penalty(step + 1)
                if allDone && c.earlyStopping { score += dead }
                if !improvable { score += dead }
                if !(hits[k] && k < beams) { score += dead }
                merged.append((runningTokens[cand.beam] + [cand.token], score, hits[k] && k < beams))
            }
            finished = Array(merged.enumerated().sorted {
                $0.element.score != $1.element.score ? $0.element.score > $1.element.score : $0.offset < $1.offset
            }.prefix(beams).map(\.element))

            // Live beams: the best candidates that did not hit a stop.
            let next = Array(top.enumerated().map { (k, cand) in (cand.score + (hits[k] ? dead : 0), cand.beam, cand.token, k) }
                .sorted { $0.0 != $1.0 ? $0.0 > $1.0 : $0.3 < $1.3 }.prefix(beams))
            step += 1
            runningScores = next.map(\.0)
            runningTokens = next.map { runningTokens[$0.1] + [$0.2] }

            // Stop when no live beam can beat the worst finished hypothesis.
            let best = runningScores[0] / penalty(step)
            let worst = finished.map(\.score).min() ?? dead
            improvable = improvable && finished.contains { best > ($0.done ? worst : dead) }
            if !improvable || (finished.allSatisfy(\.done) && c.earlyStopping) || hits.allSatisfy({ $0 }) { break }

            // Each parent is reused once and copied for further children; all
            // copies are taken before the beams advance together in one
            // batched step (the weights are read once for all beams).
            var used = Set<Int>()
            running = try next.map { cand in used.insert(cand.1).inserted ? running[cand.1] : try running[cand.1].copy() }
            _ = try seq.flamingo.evaluate(zip(running, next).map { Step($0, [$1.2]) })
        }

        let best = finished[0].tokens
        _ = try seq.evaluate(best)
        for t in best where onToken?(t) == false { return Result(tokens: best, stopReason: .cancelled) }
        let stopped = best.last.map { c.stopTokens.contains($0) } ?? false
        return Result(tokens: best, stopReason: stopped ? .stopToken : .maxTokens)
    }
}
