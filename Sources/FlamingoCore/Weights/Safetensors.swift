// safetensors reader: an 8-byte little-endian header length, a JSON header
// mapping tensor names to {dtype, shape, data_offsets}, then the raw data.
// Every field is checked before any tensor is touched, so a corrupt or
// truncated file is an error, never an out-of-bounds read.

/// Element types the reader understands. Weights are floating point
/// (kernels convert 16-bit types as they read) or, for quantized matrices,
/// U32 words of packed integers; other integer tensors appear only in
/// reference data (token ids).
public enum DType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", i32 = "I32", i64 = "I64", u32 = "U32"

    public var byteSize: Int {
        switch self {
        case .f32, .i32, .u32: return 4
        case .f16, .bf16: return 2
        case .i64: return 8
        }
    }

    public var isFloat: Bool { self == .f32 || self == .f16 || self == .bf16 }
}

/// A tensor inside a mapped file: shape, storage type and its bytes.
public struct TensorView: @unchecked Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let data: UnsafeRawBufferPointer
    public var count: Int { shape.reduce(1, *) }

    /// Element i converted to Float (bounds are the caller's contract; used
    /// by tests and by load-time packing, not by hot kernels).
    public func float(at i: Int) -> Float {
        switch dtype {
        case .i32: return Float(data.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
        case .u32: return Float(data.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        case .i64: return Float(data.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
        case .f32: return data.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
        case .f16: return Float(Float16(bitPattern: data.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
        case .bf16:
            let b = data.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)
            return Float(bitPattern: UInt32(b) << 16)
        }
    }

    /// Element i of an integer or float tensor as an Int.
    public func int(at i: Int) -> Int {
        switch dtype {
        case .i32: return Int(data.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
        case .u32: return Int(data.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))
        case .i64: return Int(data.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
        default: return Int(float(at: i))
        }
    }

    /// The whole tensor as Float32 values.
    public func floats() -> [Float] {
        (0..<count).map { float(at: $0) }
    }
}

public final class SafetensorsFile: @unchecked Sendable {
    public let file: MappedFile
    public let tensors: [String: TensorView]
    public let metadata: [String: String]

    /// Largest header accepted; real headers are a few MB at most.
    static let maxHeaderBytes = 256 << 20

    public init(path: String) throws {
        file = try MappedFile(path: path)
        let bytes = file.bytes
        let name = path.split(separator: "/").last.map(String.init) ?? path
        func bad(_ m: String) -> FlamingoError { .invalidFormat("\(name): \(m)") }

        guard bytes.count >= 8 else {
            throw bad("file is \(bytes.count) bytes, shorter than the 8-byte header length (truncated?)")
        }
        let headerLen = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
        guard headerLen <= UInt64(bytes.count - 8) else {
            throw bad("header length \(headerLen) runs past the end of the file (\(bytes.count) bytes; truncated?)")
        }
        guard headerLen <= UInt64(Self.maxHeaderBytes) else { throw bad("header length \(headerLen) is implausibly large") }
        let hl = Int(headerLen)
        let header: JSON
        do {
            header = try JSON.parse(UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + hl)]))
        } catch let e as FlamingoError {
            throw bad("header: \(e.message)")
        }
        guard let entries = header.object else { throw bad("header is not a JSON object") }
        let dataStart = 8 + hl
        let dataSize = bytes.count - dataStart

        var tensors: [String: TensorView] = [:]
        var meta: [String: String] = [:]
        var ranges: [(begin: Int, end: Int, name: String)] = []
        for (jsonKey, value) in entries {
            let key = jsonKey.string
            if key == "__metadata__" {
                guard let m = value.object else { throw bad("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v.string else { throw bad("__metadata__[\(k)] is not a string") }
                    meta[k.string] = s
                }
                continue
            }
            // Names are looked up as Swift strings (canonical equivalence): two that
            // differ only in Unicode normalisation would be one tensor.
            guard tensors[key] == nil else { throw bad("tensor names \"\(key)\" differ only in Unicode normalisation") }
            guard let dtypeName = value["dtype"]?.string else { throw bad("tensor \(key): missing dtype") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw FlamingoError.unsupported("\(name): tensor \(key) has dtype \(dtypeName); supported: F32, F16, BF16, I32, I64, U32")
            }
            guard let shapeJ = value["shape"]?.array else { throw bad("tensor \(key): missing shape") }
            var shape: [Int] = []
            var count = 1
            for d in shapeJ {
                guard let n = d.int, n >= 0 else { throw bad("tensor \(key): shape entries must be non-negative integers") }
                let (c, o) = count.multipliedReportingOverflow(by: n)
                guard !o else { throw bad("tensor \(key): shape overflows") }
                count = c
                shape.append(n)
            }
            guard let offs = value["data_offsets"]?.array, offs.count == 2,
                  let begin = offs[0].int, let end = offs[1].int else {
                throw bad("tensor \(key): data_offsets must be two integers")
            }
            guard begin >= 0, begin <= end else { throw bad("tensor \(key): data_offsets [\(begin), \(end)] are reversed or negative") }
            guard end <= dataSize else {
                throw bad("tensor \(key): data_offsets [\(begin), \(end)] end past the data section (\(dataSize) bytes; truncated?)")
            }
            let (nbytes, o) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !o, nbytes == end - begin else {
                throw bad("tensor \(key): \(end - begin) bytes of data for shape \(shape) of \(dtypeName) (expected \(nbytes))")
            }
            ranges.append((begin, end, key))
            tensors[key] = TensorView(name: key, dtype: dtype, shape: shape,
                                      data: UnsafeRawBufferPointer(rebasing: bytes[(dataStart + begin)..<(dataStart + end)]))
        }
        ranges.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
        for i in ranges.indices.dropFirst() where ranges[i].begin < ranges[i - 1].end {
            throw bad("tensors \(ranges[i - 1].name) and \(ranges[i].name) have overlapping byte ranges")
        }
        self.tensors = tensors
        self.metadata = meta
    }
}

/// Writes a safetensors file whose tensor list is known up front and whose
/// data arrives tensor by tensor, in that order (so a converter never holds
/// more than one tensor). The header is padded to 8 bytes and tensors are
/// contiguous (the format allows no gaps), so 16-bit tensors of an odd
/// element count (tiny: gates) go last to keep every other tensor 4-byte aligned.
final class SafetensorsWriterStream {
    private let file: FileWriter
    private var expected: [Int]     // byte size of each tensor, in write order
    private var next = 0
    let order: [String]

    init(path: String, tensors: [(name: String, dtype: DType, shape: [Int])]) throws {
        file = try FileWriter(path: path)
        func odd(_ t: (name: String, dtype: DType, shape: [Int])) -> Int {
            t.dtype.byteSize == 2 && t.shape.reduce(1, *) % 2 == 1 ? 1 : 0
        }
        let sorted = tensors.enumerated().sorted { a, b in (odd(a.element), a.offset) < (odd(b.element), b.offset) }.map(\.element)
        var entries: [(String, OrderedJSON)] = []
        var offset = 0
        expected = []
        for t in sorted {
            let bytes = t.shape.reduce(1, *) * t.dtype.byteSize
            entries.append((t.name, .object([("dtype", .string(t.dtype.rawValue)), ("shape", .array(t.shape.map { .int($0) })),
                                             ("data_offsets", .array([.int(offset), .int(offset + bytes)]))])))
            offset += bytes
            expected.append(bytes)
        }
        order = sorted.map(\.name)
        var header = Array(OrderedJSON.object(entries).text.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        pending = [:]
        names = tensors.map(\.name)
        var length = UInt64(header.count).littleEndian
        let f = file
        try withUnsafeBytes(of: &length) { try f.write($0) }
        try header.withUnsafeBytes { try f.write($0) }
    }

    /// Tensors must be appended in the order given at init; the few that
    /// the file stores last wait in memory.
    private var pending: [String: [UInt8]]
    private let names: [String]
    private var appended = 0

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard appended < names.count else { throw FlamingoError.internal("safetensors writer: too many tensors") }
        let name = names[appended]
        appended += 1
        pending[name] = Array(bytes)
        try flush()
    }

    func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

    private func flush() throws {
        while next < order.count, let data = pending.removeValue(forKey: order[next]) {
            guard data.count == expected[next] else {
                throw FlamingoError.internal("safetensors writer: \(order[next]) has \(data.count) bytes, expected \(expected[next])")
            }
            try data.withUnsafeBytes { try file.write($0) }
            next += 1
        }
    }

    func close() throws {
        guard next == order.count else { throw FlamingoError.internal("safetensors writer: \(order.count - next) tensors not written") }
        try file.close()
    }
}
