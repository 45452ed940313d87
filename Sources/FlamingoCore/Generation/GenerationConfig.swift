/// Decoding settings, with Hugging Face `generate` semantics and defaults.
public struct GenerationConfig: Sendable {
    public var maxNewTokens = 20
    public var minNewTokens = 0
    /// Sample instead of taking the most likely token (or beams).
    public var doSample = false
    public var temperature: Float = 1
    /// 0 disables top-k filtering.
    public var topK = 0
    /// 1 disables nucleus filtering.
    public var topP: Float = 1
    public var seed: UInt64 = 0
    public var numBeams = 1
    /// Finished beams score sum(log p) / length^lengthPenalty.
    public var lengthPenalty: Float = 1
    public var earlyStopping = false
    /// 0 disables; n bans tokens that would repeat an n-gram of the sequence.
    public var noRepeatNgramSize = 0
    /// 1 disables; > 1 discourages tokens already in the sequence.
    public var repetitionPenalty: Float = 1
    /// Generation ends after any of these (e.g. <|endofchunk|>, EOS).
    public var stopTokens: [Int] = []

    public init() {}

    public func validate(vocabSize: Int) throws {
        guard maxNewTokens >= 0, minNewTokens >= 0 else { throw FlamingoError.invalidArgument("token counts must be non-negative") }
        guard numBeams >= 1 && numBeams <= 64 else { throw FlamingoError.invalidArgument("num_beams \(numBeams) must be in 1…64") }
        guard temperature.isFinite && temperature > 0 else { throw FlamingoError.invalidArgument("temperature \(temperature) must be > 0") }
        guard topK >= 0 else { throw FlamingoError.invalidArgument("top_k \(topK) must be >= 0") }
        guard topP > 0 && topP <= 1 else { throw FlamingoError.invalidArgument("top_p \(topP) must be in (0, 1]") }
        guard repetitionPenalty.isFinite && repetitionPenalty > 0 else {
            throw FlamingoError.invalidArgument("repetition_penalty \(repetitionPenalty) must be > 0")
        }
        guard lengthPenalty.isFinite else { throw FlamingoError.invalidArgument("length_penalty must be finite") }
        guard noRepeatNgramSize >= 0 else { throw FlamingoError.invalidArgument("no_repeat_ngram_size must be >= 0") }
        for t in stopTokens where t < 0 || t >= vocabSize {
            throw FlamingoError.invalidArgument("stop token \(t) is outside the vocabulary")
        }
    }
}
