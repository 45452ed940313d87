// Pre-tokenisers of tokenizer.json: they cut a normalised piece of text into
// the words the BPE model sees.
//   ByteLevel (GPT-2 / GPT-NeoX): optional prefix space, the GPT-2 regex split
//     (by hand, see splitGPT2 below), then every byte mapped to a printable
//     character (bytes_char in HF's byte_level.rs).
//   Metaspace (LLaMA): spaces become "▁", "▁" is prepended ("always", or
//     "first": only to the piece that starts the input, or "never"), and with
//     split = true the text is cut before every "▁".

enum PrependScheme {
    case always, first, never
}

indirect enum PreTokenizer {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case metaspace(replacement: [UInt8], scheme: PrependScheme, split: Bool)
    case sequence([PreTokenizer])

    /// nil for a null pre-tokeniser.
    static func parse(_ j: TokenizerJSON?) throws -> PreTokenizer? {
        guard let j else { return nil }
        let type = try j.type("pre-tokenizer")
        switch type {
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try j.bool("add_prefix_space", default: true),
                              useRegex: try j.bool("use_regex", default: true))
        case "Metaspace":
            let (rep, scheme) = try metaspaceSettings(j)
            return .metaspace(replacement: rep, scheme: scheme, split: try j.bool("split", default: true))
        case "Sequence":
            return .sequence(try j.array("pretokenizers").compactMap { try parse($0) })
        default:
            throw FlamingoError.unsupported("tokenizer.json: pre-tokenizer type \"\(type)\" is not supported (supported: ByteLevel, Metaspace, Sequence)")
        }
    }

    /// Calls `emit` with each word of `piece`. `atOrigin`: the piece starts
    /// at offset 0 of the input (Metaspace "first" prepends only there).
    func words(_ piece: UnsafeBufferPointer<UInt8>, atOrigin: Bool, scratch: inout [UInt8],
               _ emit: (UnsafeBufferPointer<UInt8>) throws -> Void) rethrows {
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            // The common case, without building a list of splits.
            scratch.removeAll(keepingCapacity: true)
            if addPrefixSpace && (piece.count == 0 || piece[0] != 0x20) { scratch.append(0x20) }
            scratch.append(contentsOf: piece)
            var word: [UInt8] = []
            try scratch.withUnsafeBufferPointer { text in
                if useRegex {
                    try splitGPT2(text) { r in
                        mapBytes(UnsafeBufferPointer(rebasing: text[r]), into: &word)
                        try word.withUnsafeBufferPointer(emit)
                    }
                } else {
                    mapBytes(text, into: &word)
                    try word.withUnsafeBufferPointer(emit)
                }
            }
        default:
            var splits = [Split(bytes: Array(piece), atOrigin: atOrigin)]
            apply(to: &splits)
            for s in splits where !s.bytes.isEmpty { try s.bytes.withUnsafeBufferPointer(emit) }
        }
    }

    struct Split {
        var bytes: [UInt8]
        var atOrigin: Bool
    }

    /// One pre-tokeniser over every split (HF PreTokenizedString semantics:
    /// empty splits are dropped).
    func apply(to splits: inout [Split]) {
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            var out: [Split] = []
            for s in splits {
                var b = s.bytes
                if addPrefixSpace && (b.isEmpty || b[0] != 0x20) { b.insert(0x20, at: 0) }
                if useRegex {
                    b.withUnsafeBufferPointer { text in
                        splitGPT2(text) { r in
                            out.append(Split(bytes: Array(text[r]), atOrigin: s.atOrigin && r.lowerBound == 0))
                        }
                    }
                } else if !b.isEmpty {
                    out.append(Split(bytes: b, atOrigin: s.atOrigin))
                }
            }
            for i in out.indices {
                var mapped: [UInt8] = []
                out[i].bytes.withUnsafeBufferPointer { mapBytes($0, into: &mapped) }
                out[i].bytes = mapped
            }
            splits = out
        case .metaspace(let rep, let scheme, let split):
            var out: [Split] = []
            for s in splits {
                var b = s.bytes.withUnsafeBufferPointer { replacingOccurrences(in: $0, of: [0x20], with: rep) } ?? s.bytes
                let startsWithRep = b.count >= rep.count && Array(b[0..<rep.count]) == rep
                switch scheme {
                case .always: if !startsWithRep { b = rep + b }
                case .first: if !startsWithRep && s.atOrigin { b = rep + b }
                case .never: break
                }
                guard split else {
                    if !b.isEmpty { out.append(Split(bytes: b, atOrigin: s.atOrigin)) }
                    continue
                }
                // MergedWithNext on the replacement character: cut before each one.
                var start = 0
                var i = 0
                b.withUnsafeBufferPointer { p in
                    while i < p.count {
                        if i > start && bytesEqual(p, i, rep) {
                            out.append(Split(bytes: Array(p[start..<i]), atOrigin: s.atOrigin && start == 0))
                            start = i
                        }
                        i += scalarLength(leadByte: p[i])
                    }
                    if start < p.count {
                        out.append(Split(bytes: Array(p[start..<p.count]), atOrigin: s.atOrigin && start == 0))
                    }
                }
            }
            splits = out
        case .sequence(let list):
            for p in list { p.apply(to: &splits) }
        }
    }
}

