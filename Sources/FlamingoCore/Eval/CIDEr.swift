import Glibc

/// CIDEr-D as pycocoevalcap's `Cider` (CiderScorer): n-grams 1…4, tf-idf
/// with document frequencies over the references of the scored set,
/// clipped hypothesis weights, a Gaussian length penalty (sigma 6), mean
/// over n and over references, ×10. `score` returns that scale (COCO
/// papers report it ×100).
public enum CIDEr {
    public static let n = 4
    public static let sigma = 6.0

    /// Corpus score and per-example scores. `references[i]` are the token
    /// lists of example i's ground truths, `candidates[i]` its prediction.
    public static func score(candidates: [[String]], references: [[[String]]]) throws -> (score: Double, perExample: [Double]) {
        guard candidates.count == references.count, !candidates.isEmpty else {
            throw FlamingoError.invalidArgument("CIDEr needs one candidate per example and at least one example")
        }
        guard references.allSatisfy({ !$0.isEmpty }) else { throw FlamingoError.invalidArgument("CIDEr needs references for every example") }
        let refCounts = references.map { $0.map(ngramCounts) }
        var df: [String: Double] = [:]
        for refs in refCounts {
            for gram in Set(refs.flatMap { $0.keys }) { df[gram, default: 0] += 1 }
        }
        let refLen = log(Double(references.count))
        let scores = zip(candidates, refCounts).map { cand, refs -> Double in
            let hyp = vector(ngramCounts(cand), df: df, refLen: refLen)
            var total = [Double](repeating: 0, count: n)
            for ref in refs {
                let sims = similarity(hyp, vector(ref, df: df, refLen: refLen))
                for k in 0..<n { total[k] += sims[k] }
            }
            return total.reduce(0, +) / Double(n) / Double(refs.count) * 10
        }
        return (scores.reduce(0, +) / Double(scores.count), scores)
    }

    /// N-gram counts keyed by the space-joined words, prefixed by the order
    /// so that the order is recoverable without splitting.
    static func ngramCounts(_ words: [String]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for k in 1...n where words.count >= k {
            for i in 0...(words.count - k) {
                counts["\(k) " + words[i..<(i + k)].joined(separator: " "), default: 0] += 1
            }
        }
        return counts
    }

    struct Vector {
        var weights = [[String: Double]](repeating: [:], count: CIDEr.n)
        var norms = [Double](repeating: 0, count: CIDEr.n)
        /// pycocoevalcap counts bigrams here (its `n == 1` is the 0-based
        /// order), so the "length" is words − 1; kept for equal scores.
        var length = 0
    }

    static func vector(_ counts: [String: Int], df: [String: Double], refLen: Double) -> Vector {
        var v = Vector()
        for (gram, tf) in counts {
            let order = Int(gram.prefix { $0 != " " })! - 1
            let w = Double(tf) * (refLen - log(max(1, df[gram] ?? 0)))
            v.weights[order][gram] = w
            v.norms[order] += w * w
            if order == 1 { v.length += tf }
        }
        v.norms = v.norms.map { $0.squareRoot() }
        return v
    }

    static func similarity(_ hyp: Vector, _ ref: Vector) -> [Double] {
        let delta = Double(hyp.length - ref.length)
        let penalty = exp(-(delta * delta) / (2 * sigma * sigma))
        return (0..<n).map { k in
            var val = 0.0
            for (gram, w) in hyp.weights[k] {
                let r = ref.weights[k][gram] ?? 0
                val += min(w, r) * r
            }
            if hyp.norms[k] != 0 && ref.norms[k] != 0 { val /= hyp.norms[k] * ref.norms[k] }
            return val * penalty
        }
    }
}
