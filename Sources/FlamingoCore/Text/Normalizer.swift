// Normalisers of tokenizer.json. HF applies the normaliser to each piece of
// text between added tokens separately (so LLaMA's legacy Prepend("▁") also
// acts after every special token), and to the content of added tokens marked
// "normalized" to get the form they are matched in.

indirect enum Normalizer {
    case nfc
    case prepend([UInt8])
    case replace(pattern: [UInt8], content: [UInt8])
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    /// nil for a null normaliser.
    static func parse(_ j: TokenizerJSON?) throws -> Normalizer? {
        guard let j else { return nil }
        let type = try j.type("normalizer")
        switch type {
        case "NFC":
            return .nfc
        case "Prepend":
            return .prepend(Array(try j.string("prepend").utf8))
        case "Replace":
            return try parseReplace(j)
        case "Strip":
            return .strip(left: try j.bool("strip_left", default: false), right: try j.bool("strip_right", default: false))
        case "Sequence":
            return .sequence(try j.array("normalizers").compactMap { try parse($0) })
        default:
            throw FlamingoError.unsupported("tokenizer.json: normalizer type \"\(type)\" is not supported (supported: NFC, Prepend, Replace, Strip, Sequence)")
        }
    }

    /// Replace(pattern: {"String": ...}, content); regex patterns need a regex engine.
    private static func parseReplace(_ j: TokenizerJSON) throws -> Normalizer {
        let (pattern, content) = try replaceArguments(j)
        return .replace(pattern: pattern, content: content)
    }

    /// The literal pattern and replacement of a Replace normaliser or decoder.
    static func replaceArguments(_ j: TokenizerJSON) throws -> ([UInt8], [UInt8]) {
        let p = try j.require("pattern")
        if p.field("Regex") != nil {
            throw FlamingoError.unsupported("tokenizer.json: \(j.path) uses a Regex pattern; only {\"String\": ...} patterns are supported")
        }
        let pattern = Array(try p.string("String").utf8)
        guard !pattern.isEmpty else {
            throw FlamingoError.unsupported("tokenizer.json: \(j.path) has an empty pattern")
        }
        return (pattern, Array(try j.string("content").utf8))
    }

    /// The normalised bytes (nil when unchanged), and whether the text now
    /// starts past the start of the original: only a left Strip that removes
    /// something moves it (Metaspace's "first" scheme prepends "▁" only to
    /// text whose first character is the input's first).
    func apply(_ p: UnsafeBufferPointer<UInt8>) -> (bytes: [UInt8]?, startMoved: Bool) {
        switch self {
        case .nfc:
            return (hfNFC(p), false)
        case .prepend(let s):
            guard p.count > 0 else { return (nil, false) }
            return (s + Array(p), false)
        case .replace(let pattern, let content):
            return (replacingOccurrences(in: p, of: pattern, with: content), false)
        case .strip(let left, let right):
            var start = 0, end = p.count
            if left {
                while start < end {
                    let (v, n) = decodeScalar(p, start)
                    guard isWhitespaceScalar(v) else { break }
                    start += n
                }
            }
            if right {
                while end > start {
                    var k = end - 1
                    while k > start && p[k] & 0xC0 == 0x80 { k -= 1 }
                    guard isWhitespaceScalar(decodeScalar(p, k).0) else { break }
                    end = k
                }
            }
            if start == 0 && end == p.count { return (nil, false) }
            return (Array(p[start..<end]), start > 0)
        case .sequence(let list):
            var current: [UInt8]? = nil
            var moved = false
            for n in list {
                let (next, m) = current.map { c in c.withUnsafeBufferPointer { n.apply($0) } } ?? n.apply(p)
                if let next { current = next }
                moved = moved || m
            }
            return (current, moved)
        }
    }

    func apply(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBufferPointer { apply($0).bytes } ?? bytes
    }
}
