// UTF-8 helpers for the tokenizer. Text is handled as UTF-8 bytes throughout:
// token identity in Hugging Face `tokenizers` is byte equality (Rust strings),
// while Swift's String == is canonical equivalence ("é" == "e\u{301}"), so
// comparing or hashing Strings would merge tokens HF keeps apart.

/// Decodes the scalar that starts at `i` in valid UTF-8: (value, byte length).
@inline(__always)
func decodeScalar(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> (UInt32, Int) {
    let b0 = UInt32(p[i])
    if b0 < 0x80 { return (b0, 1) }
    if b0 < 0xE0 { return (((b0 & 0x1F) << 6) | (UInt32(p[i + 1]) & 0x3F), 2) }
    if b0 < 0xF0 {
        return (((b0 & 0x0F) << 12) | ((UInt32(p[i + 1]) & 0x3F) << 6) | (UInt32(p[i + 2]) & 0x3F), 3)
    }
    return (((b0 & 0x07) << 18) | ((UInt32(p[i + 1]) & 0x3F) << 12) | ((UInt32(p[i + 2]) & 0x3F) << 6)
            | (UInt32(p[i + 3]) & 0x3F), 4)
}

/// Byte length of the scalar whose first byte is `b` (valid UTF-8 only).
@inline(__always)
func scalarLength(leadByte b: UInt8) -> Int {
    b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
}

/// Appends the UTF-8 encoding of scalar value `v`.
@inline(__always)
func appendUTF8(_ v: UInt32, to out: inout [UInt8]) {
    if v < 0x80 {
        out.append(UInt8(v))
    } else if v < 0x800 {
        out.append(UInt8(0xC0 | (v >> 6)))
        out.append(UInt8(0x80 | (v & 0x3F)))
    } else if v < 0x10000 {
        out.append(UInt8(0xE0 | (v >> 12)))
        out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (v & 0x3F)))
    } else {
        out.append(UInt8(0xF0 | (v >> 18)))
        out.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (v & 0x3F)))
    }
}

/// The scalar values of valid UTF-8 bytes.
func scalars(_ bytes: [UInt8]) -> [UInt32] {
    var out: [UInt32] = []
    out.reserveCapacity(bytes.count)
    bytes.withUnsafeBufferPointer { p in
        var i = 0
        while i < p.count {
            let (v, n) = decodeScalar(p, i)
            out.append(v)
            i += n
        }
    }
    return out
}

/// The bytes U+FFFD encodes to; HF's stream decoder waits while text ends with it.
let replacementCharacterUTF8: [UInt8] = [0xEF, 0xBF, 0xBD]

/// Length of the well-formed sequence starting at `i`, or of its maximal
/// valid prefix negated (-k, k >= 1) when it is cut short or invalid: the
/// Unicode "maximal subpart" rule (Table 3-7) that Rust's
/// String::from_utf8_lossy and HF's ByteLevel decoder follow.
@inline(__always)
private func wellFormedLength(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
    let b = p[i]
    if b < 0x80 { return 1 }
    let need: Int
    var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
    switch b {
    case 0xC2...0xDF: need = 2
    case 0xE0: need = 3; lo = 0xA0
    case 0xE1...0xEC, 0xEE...0xEF: need = 3
    case 0xED: need = 3; hi = 0x9F
    case 0xF0: need = 4; lo = 0x90
    case 0xF1...0xF3: need = 4
    case 0xF4: need = 4; hi = 0x8F
    default: return -1
    }
    var k = 1
    while k < need {
        guard i + k < p.count else { return -k }
        let c = p[i + k]
        if k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF) { return -k }
        k += 1
    }
    return need
}

/// Rust's String::from_utf8_lossy: each maximal invalid subpart becomes one U+FFFD.
func lossyUTF8(_ bytes: [UInt8]) -> [UInt8] {
    bytes.withUnsafeBufferPointer { p in
        var i = 0
        // Fast path: valid input is returned as is.
        while i < p.count {
            let n = wellFormedLength(p, i)
            if n < 0 { break }
            i += n
        }
        if i == p.count { return bytes }
        var out = Array(p[0..<i])
        out.reserveCapacity(p.count + 8)
        while i < p.count {
            let n = wellFormedLength(p, i)
            if n > 0 {
                out.append(contentsOf: p[i..<(i + n)])
                i += n
            } else {
                out.append(contentsOf: replacementCharacterUTF8)
                i += -n
            }
        }
        return out
    }
}

/// Whether bytes are well-formed UTF-8 (Rust's String::from_utf8 succeeding).
func isValidUTF8(_ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBufferPointer { p in
        var i = 0
        while i < p.count {
            let n = wellFormedLength(p, i)
            if n < 0 { return false }
            i += n
        }
        return true
    }
}

/// A String from bytes the tokenizer produced (always valid UTF-8 by construction).
@inline(__always)
func makeString(_ bytes: [UInt8]) -> String {
    String(decoding: bytes, as: UTF8.self)
}

/// Whether `hay` contains `needle` at byte offset `at`.
@inline(__always)
func bytesEqual(_ hay: UnsafeBufferPointer<UInt8>, _ at: Int, _ needle: [UInt8]) -> Bool {
    guard at + needle.count <= hay.count else { return false }
    for k in 0..<needle.count where hay[at + k] != needle[k] { return false }
    return true
}

/// Replaces every non-overlapping occurrence of `pattern` (leftmost first)
/// with `content`; nil when there is none. `pattern` must not be empty.
func replacingOccurrences(in bytes: UnsafeBufferPointer<UInt8>, of pattern: [UInt8], with content: [UInt8]) -> [UInt8]? {
    guard let first = pattern.first, bytes.count >= pattern.count else { return nil }
    var out: [UInt8] = []
    var copied = 0
    var i = 0
    var found = false
    while i + pattern.count <= bytes.count {
        if bytes[i] == first && bytesEqual(bytes, i, pattern) {
            if !found { out.reserveCapacity(bytes.count + content.count); found = true }
            out.append(contentsOf: bytes[copied..<i])
            out.append(contentsOf: content)
            i += pattern.count
            copied = i
        } else {
            i += 1
        }
    }
    guard found else { return nil }
    out.append(contentsOf: bytes[copied..<bytes.count])
    return out
}
