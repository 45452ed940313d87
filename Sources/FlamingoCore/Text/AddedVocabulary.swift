// Added tokens ("added_tokens" of tokenizer.json: <image>, <|endofchunk|>,
// <s>, GPT-NeoX's "  ", ...), replicating HF tokenizer/added_vocabulary.rs:
//   - ids: a content already in the vocabulary keeps its id, others are
//     numbered from the vocabulary size in file order (the ids written in the
//     file are not consulted, as in HF);
//   - matching: leftmost-longest over the bytes, in two passes: tokens with
//     normalized = false on the raw text, then the others, in their
//     normalised form, on each normalised piece between the first matches;
//   - single_word drops a match touching a \w character; lstrip / rstrip
//     make the token swallow the whitespace on its left / right.

struct AddedToken {
    var content: [UInt8]
    var singleWord = false
    var lstrip = false
    var rstrip = false
    var normalized = false
    var special = false
}

/// A piece of text to tokenise, or an added token's id.
enum Segment {
    case text(Range<Int>)
    case token(Int)
}

/// Leftmost-longest multi-pattern matcher over bytes (a byte trie walked from
/// each start position: added-token sets are small).
struct TokenMatcher {
    private var children: [[(UInt8, Int32)]] = [[]]
    private var value: [Int32] = [-1]
    private var firstByte = [Bool](repeating: false, count: 256)

    var isEmpty: Bool { value.count == 1 }

    mutating func add(_ pattern: [UInt8], id: Int32) {
        guard !pattern.isEmpty else { return }
        var node = 0
        for b in pattern {
            if let next = children[node].first(where: { $0.0 == b })?.1 {
                node = Int(next)
            } else {
                children.append([])
                value.append(-1)
                children[node].append((b, Int32(children.count - 1)))
                node = children.count - 1
            }
        }
        value[node] = id
        firstByte[Int(pattern[0])] = true
    }

    /// Calls `found(start, end, id)` for each non-overlapping leftmost-longest match.
    func matches(_ p: UnsafeBufferPointer<UInt8>, _ found: (Int, Int, Int) -> Void) {
        guard !isEmpty else { return }
        var i = 0
        while i < p.count {
            guard firstByte[Int(p[i])] else { i += 1; continue }
            var node = 0, j = i
            var best = -1, bestId: Int32 = -1
            while j < p.count, let next = children[node].first(where: { $0.0 == p[j] })?.1 {
                node = Int(next)
                j += 1
                if value[node] >= 0 { best = j; bestId = value[node] }
            }
            if best > 0 {
                found(i, best, Int(bestId))
                i = best
            } else {
                i += 1
            }
        }
    }
}

struct AddedVocabulary {
    /// content → id (HF added_tokens_map).
    private(set) var idByContent: [[UInt8]: Int] = [:]
    /// id → token (HF added_tokens_map_r: a later token with the same id wins).
    private(set) var tokenById: [Int: AddedToken] = [:]
    /// id → normalised content, for normalized tokens the normaliser changes.
    private(set) var normalizedForm: [Int: [UInt8]] = [:]
    /// Contents of the special tokens (what skip_special_tokens removes).
    private(set) var specialContents: Set<[UInt8]> = []
    private var rawMatcher = TokenMatcher()
    private var normalizedMatcher = TokenMatcher()

    init(json list: [TokenizerJSON], model: BPEModel, normalizer: Normalizer?) throws {
        var nextId = model.entryCount
        for t in list {
            let content = Array(try t.string("content").utf8)
            let special = try t.bool("special", default: false)
            let token = AddedToken(content: content,
                                   singleWord: try t.bool("single_word", default: false),
                                   lstrip: try t.bool("lstrip", default: false),
                                   rstrip: try t.bool("rstrip", default: false),
                                   normalized: try t.bool("normalized", default: !special),
                                   special: special)
            _ = try t.int("id")   // present and well-formed, as HF requires
            if content.isEmpty { continue }
            let id: Int
            if let existing = idByContent[content] {
                id = existing
            } else if let v = model.vocab.find(content) {
                id = Int(v)
            } else {
                id = nextId
                nextId += 1
            }
            if token.normalized, let normalizer {
                let form = normalizer.apply(content)
                if form != content { normalizedForm[id] = form }
            }
            idByContent[content] = id
            if special { specialContents.insert(content) }
            tokenById[id] = token
        }
        for (id, token) in tokenById {
            if token.normalized {
                normalizedMatcher.add(normalizedForm[id] ?? token.content, id: Int32(id))
            } else {
                rawMatcher.add(token.content, id: Int32(id))
            }
        }
    }

    /// The string HF decodes an added token to (its normalised form if it has one).
    func decodeForm(_ id: Int) -> [UInt8]? {
        guard let t = tokenById[id] else { return nil }
        return normalizedForm[id] ?? t.content
    }

    var maxId: Int { tokenById.keys.max() ?? -1 }
    var hasNormalizedTokens: Bool { !normalizedMatcher.isEmpty }

    /// First pass: splits the raw text on tokens with normalized = false.
    func splitRaw(_ p: UnsafeBufferPointer<UInt8>) -> [Segment] {
        split(p, rawMatcher)
    }

    /// Second pass, on one normalised piece.
    func splitNormalized(_ p: UnsafeBufferPointer<UInt8>) -> [Segment] {
        split(p, normalizedMatcher)
    }

    /// HF AddedVocabulary::find_matches. Ranges may overlap where HF's do
    /// (an rstrip reaching past the start of the next match).
    private func split(_ p: UnsafeBufferPointer<UInt8>, _ matcher: TokenMatcher) -> [Segment] {
        var out: [Segment] = []
        var startOffset = 0
        matcher.matches(p) { mStart, mEnd, id in
            guard let token = tokenById[id] else { return }
            var start = mStart, stop = mEnd
            if token.singleWord {
                let startSpace = start == 0 || !isRegexWord(lastScalar(p, before: start))
                let stopSpace = stop == p.count || !isRegexWord(decodeScalar(p, stop).0)
                if !startSpace || !stopSpace { return }
            }
            if token.lstrip {
                var s = start
                while s > 0 {
                    var k = s - 1
                    while k > 0 && p[k] & 0xC0 == 0x80 { k -= 1 }
                    guard isRegexSpace(decodeScalar(p, k).0) else { break }
                    s = k
                }
                start = max(s, startOffset)
            }
            if token.rstrip {
                while stop < p.count {
                    let (v, n) = decodeScalar(p, stop)
                    guard isRegexSpace(v) else { break }
                    stop += n
                }
            }
            if startOffset < start { out.append(.text(startOffset..<start)) }
            out.append(.token(id))
            startOffset = stop
        }
        if startOffset != p.count { out.append(.text(startOffset..<p.count)) }
        return out
    }
}

@inline(__always)
private func lastScalar(_ p: UnsafeBufferPointer<UInt8>, before i: Int) -> UInt32 {
    var k = i - 1
    while k > 0 && p[k] & 0xC0 == 0x80 { k -= 1 }
    return decodeScalar(p, k).0
}
