import Glibc

/// The score transformations of Hugging Face generate, in its order:
/// repetition penalty, no-repeat n-grams, minimum length; then, when
/// sampling, temperature, top-k and top-p.
enum LogitsProcessing {
    static func process(_ scores: inout [Float], sequence: [Int], generated: Int, config c: GenerationConfig) {
        if c.repetitionPenalty != 1 {
            for t in Set(sequence) where t < scores.count {
                scores[t] = scores[t] < 0 ? scores[t] * c.repetitionPenalty : scores[t] / c.repetitionPenalty
            }
        }
        if c.noRepeatNgramSize > 0 {
            for t in bannedByNgrams(sequence, n: c.noRepeatNgramSize) where t < scores.count { scores[t] = -.infinity }
        }
        if generated < c.minNewTokens {
            for t in c.stopTokens { scores[t] = -.infinity }
        }
    }

    /// Tokens that would complete an n-gram already present in `seq`.
    static func bannedByNgrams(_ seq: [Int], n: Int) -> [Int] {
        guard seq.count + 1 >= n, n > 0 else { return [] }
        if n == 1 { return seq }
        let prefix = Array(seq[(seq.count - n + 1)...])
        var banned: [Int] = []
        for start in 0...(seq.count - n) where Array(seq[start..<(start + n - 1)]) == prefix {
            banned.append(seq[start + n - 1])
        }
        return banned
    }

    static func warp(_ scores: inout [Float], config c: GenerationConfig) {
        if c.temperature != 1 { for i in scores.indices { scores[i] /= c.temperature } }
        if c.topK > 0 && c.topK < scores.count {
            let kth = scores.sorted(by: >)[c.topK - 1]
            for i in scores.indices where scores[i] < kth { scores[i] = -.infinity }
        }
        if c.topP < 1 {
            // Drop the least likely tokens whose cumulative probability is
            // ≤ 1 − top_p, always keeping the most likely one.
            let order = scores.indices.sorted { scores[$0] < scores[$1] }
            let probs = softmaxed(scores)
            var cumulative: Float = 0
            for (rank, i) in order.enumerated() {
                cumulative += probs[i]
                if cumulative <= 1 - c.topP && rank < order.count - 1 { scores[i] = -.infinity }
            }
        }
    }

    static func softmaxed(_ scores: [Float]) -> [Float] {
        var p = scores
        p.withUnsafeMutableBufferPointer { softmax($0.baseAddress!, count: $0.count) }
        return p
    }

    static func logSoftmax(_ logits: [Float]) -> [Float] {
        let m = logits.max() ?? 0
        var s: Double = 0
        for x in logits { s += Double(expf(x - m)) }
        let lse = m + Float(log(s))
        return logits.map { $0 - lse }
    }

    /// Index of the largest score; the first one on ties, as torch.argmax.
    static func argmax(_ scores: [Float]) -> Int {
        var best = 0
        for i in scores.indices where scores[i] > scores[best] { best = i }
        return best
    }
}

/// xoshiro256** seeded through SplitMix64: reproducible sampling per seed.
struct RandomSource {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    init(seed: UInt64) {
        var x = seed
        func next() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (next(), next(), next(), next())
    }

    mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3; s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1).
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }

    /// An index drawn with probability proportional to `probs`.
    mutating func sample(_ probs: [Float]) -> Int {
        let total = probs.reduce(0.0) { $0 + Double($1) }
        var u = uniform() * total
        for (i, p) in probs.enumerated() where p > 0 {
            u -= Double(p)
            if u < 0 { return i }
        }
        return probs.lastIndex { $0 > 0 } ?? 0
    }
}
