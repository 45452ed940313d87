/// The next token of greedy or sampled decoding for one sequence: the logits
/// processors (repetition penalty, n-gram bans, minimum length), then argmax or a
/// draw from the sequence's own random stream (seed + stream). Generator's
/// batched decoding and a server's continuous batching both step sequences
/// with it, so a request decodes the same way alone or batched.
public struct TokenPicker {
    public let config: GenerationConfig
    private var rng: RandomSource
    /// The tokens picked so far.
    public private(set) var generated: [Int] = []

    public init(config: GenerationConfig, stream: UInt64 = 0) {
        self.config = config
        rng = RandomSource(seed: config.seed &+ stream)
    }

    /// Picks the token that follows `seq` (whose logits are those of its last
    /// position) and records it; the caller evaluates it.
    public mutating func pick(_ seq: TokenSequence) -> Int {
        var scores = seq.lastLogits
        LogitsProcessing.process(&scores, sequence: seq.tokens, generated: generated.count, config: config)
        let next: Int
        if config.doSample {
            LogitsProcessing.warp(&scores, config: config)
            next = rng.sample(LogitsProcessing.softmaxed(scores))
        } else {
            next = LogitsProcessing.argmax(scores)
        }
        generated.append(next)
        return next
    }

    /// Why decoding ends after the last picked token, nil while it goes on.
    public var stopReason: Generator.StopReason? {
        guard let last = generated.last else { return nil }
        if config.stopTokens.contains(last) { return .stopToken }
        return generated.count >= config.maxNewTokens ? .maxTokens : nil
    }
}
