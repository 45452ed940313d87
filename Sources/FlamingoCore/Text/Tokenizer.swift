import Glibc

/// A Hugging Face `tokenizer.json` tokenizer: byte-level BPE (GPT-NeoX-20B,
/// used by MPT and RedPajama) and SentencePiece-style BPE with byte fallback
/// (LLaMA), producing the ids HF `tokenizers` 0.23 / transformers 5 produce.
///
/// The pipeline is HF's: added tokens are cut out first (TokenMatcher), each
/// remaining piece is normalised, pre-tokenised into words, and each word is
/// BPE-encoded; the post-processor then adds BOS/EOS. Decoding runs the
/// decoder chain on the token strings.
///
/// Thread safety: every method may be called from any thread; `encode`
/// calls are serialised by an internal lock (they share the word cache).
public final class Tokenizer: @unchecked Sendable {
    let model: BPEModel
    let added: AddedVocabulary
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor
    let decoder: TokenDecoder?
    /// id → the string decode() uses (added tokens in their normalised form), nil for holes.
    let decodeForms: [[UInt8]?]
    /// id → whether skip_special_tokens drops it (its decode form is a special token's content).
    let isSpecialForm: [Bool]
    private let lock: UnsafeMutablePointer<pthread_mutex_t>

    /// Ids run from 0 to vocabSize - 1 (base vocabulary and added tokens; for
    /// the OpenFlamingo tokenizers this equals HF's len(tokenizer)).
    public let vocabSize: Int

    /// Loads a tokenizer.json file.
    public convenience init(path: String) throws {
        let file = try MappedFile(path: path)
        let json = try withContext(path) { try JSON.parse(file.bytes) }
        do {
            try self.init(json: json)
        } catch let e as FlamingoError {
            throw e.context(path)
        }
    }

    /// Builds the tokenizer from a parsed tokenizer.json.
    public init(json: JSON) throws {
        let root = TokenizerJSON(json, path: "")
        guard json.object != nil else { throw FlamingoError.invalidFormat("tokenizer.json: the top level must be an object") }
        if let v = try root.optionalString("version"), v != "1.0" {
            throw FlamingoError.unsupported("tokenizer.json: version \"\(v)\" is not supported (1.0)")
        }
        let m = try root.require("model")
        guard m.value.object != nil else { throw FlamingoError.invalidFormat("tokenizer.json: model must be an object") }
        // Old files have no "type"; HF then recognises BPE by its merges.
        let modelType = try m.optionalString("type") ?? (m.field("merges") != nil ? "BPE" : "(none)")
        guard modelType == "BPE" else {
            throw FlamingoError.unsupported("tokenizer.json: model type \"\(modelType)\" is not supported (only BPE)")
        }
        model = try BPEModel(json: m)
        normalizer = try Normalizer.parse(root.field("normalizer"))
        preTokenizer = try PreTokenizer.parse(root.field("pre_tokenizer"))
        postProcessor = try PostProcessor.parse(root.field("post_processor"))
        decoder = try TokenDecoder.parse(root.field("decoder"))
        let addedList = root.field("added_tokens") != nil ? try root.array("added_tokens") : []
        let added = try AddedVocabulary(json: addedList, model: model, normalizer: normalizer)
        self.added = added

        let size = max(model.tokens.count, added.maxId + 1)
        var forms = model.tokens + [[UInt8]?](repeating: nil, count: size - model.tokens.count)
        for (id, _) in added.tokenById { forms[id] = added.decodeForm(id) }
        decodeForms = forms
        let specials = added.specialContents
        isSpecialForm = forms.map { f in f.map { specials.contains($0) } ?? false }
        vocabSize = size
        for id in postProcessor.prefix + postProcessor.suffix where id >= size {
            throw FlamingoError.invalidFormat("tokenizer.json: post_processor adds id \(id), outside the vocabulary (\(size))")
        }
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    // MARK: - encoding

    /// The ids of `text`, as HF's `tokenizer.encode(text, add_special_tokens=...)`.
    public func encode(_ text: String, addSpecialTokens: Bool = true) throws -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        if addSpecialTokens { ids += postProcessor.prefix }
        var copy = text
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        try model.withState { st in
            try copy.withUTF8 { try encodeBody($0, &st, into: &ids) }
        }
        if addSpecialTokens { ids += postProcessor.suffix }
        return ids
    }

