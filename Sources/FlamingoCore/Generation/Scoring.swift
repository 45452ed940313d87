/// Log-likelihood ranking, as open_flamingo's classification evaluation
/// (`get_rank_classifications`): the context is evaluated once; each
/// candidate continues it (in cached-media mode: its tokens attend to the
/// last image of the context) and is scored by the sum of its tokens'
/// log-probabilities.
extension TokenSequence {
    /// Sum of log p(candidate tokens | evaluated sequence) for each
    /// candidate; the sequence itself is left as it was.
    public func logLikelihoods(of candidates: [[Int]]) throws -> [Float] {
        guard !lastLogits.isEmpty else { throw FlamingoError.invalidArgument("evaluate a context before scoring") }
        let vocab = flamingo.config.languageModel.vocabSize
        return try candidates.map { cand in
            guard !cand.isEmpty else { throw FlamingoError.invalidArgument("an empty candidate cannot be scored") }
            var total = LogitsProcessing.logSoftmax(lastLogits)[cand[0]]
            if cand.count > 1 {
                let branch = try copy()
                let logits = try branch.evaluate(Array(cand.dropLast()), allLogits: true)
                for i in 1..<cand.count {
                    let row = Array(UnsafeBufferPointer(start: logits.p + (i - 1) * vocab, count: vocab))
                    total += LogitsProcessing.logSoftmax(row)[cand[i]]
                }
            }
            return total
        }
    }
}
