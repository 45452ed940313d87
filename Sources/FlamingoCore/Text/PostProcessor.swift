// Post-processors of tokenizer.json, reduced to what they do to a single
// sequence when special tokens are requested: ids before and after it
// (LLaMA's TemplateProcessing "<s> $A" gives prefix [1]). ByteLevel only
// adjusts offsets and adds nothing.

struct PostProcessor {
    var prefix: [Int] = []
    var suffix: [Int] = []

    static func parse(_ j: TokenizerJSON?) throws -> PostProcessor {
        guard let j else { return PostProcessor() }
        let type = try j.type("post-processor")
        switch type {
        case "ByteLevel":
            return PostProcessor()
        case "TemplateProcessing":
            return try template(j)
        case "RobertaProcessing", "BertProcessing":
            // {"cls": ["<s>", 0], "sep": ["</s>", 2]}: cls $A sep.
            func id(_ key: String) throws -> Int {
                guard let pair = try j.require(key).value.array, pair.count == 2, pair[0].string != nil,
                      let id = pair[1].int, id >= 0 else {
                    throw FlamingoError.invalidFormat("tokenizer.json: \(j.path).\(key) must be [token, id]")
                }
                return id
            }
            return PostProcessor(prefix: [try id("cls")], suffix: [try id("sep")])
        case "Sequence":
            // Each processor wraps the result of the previous one.
            var out = PostProcessor()
            for p in try j.array("processors") {
                let inner = try parse(p)
                out = PostProcessor(prefix: inner.prefix + out.prefix, suffix: out.suffix + inner.suffix)
            }
            return out
        default:
            throw FlamingoError.unsupported("tokenizer.json: post-processor type \"\(type)\" is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)")
        }
    }

    /// The "single" template: special tokens around exactly one "$A".
    private static func template(_ j: TokenizerJSON) throws -> PostProcessor {
        // special_tokens: {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        var specials: [JSONKey: [Int]] = [:]
        if let s = j.field("special_tokens") {
            guard let o = s.value.object else {
                throw FlamingoError.invalidFormat("tokenizer.json: \(s.path) must be an object")
            }
            for (name, entry) in o {
                guard let ids = entry["ids"]?.array, let list = Optional(ids.compactMap({ $0.int })),
                      list.count == ids.count, list.allSatisfy({ $0 >= 0 }) else {
                    throw FlamingoError.invalidFormat("tokenizer.json: \(s.path)[\"\(name)\"].ids must be an array of ids")
                }
                specials[name] = list
            }
        }
        var out = PostProcessor()
        var seenSequence = false
        for piece in try j.array("single") {
            let (isSequence, name) = try templatePiece(piece)
            if isSequence {
                guard name == "A", !seenSequence else {
                    throw FlamingoError.unsupported("tokenizer.json: \(piece.path): a single-sequence template must contain $A once")
                }
                seenSequence = true
            } else {
                guard let ids = specials[JSONKey(name)] else {
                    throw FlamingoError.invalidFormat("tokenizer.json: \(piece.path): special token \"\(name)\" is not in special_tokens")
                }
                if seenSequence { out.suffix += ids } else { out.prefix += ids }
            }
        }
        guard seenSequence else {
            throw FlamingoError.unsupported("tokenizer.json: \(j.path).single has no $A")
        }
        return out
    }

    /// {"Sequence": {"id": "A", ...}} / {"SpecialToken": {"id": "<s>", ...}}, or
    /// the string form "$A" / "$A:0" / "<s>" / "<s>:1". Returns (is sequence, name).
    private static func templatePiece(_ p: TokenizerJSON) throws -> (Bool, String) {
        if let s = p.value.string {
            let name = s.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? s
            if name.hasPrefix("$") {
                let rest = name.dropFirst()
                return (true, rest.isEmpty || rest == "A" || rest == "0" ? "A" : String(rest))
            }
            return (false, name)
        }
        if let seq = p.field("Sequence") { return (true, try seq.string("id")) }
        if let special = p.field("SpecialToken") { return (false, try special.string("id")) }
        throw FlamingoError.invalidFormat("tokenizer.json: \(p.path) must be a Sequence or SpecialToken piece")
    }
}