    private func encodeBody(_ input: UnsafeBufferPointer<UInt8>, _ st: inout BPEModel.State, into ids: inout [Int]) throws {
        for segment in added.splitRaw(input) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let r):
                guard !r.isEmpty else { continue }
                let piece = UnsafeBufferPointer(rebasing: input[r])
                let (normalized, moved) = normalizer?.apply(piece) ?? (nil, false)
                let atOrigin = r.lowerBound == 0 && !moved
                if let normalized {
                    try normalized.withUnsafeBufferPointer { try encodeNormalized($0, atOrigin: atOrigin, &st, into: &ids) }
                } else {
                    try encodeNormalized(piece, atOrigin: atOrigin, &st, into: &ids)
                }
            }
        }
    }

    /// Second added-token pass, pre-tokeniser and model on one normalised piece.
    private func encodeNormalized(_ p: UnsafeBufferPointer<UInt8>, atOrigin: Bool, _ st: inout BPEModel.State,
                                  into ids: inout [Int]) throws {
        guard p.count > 0 else { return }
        if !added.hasNormalizedTokens {
            try encodeWords(p, atOrigin: atOrigin, &st, into: &ids)
            return
        }
        for segment in added.splitNormalized(p) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let r):
                guard !r.isEmpty else { continue }
                try encodeWords(UnsafeBufferPointer(rebasing: p[r]), atOrigin: atOrigin && r.lowerBound == 0, &st, into: &ids)
            }
        }
    }

    private func encodeWords(_ p: UnsafeBufferPointer<UInt8>, atOrigin: Bool, _ st: inout BPEModel.State,
                             into ids: inout [Int]) throws {
        guard let preTokenizer else {
            try model.tokenize(p, &st, into: &ids)
            return
        }
        let model = self.model
        var scratch = st.text   // moved out: the closure below needs st itself
        st.text = []
        defer { st.text = scratch }
        try preTokenizer.words(p, atOrigin: atOrigin, scratch: &scratch) { word in
            try model.tokenize(word, &st, into: &ids)
        }
    }

    // MARK: - decoding

    /// The text of `ids`, as HF's `tokenizer.decode(ids, skip_special_tokens=...)`.
    /// Ids outside 0..<vocabSize are an invalidArgument error; ids inside it
    /// that name no token are skipped, as HF does.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws -> String {
        makeString(try decodeBytes(ids[...], skipSpecialTokens: skipSpecialTokens))
    }

    func decodeBytes(_ ids: ArraySlice<Int>, skipSpecialTokens: Bool) throws -> [UInt8] {
        var tokens: [[UInt8]] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard id >= 0 && id < vocabSize else {
                throw FlamingoError.invalidArgument("token id \(id) is outside the vocabulary (0..<\(vocabSize))")
            }
            guard let t = decodeForms[id] else { continue }
            if skipSpecialTokens && isSpecialForm[id] { continue }
            tokens.append(t)
        }
        guard let decoder else {
            // HF without a decoder: the tokens joined with spaces.
            var out: [UInt8] = []
            for (i, t) in tokens.enumerated() {
                if i > 0 { out.append(0x20) }
                out += t
            }
            return out
        }
        return decoder.decodeChain(tokens).flatMap { $0 }
    }

    // MARK: - vocabulary

    /// HF token_to_id: added tokens first, then the model vocabulary (exact bytes).
    public func id(of token: String) -> Int? {
        let bytes = Array(token.utf8)
        if let id = added.idByContent[bytes] { return id }
        return model.vocab.find(bytes).map(Int.init)
    }

    /// HF id_to_token (an added token in its normalised form when it has one).
    public func token(of id: Int) -> String? {
        guard id >= 0 && id < vocabSize, let t = decodeForms[id] else { return nil }
        return makeString(t)
    }

    /// A decoder for ids arriving one at a time (generation).
    public func makeStreamDecoder(skipSpecialTokens: Bool = false) -> StreamDecoder {
        StreamDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }

    /// Empties the per-word cache (for cold-cache measurements; never needed for correctness).
    public func clearCache() {
        pthread_mutex_lock(lock)
        model.clearCache()
        pthread_mutex_unlock(lock)
    }
}
