// Unicode properties as Hugging Face `tokenizers` 0.23 sees them. Swift's
// stdlib carries a newer Unicode (17.0 in Swift 6.3) than the tables compiled
// into HF: its regex engine knows Unicode 16.0 and its NFC (the
// unicode-normalization-alignments crate) Unicode 9.0. Characters assigned
// later are unassigned there, so they are treated as such here; the golden
// tests (classes.json, nfc.jsonl) pin both against HF for every code point.

/// Newest Unicode version HF's regex tables know (`\p{L}`, `\s`, `\w`).
private let regexUnicodeVersion = (major: 16, minor: 0)
/// Newest Unicode version HF's NFC knows.
private let nfcUnicodeVersion = (major: 9, minor: 0)

@inline(__always)
private func assigned(_ p: Unicode.Scalar.Properties, upTo v: (major: Int, minor: Int)) -> Bool {
    guard let age = p.age else { return false }
    return age.major < v.major || (age.major == v.major && age.minor <= v.minor)
}

/// How the GPT-2 pre-tokenizer regex sees a scalar: `\p{L}`, `\p{N}`, `\s`, or other.
enum ScalarClass: UInt8 {
    case letter = 0, number = 1, space = 2, other = 3
}

private func computeClass(_ v: UInt32) -> ScalarClass {
    guard let s = Unicode.Scalar(v) else { return .other }
    let p = s.properties
    guard assigned(p, upTo: regexUnicodeVersion) else { return .other }
    if p.isWhitespace { return .space }
    switch p.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
    case .decimalNumber, .letterNumber, .otherNumber: return .number
    default: return .other
    }
}

/// Classes of the Basic Multilingual Plane, built once on first use (64 KiB):
/// property lookups cost tens of nanoseconds each, a table load one.
private let bmpClasses: [ScalarClass] = (0..<0x10000).map { computeClass(UInt32($0)) }

@inline(__always)
func scalarClass(_ v: UInt32) -> ScalarClass {
    if v < 0x80 {
        switch v {
        case 0x41...0x5A, 0x61...0x7A: return .letter
        case 0x30...0x39: return .number
        case 0x09...0x0D, 0x20: return .space
        default: return .other
        }
    }
    return v < 0x10000 ? bmpClasses[Int(v)] : computeClass(v)
}

/// Rust regex `\s`: the White_Space property.
func isRegexSpace(_ v: UInt32) -> Bool { scalarClass(v) == .space }

/// Rust regex `\w` (Unicode): Alphabetic, marks, decimal digits, connector punctuation, Join_Control.
func isRegexWord(_ v: UInt32) -> Bool {
    if v < 0x80 {
        return (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) || v == 0x5F
    }
    guard let s = Unicode.Scalar(v) else { return false }
    let p = s.properties
    guard assigned(p, upTo: regexUnicodeVersion) else { return false }
    if p.isAlphabetic || p.isJoinControl { return true }
    switch p.generalCategory {
    case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
    default: return false
    }
}

/// Rust's char::is_whitespace (White_Space), used by the Strip normaliser.
@inline(__always)
func isWhitespaceScalar(_ v: UInt32) -> Bool { scalarClass(v) == .space }

/// HF's NFC of valid UTF-8, or nil when it leaves the text unchanged.
///
/// Only runs of non-ASCII text (with the ASCII character before them, which
/// may compose with a following mark) can change: an ASCII character is a
/// starter that never combines with what precedes it, so normalisation never
/// crosses it, and a run whose scalars are all below U+0300 (lead bytes below
/// 0xCC) is already stable. English text thus costs one scan.
func hfNFC(_ p: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
    var out: [UInt8]? = nil
    var copied = 0
    var i = 0
    while i < p.count {
        guard p[i] >= 0x80 else { i += 1; continue }
        var end = i, needs = false
        while end < p.count && p[end] >= 0x80 {
            if p[end] >= 0xCC { needs = true }
            end += 1
        }
        if needs {
            let start = i > 0 ? i - 1 : 0
            let run = UnsafeBufferPointer(rebasing: p[start..<end])
            let normalized = nfcRun(run)
            if !normalized.elementsEqual(run) {
                if out == nil { out = []; out?.reserveCapacity(p.count + 16) }
                out?.append(contentsOf: p[copied..<start])
                out?.append(contentsOf: normalized)
                copied = end
            }
        }
        i = end
    }
    guard var result = out else { return nil }
    result.append(contentsOf: p[copied..<p.count])
    return result
}

/// Swift's NFC (String._nfcCodeUnits) knows every character; HF's treats
/// characters newer than Unicode 9.0 as unassigned, i.e. as starters that
/// neither decompose, compose nor reorder. Such a character therefore cuts
/// the text into independent runs: each run is normalised by Swift and the
/// character itself is kept as is, which reproduces HF exactly.
private func nfcRun(_ p: UnsafeBufferPointer<UInt8>) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(p.count)
    var runStart = 0
    var i = 0
    func flush(_ end: Int) {
        guard end > runStart else { return }
        let run = String(decoding: UnsafeBufferPointer(rebasing: p[runStart..<end]), as: UTF8.self)
        out.append(contentsOf: run._nfcCodeUnits)
    }
    while i < p.count {
        let (v, n) = decodeScalar(p, i)
        if v >= 0x300, let s = Unicode.Scalar(v), !assigned(s.properties, upTo: nfcUnicodeVersion) {
            flush(i)
            out.append(contentsOf: p[i..<(i + n)])
            runStart = i + n
        }
        i += n
    }
    flush(p.count)
    return out
}
