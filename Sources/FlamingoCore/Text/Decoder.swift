// Decoders of tokenizer.json: token strings → text, as HF's decode_chain
// (each decoder maps the list of token strings to a new list; the results
// are concatenated). Strings are UTF-8 byte arrays, valid after each step.

indirect enum TokenDecoder {
    /// Byte-level alphabet → bytes; tokens not made of that alphabet (added
    /// tokens like "New York") are taken as they are; invalid UTF-8 → U+FFFD.
    case byteLevel
    /// "▁" → " ", dropped from the first token unless prepend_scheme is "never".
    case metaspace(replacement: [UInt8], dropFirst: Bool)
    case replace(pattern: [UInt8], content: [UInt8])
    /// Runs of "<0xNN>" tokens → their bytes (one U+FFFD per byte if invalid).
    case byteFallback
    case fuse
    /// Up to `start` leading / `stop` trailing `content` characters removed from each token.
    case strip(content: UInt32, start: Int, stop: Int)
    case sequence([TokenDecoder])

    /// nil for a null decoder (tokens joined with spaces).
    static func parse(_ j: TokenizerJSON?) throws -> TokenDecoder? {
        guard let j else { return nil }
        let type = try j.type("decoder")
        switch type {
        case "ByteLevel":
            return .byteLevel
        case "Metaspace":
            let (rep, scheme) = try metaspaceSettings(j)
            return .metaspace(replacement: rep, dropFirst: scheme != .never)
        case "Replace":
            let (pattern, content) = try Normalizer.replaceArguments(j)
            return .replace(pattern: pattern, content: content)
        case "ByteFallback":
            return .byteFallback
        case "Fuse":
            return .fuse
        case "Strip":
            return .strip(content: try j.character("content"), start: try j.int("start"), stop: try j.int("stop"))
        case "Sequence":
            return .sequence(try j.array("decoders").compactMap { try parse($0) })
        default:
            throw FlamingoError.unsupported("tokenizer.json: decoder type \"\(type)\" is not supported (supported: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence)")
        }
    }

    func decodeChain(_ tokens: [[UInt8]]) -> [[UInt8]] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                let start = bytes.count
                var allMapped = true
                t.withUnsafeBufferPointer { p in
                    var i = 0
                    while i < p.count {
                        let (v, n) = decodeScalar(p, i)
                        guard let b = scalarToByte(v) else { allMapped = false; break }
                        bytes.append(b)
                        i += n
                    }
                }
                if !allMapped {
                    bytes.removeSubrange(start...)
                    bytes.append(contentsOf: t)
                }
            }
            return [lossyUTF8(bytes)]
        case .metaspace(let rep, let dropFirst):
            return tokens.enumerated().map { i, t in
                let content: [UInt8] = i == 0 && dropFirst ? [] : [0x20]
                return t.withUnsafeBufferPointer { replacingOccurrences(in: $0, of: rep, with: content) } ?? t
            }
        case .replace(let pattern, let content):
            return tokens.map { t in t.withUnsafeBufferPointer { replacingOccurrences(in: $0, of: pattern, with: content) } ?? t }
        case .byteFallback:
            var out: [[UInt8]] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if isValidUTF8(pending) {
                    out.append(pending)
                } else {
                    for _ in pending { out.append(replacementCharacterUTF8) }
                }
                pending.removeAll()
            }
            for t in tokens {
                if let b = fallbackByte(t) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(t)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.flatMap { $0 }]
        case .strip(let content, let start, let stop):
            return tokens.map { t in
                let chars = scalars(t)
                var startCut = 0
                for i in 0..<min(start, chars.count) {
                    if chars[i] == content { startCut = i + 1 } else { break }
                }
                var stopCut = chars.count
                if stop > 0 {
                    for i in 0..<min(stop, chars.count) {
                        let index = chars.count - i - 1
                        if chars[index] == content { stopCut = index } else { break }
                    }
                }
                // HF would panic on an inverted range; give the empty string.
                guard startCut < stopCut else { return [] }
                if startCut == 0 && stopCut == chars.count { return t }
                var out: [UInt8] = []
                for v in chars[startCut..<stopCut] { appendUTF8(v, to: &out) }
                return out
            }
        case .sequence(let list):
            var current = tokens
            for d in list { current = d.decodeChain(current) }
            return current
        }
    }

    /// "<0xNN>" → NN as HF parses it (6 bytes, u8::from_str_radix on the two
    /// middle characters, which also accepts a leading "+").
    private func fallbackByte(_ t: [UInt8]) -> UInt8? {
        guard t.count == 6, t[0] == 0x3C, t[1] == 0x30, t[2] == 0x78, t[5] == 0x3E else { return nil }
        func digit(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        if t[3] == 0x2B { return digit(t[4]) }
        guard let hi = digit(t[3]), let lo = digit(t[4]) else { return nil }
        return hi << 4 | lo
    }
}
