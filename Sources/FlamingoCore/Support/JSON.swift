// A small strict JSON (RFC 8259) reader. The engine avoids Foundation so the
// shared library stays small and loads fast; config.json, safetensors headers
// and tokenizer.json are all read through this.

public enum JSON: Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([JSONKey: JSON])

    /// Parses a complete document; trailing non-whitespace is an error.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> JSON {
        var p = Parser(bytes: bytes)
        p.skipWhitespace()
        let v = try p.value(depth: 0)
        p.skipWhitespace()
        if p.pos != bytes.count { throw p.error("unexpected data after the JSON value") }
        return v
    }

    public static func parse(_ text: String) throws -> JSON {
        var copy = text
        return try copy.withUTF8 { try parse(UnsafeRawBufferPointer($0)) }
    }

    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[JSONKey(key)] }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var double: Double? { if case .number(let d) = self { return d }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var array: [JSON]? { if case .array(let a) = self { return a }; return nil }
    public var object: [JSONKey: JSON]? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { self == .null }

    /// The value as an exact integer (no fraction, within ±2^53).
    public var int: Int? {
        guard case .number(let d) = self, d.rounded() == d, abs(d) <= 9_007_199_254_740_992 else { return nil }
        return Int(d)
    }
}

/// An object key compared by its exact Unicode scalars, as JSON (RFC 8259 §8.3) and
/// Hugging Face's tokenizers compare them. Swift's `String` equality is canonical
/// equivalence, under which "é" (U+00E9) and "e" + U+0301 are one key: a vocabulary
/// holding both as different tokens would be rejected as a duplicate.
public struct JSONKey: Hashable, Comparable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let string: String

    public init(_ string: String) { self.string = string }
    public init(stringLiteral value: String) { self.string = value }
    public var description: String { string }

    public static func == (a: JSONKey, b: JSONKey) -> Bool { a.string.utf8.elementsEqual(b.string.utf8) }
    /// UTF-8 byte order, which is code point order (Python's sort_keys).
    public static func < (a: JSONKey, b: JSONKey) -> Bool { a.string.utf8.lexicographicallyPrecedes(b.string.utf8) }
    public func hash(into h: inout Hasher) {
        for b in string.utf8 { h.combine(b) }
        h.combine(0xFF as UInt8)  // never a UTF-8 byte: ends the key
    }
}

private struct Parser {
    let bytes: UnsafeRawBufferPointer
    var pos = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    func error(_ what: String) -> FlamingoError {
        .invalidFormat("invalid JSON at byte \(pos): \(what)")
    }

    var atEnd: Bool { pos >= bytes.count }
    func peek() -> UInt8 { bytes[pos] }

    mutating func skipWhitespace() {
        while pos < bytes.count {
            let c = bytes[pos]
            if c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { pos += 1 } else { break }
        }
    }

    mutating func expect(_ literal: StaticString, _ v: JSON) throws -> JSON {
        let n = literal.utf8CodeUnitCount
        guard pos + n <= bytes.count else { throw error("truncated literal") }
        let lit = literal.utf8Start
        for i in 0..<n where bytes[pos + i] != lit[i] { throw error("invalid literal") }
        pos += n
        return v
    }

    mutating func value(depth: Int) throws -> JSON {
        guard depth < 512 else { throw error("nesting deeper than 512") }
        guard !atEnd else { throw error("unexpected end of input") }
        switch peek() {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        default: return try number()
        }
    }

    mutating func object(depth: Int) throws -> JSON {
        pos += 1
        var out: [JSONKey: JSON] = [:]
        skipWhitespace()
        if !atEnd && peek() == UInt8(ascii: "}") { pos += 1; return .object(out) }
        while true {
            skipWhitespace()
            guard !atEnd, peek() == UInt8(ascii: "\"") else { throw error("expected a string key") }
            let key = try string()
            skipWhitespace()
            guard !atEnd, peek() == UInt8(ascii: ":") else { throw error("expected ':'") }
            pos += 1
            skipWhitespace()
            let v = try value(depth: depth + 1)
            if out.updateValue(v, forKey: JSONKey(key)) != nil { throw error("duplicate key \"\(key)\"") }
            skipWhitespace()
            guard !atEnd else { throw error("unterminated object") }
            let c = peek()
            pos += 1
            if c == UInt8(ascii: "}") { return .object(out) }
            if c != UInt8(ascii: ",") { throw error("expected ',' or '}'") }
        }
    }