/// replacement and prepend scheme of a Metaspace pre-tokeniser or decoder, as
/// HF deserialises them: prepend_scheme defaults to "always"; the older
/// add_prefix_space = false requires it to be "never" (HF rejects the file
/// otherwise, including when prepend_scheme is absent).
func metaspaceSettings(_ j: TokenizerJSON) throws -> ([UInt8], PrependScheme) {
    var rep: [UInt8] = []
    appendUTF8(try j.character("replacement"), to: &rep)
    var scheme = PrependScheme.always
    if let s = try j.optionalString("prepend_scheme") {
        switch s {
        case "always": scheme = .always
        case "first": scheme = .first
        case "never": scheme = .never
        default:
            throw FlamingoError.invalidFormat("tokenizer.json: \(j.path).prepend_scheme = \"\(s)\" is not always, first or never")
        }
    }
    if try !j.bool("add_prefix_space", default: true) {
        guard scheme == .never else {
            throw FlamingoError.invalidFormat("tokenizer.json: \(j.path): add_prefix_space = false contradicts prepend_scheme \"\(scheme)\"")
        }
    }
    return (rep, scheme)
}

// MARK: - byte-level alphabet

/// bytes_char of HF byte_level.rs: printable Latin-1 bytes stand for
/// themselves, the others for U+0100 onwards in byte order.
let byteToScalar: [UInt32] = {
    var table = [UInt32](repeating: 0, count: 256)
    var n: UInt32 = 0
    for b in 0..<256 {
        if (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b) {
            table[b] = UInt32(b)
        } else {
            table[b] = 256 + n
            n += 1
        }
    }
    return table
}()

/// The UTF-8 of byteToScalar, packed: low byte = length, then the bytes.
private let byteToUTF8: [UInt32] = byteToScalar.map { v in
    var u: [UInt8] = []
    appendUTF8(v, to: &u)
    var packed = UInt32(u.count)
    for (k, b) in u.enumerated() { packed |= UInt32(b) << (8 * (k + 1)) }
    return packed
}

/// Scalar of the byte-level alphabet (all below U+0144) → the byte it stands for, -1 if none.
private let scalarToByteTable: [Int16] = {
    var t = [Int16](repeating: -1, count: 0x200)
    for b in 0..<256 { t[Int(byteToScalar[b])] = Int16(b) }
    return t
}()

@inline(__always)
func scalarToByte(_ v: UInt32) -> UInt8? {
    guard v < 0x200 else { return nil }
    let b = scalarToByteTable[Int(v)]
    return b < 0 ? nil : UInt8(b)
}

@inline(__always)
func mapBytes(_ p: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
    out.removeAll(keepingCapacity: true)
    for b in p {
        let packed = byteToUTF8[Int(b)]
        out.append(UInt8(truncatingIfNeeded: packed >> 8))
        if packed & 0xFF == 2 { out.append(UInt8(truncatingIfNeeded: packed >> 16)) }
    }
}

// MARK: - the GPT-2 regex

/// Splits like the regex
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// found left to right with Oniguruma's first-alternative-wins semantics:
///   - a contraction at an apostrophe;
///   - otherwise an optional U+0020 followed by a run of letters, of numbers
///     or of other (neither space, letter nor number) characters;
///   - otherwise a whitespace run, less its last character when a
///     non-space follows and the run is longer than one (\s+(?!\S) backs off
///     one character so that space can lead the next word).
/// The matches cover the whole text, so every byte lands in some word.
func splitGPT2(_ p: UnsafeBufferPointer<UInt8>, _ emit: (Range<Int>) throws -> Void) rethrows {
    let n = p.count
    var i = 0
    @inline(__always) func run(_ from: Int, _ cls: ScalarClass) -> Int {
        var j = from
        while j < n {
            let (v, l) = decodeScalar(p, j)
            if scalarClass(v) != cls { break }
            j += l
        }
        return j
    }
    while i < n {
        let b = p[i]
        if b == 0x27 && i + 1 < n {   // '
            let c1 = p[i + 1]
            if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 {   // s t m d
                try emit(i..<(i + 2)); i += 2; continue
            }
            if i + 2 < n {
                let c2 = p[i + 2]
                if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) {  // re ve ll
                    try emit(i..<(i + 3)); i += 3; continue
                }
            }
        }
        if b == 0x20 && i + 1 < n {
            let (v, l) = decodeScalar(p, i + 1)
            let cls = scalarClass(v)
            if cls != .space {
                let j = run(i + 1 + l, cls)
                try emit(i..<j); i = j; continue
            }
        }
        let (v, l) = decodeScalar(p, i)
        let cls = scalarClass(v)
        if cls != .space {
            let j = run(i + l, cls)
            try emit(i..<j); i = j; continue
        }
        // Whitespace run [i, j), remembering where its last character starts.
        var j = i + l, last = i, count = 1
        while j < n {
            let (w, m) = decodeScalar(p, j)
            if scalarClass(w) != .space { break }
            last = j
            j += m
            count += 1
        }
        if j < n && count > 1 {
            try emit(i..<last); i = last
        } else {
            try emit(i..<j); i = j
        }
    }
}
