/// Incremental decoding for generation: push ids one at a time, get the text
/// they complete. Never returns part of a character: while the decoded text
/// ends in U+FFFD (an unfinished UTF-8 sequence of byte tokens) it returns ""
/// and waits for more ids.
///
/// The algorithm is HF's DecodeStream (tokenizer/mod.rs step_decode_stream):
/// the ids since the last emitted chunk are decoded together with the ids
/// of the chunk before them, so decoders that look at neighbours (LLaMA's
/// Strip of the first space, Metaspace) give the same text as a full decode,
/// and the new text is what lies past the previously emitted prefix. Where
/// HF raises "Invalid prefix" (a byte-fallback run that turns out invalid
/// rewrites bytes already emitted as characters), this returns the decoding
/// of the pending ids instead and carries on.
///
/// Not thread-safe: use one decoder per stream.
public final class StreamDecoder {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var ids: [Int] = []
    private var held: [Int] = []
    private var prefix: [UInt8] = []
    private var prefixIndex = 0

    init(tokenizer: Tokenizer, skipSpecialTokens: Bool) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
    }

    /// Feeds one id; returns the newly completed text ("" when there is none yet).
    ///
    /// A run of byte-fallback tokens ("<0xNN>") is held back until a token
    /// that is not one arrives (or `flush`): the decoder turns a whole run
    /// into U+FFFD per byte when the run is not valid UTF-8, so a byte that
    /// looks complete on its own ("2") may still become U+FFFD.
    public func push(_ id: Int) throws -> String {
        guard id >= 0 && id < tokenizer.vocabSize else {
            throw FlamingoError.invalidArgument("token id \(id) is outside the vocabulary (0..<\(tokenizer.vocabSize))")
        }
        if isByteToken(id) {
            held.append(id)
            return ""
        }
        held.append(id)
        defer { held.removeAll() }
        return try step(held).map(makeString) ?? ""
    }

    /// The text still held back at the end of a stream: pending byte tokens,
    /// and an unfinished character as the full decode shows it (U+FFFD).
    /// The stream then starts afresh.
    public func flush() throws -> String {
        var out: [UInt8] = []
        if !held.isEmpty, let chunk = try step(held) { out += chunk }
        held.removeAll()
        let all = try decode(ids[...])
        if all.count > prefix.count && all.starts(with: prefix) { out += all[prefix.count...] }
        reset()
        return makeString(out)
    }

    private func isByteToken(_ id: Int) -> Bool {
        guard let t = tokenizer.token(of: id) else { return false }
        let u = Array(t.utf8)
        return u.count == 6 && u[0] == 0x3C && u[1] == 0x30 && u[2] == 0x78 && u[5] == 0x3E
    }

    /// Forgets everything pushed so far.
    public func reset() {
        held.removeAll()
        ids.removeAll()
        prefix.removeAll()
        prefixIndex = 0
    }

    /// HF step_decode_stream for one or more new ids; nil where HF returns None.
    func step(_ newIds: [Int]) throws -> [UInt8]? {
        if prefix.isEmpty && !ids.isEmpty {
            let p = try decode(ids[...])
            if !endsWithReplacement(p) {
                prefix = p
                prefixIndex = ids.count
            }
        }
        ids += newIds
        let string = try decode(ids[...])
        guard string.count > prefix.count && !endsWithReplacement(string) else { return nil }
        let newText: [UInt8]
        if string.starts(with: prefix) {
            newText = Array(string[prefix.count...])
        } else {
            newText = try decode(ids[prefixIndex...])
        }
        let newPrefixIndex = ids.count - prefixIndex
        ids.removeFirst(prefixIndex)
        prefix = try decode(ids[...])
        prefixIndex = newPrefixIndex
        return newText
    }

    private func decode(_ slice: ArraySlice<Int>) throws -> [UInt8] {
        try tokenizer.decodeBytes(slice, skipSpecialTokens: skipSpecialTokens)
    }

    private func endsWithReplacement(_ s: [UInt8]) -> Bool {
        s.count >= 3 && s[s.count - 3] == 0xEF && s[s.count - 2] == 0xBF && s[s.count - 1] == 0xBD
    }
}