    mutating func array(depth: Int) throws -> JSON {
        pos += 1
        var out: [JSON] = []
        skipWhitespace()
        if !atEnd && peek() == UInt8(ascii: "]") { pos += 1; return .array(out) }
        while true {
            skipWhitespace()
            out.append(try value(depth: depth + 1))
            skipWhitespace()
            guard !atEnd else { throw error("unterminated array") }
            let c = peek()
            pos += 1
            if c == UInt8(ascii: "]") { return .array(out) }
            if c != UInt8(ascii: ",") { throw error("expected ',' or ']'") }
        }
    }

    mutating func hex4() throws -> UInt32 {
        guard pos + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            pos += 1
            v <<= 4
            switch c {
            case 0x30...0x39: v |= UInt32(c - 0x30)
            case 0x41...0x46: v |= UInt32(c - 0x41 + 10)
            case 0x61...0x66: v |= UInt32(c - 0x61 + 10)
            default: throw error("bad hex digit in \\u escape")
            }
        }
        return v
    }

    mutating func string() throws -> String {
        pos += 1
        let start = pos
        // Fast path: no escapes.
        while pos < bytes.count {
            let c = bytes[pos]
            if c == UInt8(ascii: "\"") {
                let s = try validated(UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
                pos += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error("control character in string") }
            pos += 1
        }
        var buf = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
        while true {
            guard pos < bytes.count else { throw error("unterminated string") }
            let c = bytes[pos]
            pos += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw error("control character in string") }
            if c != UInt8(ascii: "\\") { buf.append(c); continue }
            guard pos < bytes.count else { throw error("unterminated escape") }
            let e = bytes[pos]
            pos += 1
            switch e {
            case UInt8(ascii: "\""): buf.append(0x22)
            case UInt8(ascii: "\\"): buf.append(0x5C)
            case UInt8(ascii: "/"): buf.append(0x2F)
            case UInt8(ascii: "b"): buf.append(0x08)
            case UInt8(ascii: "f"): buf.append(0x0C)
            case UInt8(ascii: "n"): buf.append(0x0A)
            case UInt8(ascii: "r"): buf.append(0x0D)
            case UInt8(ascii: "t"): buf.append(0x09)
            case UInt8(ascii: "u"):
                var cp = try hex4()
                if cp >= 0xD800 && cp < 0xDC00 {
                    guard pos + 2 <= bytes.count, bytes[pos] == UInt8(ascii: "\\"),
                          bytes[pos + 1] == UInt8(ascii: "u") else { throw error("unpaired surrogate") }
                    pos += 2
                    let lo = try hex4()
                    guard lo >= 0xDC00 && lo < 0xE000 else { throw error("unpaired surrogate") }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                } else if cp >= 0xDC00 && cp < 0xE000 {
                    throw error("unpaired surrogate")
                }
                guard let scalar = Unicode.Scalar(cp) else { throw error("invalid code point") }
                buf.append(contentsOf: Array(String(Character(scalar)).utf8))
            default: throw error("invalid escape")
            }
        }
        return try buf.withUnsafeBytes { try validated($0) }
    }

    func validated(_ raw: UnsafeRawBufferPointer) throws -> String {
        guard let s = String(validating: raw.bindMemory(to: UInt8.self), as: UTF8.self) else {
            throw error("string is not valid UTF-8")
        }
        return s
    }

    mutating func number() throws -> JSON {
        let start = pos
        if !atEnd && peek() == UInt8(ascii: "-") { pos += 1 }
        func digits(_ p: inout Parser) -> Int {
            var n = 0
            while !p.atEnd && p.peek() >= 0x30 && p.peek() <= 0x39 { p.pos += 1; n += 1 }
            return n
        }
        let intStart = pos
        let nInt = digits(&self)
        guard nInt > 0 else { throw error("unexpected character") }
        if nInt > 1 && bytes[intStart] == 0x30 { throw error("leading zero in number") }
        if !atEnd && peek() == UInt8(ascii: ".") {
            pos += 1
            guard digits(&self) > 0 else { throw error("digit expected after '.'") }
        }
        if !atEnd && (peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E")) {
            pos += 1
            if !atEnd && (peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-")) { pos += 1 }
            guard digits(&self) > 0 else { throw error("digit expected in exponent") }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
        guard let d = Double(text) else { throw error("invalid number") }
        return .number(d)
    }
}

extension OrderedJSON {
    /// A parsed value written back with object keys in sorted order and
    /// integral numbers as integers.
    public init(sortedKeys j: JSON) {
        switch j {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .number(let d): self = d.rounded() == d && abs(d) < 9e15 ? .int(Int(d)) : .number(d)
        case .string(let s): self = .string(s)
        case .array(let a): self = .array(a.map { OrderedJSON(sortedKeys: $0) })
        case .object(let o): self = .object(o.keys.sorted().map { ($0.string, OrderedJSON(sortedKeys: o[$0] ?? .null)) })
        }
    }
}
