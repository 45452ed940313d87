import CFlamingoSupport

/// A device-resident buffer (a cl_mem), untyped: views give it an element
/// type, offset and row stride. Released when the last reference goes;
/// OpenCL keeps it alive until the queued ops that use it have run.
public final class CLBuffer: @unchecked Sendable {
    public let byteCount: Int
    let mem: UnsafeMutableRawPointer

    init(mem: UnsafeMutableRawPointer, byteCount: Int) {
        self.mem = mem
        self.byteCount = byteCount
    }

    deinit { fsup_cl_buffer_release(mem) }
}

/// A row-major region of a device buffer: element (r, c) is at element
/// `offset + r·stride + c` (elements of the op's type: f32 activations,
/// Int32 ids/positions/selections, UInt8 key masks). Views are how ops
/// address a slice of a larger activation (the k part of a qkv row, one
/// sequence's rows of a batched step, a layer's KV cache) with no copy.
public struct CLView {
    public var buffer: CLBuffer
    public var offset: Int
    /// Elements from one row to the next; 0 means packed rows (the op's
    /// column count). Ignored for a single row.
    public var stride: Int

    public init(_ buffer: CLBuffer, offset: Int = 0, stride: Int = 0) {
        self.buffer = buffer
        self.offset = offset
        self.stride = stride
    }

    /// The view starting `rows` rows further down.
    public func rows(from r: Int) -> CLView { CLView(buffer, offset: offset + r * stride, stride: stride) }
    /// The view starting `columns` elements to the right.
    public func columns(from c: Int) -> CLView { CLView(buffer, offset: offset + c, stride: stride) }

    /// Throws unless rows × cols elements of `elementSize` bytes lie inside the buffer.
    func check(rows: Int, cols: Int, elementSize: Int = 4, _ what: String, _ op: String) throws {
        guard rows >= 0, cols >= 0 else {
            throw FlamingoError.invalidArgument("OpenCL \(op): \(what) has a negative size \(rows)×\(cols)")
        }
        if rows == 0 || cols == 0 { return }
        let stride = self.stride == 0 ? cols : self.stride
        guard offset >= 0, stride >= 0, rows == 1 || stride >= cols else {
            throw FlamingoError.invalidArgument("OpenCL \(op): \(what) has offset \(offset) and row stride \(stride) for \(cols) columns")
        }
        let (span, o1) = (rows - 1).multipliedReportingOverflow(by: stride)
        let (end, o2) = offset.addingReportingOverflow(span)
        let (last, o3) = end.addingReportingOverflow(cols)
        let (bytes, o4) = last.multipliedReportingOverflow(by: elementSize)
        guard !(o1 || o2 || o3 || o4), bytes <= buffer.byteCount else {
            throw FlamingoError.invalidArgument(
                "OpenCL \(op): \(what) (\(rows)×\(cols) from element \(offset), stride \(stride)) overruns its buffer of \(buffer.byteCount) bytes")
        }
    }
}

/// Storage type of a weight matrix on the device. 16-bit weights stay
/// 16-bit (half the memory and bandwidth) and are widened in the kernels.
public enum CLWeightType: Int, Sendable {
    case f32, f16, bf16

    public var byteSize: Int { self == .f32 ? 4 : 2 }

    /// The device type of a stored tensor (f32, f16 or bf16).
    init(_ t: TensorView) throws {
        switch t.dtype {
        case .f32: self = .f32
        case .f16: self = .f16
        case .bf16: self = .bf16
        default: throw FlamingoError.unsupported("OpenCL: tensor \(t.name) has type \(t.dtype.rawValue); weights must be f32, f16 or bf16")
        }
    }
    var suffix: String { self == .f32 ? "f32" : self == .f16 ? "f16" : "bf16" }
}

/// A weight matrix [rows = outputs, cols = inputs] in PyTorch layout inside
/// a device buffer (one buffer may hold many weights: `offset` in elements
/// of `type`). Also used for embedding tables [vocab, dim].
public struct CLWeight {
    public var buffer: CLBuffer
    public var type: CLWeightType
    public var rows: Int
    public var cols: Int
    public var offset: Int
    public var stride: Int
    /// Set for an affine-quantized weight: `buffer` then holds the packed
    /// words [rows, cols·bits/32] (docs/model-format.md) and `type` is unused.
    public var affine: CLAffine?

    public init(_ buffer: CLBuffer, type: CLWeightType = .f32, rows: Int, cols: Int, offset: Int = 0, stride: Int? = nil) {
        self.buffer = buffer
        self.type = type
        self.rows = rows
        self.cols = cols
        self.offset = offset
        self.stride = stride ?? cols
    }

    func check(_ op: String) throws {
        if let a = affine {
            let groups = a.group > 0 && cols % a.group == 0 ? rows * (cols / a.group) : -1
            guard [4, 8].contains(a.bits), groups >= 0, offset == 0, stride == cols, rows >= 0,
                  buffer.byteCount >= rows * cols * a.bits / 8, a.scales.byteCount >= groups * 4,
                  a.biases.byteCount >= groups * 4 else {
                throw FlamingoError.invalidArgument("OpenCL \(op): an inconsistent \(a.bits)-bit weight \(rows)×\(cols) (group \(a.group))")
            }
            return
        }
        try CLView(buffer, offset: offset, stride: stride).check(rows: rows, cols: cols, elementSize: type.byteSize, "weight", op)
    }
}

/// The scales and biases (f32 [rows, cols/group]) of an affine-quantized weight.
public struct CLAffine {
    public var scales: CLBuffer
    public var biases: CLBuffer
    public var bits: Int
    public var group: Int
}

// MARK: allocation and transfers

extension OpenCLRuntime {
    static let memReadWrite: UInt64 = 1 << 0
    static let memReadOnly: UInt64 = 1 << 2
    static let memCopyHostPtr: UInt64 = 1 << 5

    /// A device buffer of `bytes` bytes, zero-filled unless `zeroed` is
    /// false. Zero-filling also makes a lazily allocating driver commit the
    /// memory now, so running out of it surfaces here (at `finish` at the
    /// latest) rather than in the middle of a forward pass.
    public func buffer(bytes: Int, zeroed: Bool = true) throws -> CLBuffer {
        guard bytes >= 0 else { throw FlamingoError.invalidArgument("OpenCL: negative buffer size \(bytes)") }
        guard bytes <= maxAllocationBytes else {
            throw FlamingoError.outOfMemory(
                "OpenCL: a buffer of \(bytes) bytes exceeds the largest allocation of \(device.info.name) (\(maxAllocationBytes) bytes)")
        }
        let size = max(bytes, 4)   // a zero-sized cl_mem is an error
        var err: Int32 = 0
        guard let mem = fsup_cl_buffer_create(context, Self.memReadWrite, size, nil, &err) else {
            throw CLStatus.error(err, "allocating \(bytes) bytes on \(device.info.name)")
        }
        let b = CLBuffer(mem: mem, byteCount: bytes)
        if zeroed {
            var zero: UInt32 = 0
            let unit = size % 4 == 0 ? 4 : 1
            try lock.locked {
                try CLStatus.check(fsup_cl_fill(queue, mem, &zero, unit, 0, size), "clearing a buffer of \(bytes) bytes")
            }
        }
        return b
    }

    /// A zeroed buffer of `count` f32 values.
    public func buffer(floats count: Int) throws -> CLBuffer {
        let (bytes, o) = count.multipliedReportingOverflow(by: 4)
        guard !o else { throw FlamingoError.outOfMemory("OpenCL: \(count) floats overflow a buffer size") }
        return try buffer(bytes: bytes)
    }

    /// A buffer holding `values`.
    public func buffer<T: BitwiseCopyable>(_ values: [T]) throws -> CLBuffer {
        let b = try buffer(bytes: values.count * MemoryLayout<T>.stride, zeroed: false)
        try upload(values, to: b)
        return b
    }

    /// A read-only buffer initialised from `values` at creation, for small
    /// per-call metadata (token ids, selections): the copy happens in
    /// clCreateBuffer, so no queue synchronisation is needed, and OpenCL
    /// keeps the buffer until the ops using it have run.
    func temporaryBuffer<T: BitwiseCopyable>(_ values: [T]) throws -> CLBuffer {
        let bytes = values.count * MemoryLayout<T>.stride
        guard bytes > 0 else { return try buffer(bytes: 4) }
        var err: Int32 = 0
        let mem = values.withUnsafeBytes { raw in
            fsup_cl_buffer_create(context, Self.memReadOnly | Self.memCopyHostPtr, raw.count,
                                  UnsafeMutableRawPointer(mutating: raw.baseAddress), &err)
        }
        guard let mem else { throw CLStatus.error(err, "allocating \(bytes) bytes on \(device.info.name)") }
        return CLBuffer(mem: mem, byteCount: bytes)
    }

    /// Copies `bytes` from host memory into `buffer` at `byteOffset`; returns
    /// when the host memory may be reused.
    public func upload(_ bytes: UnsafeRawBufferPointer, to buffer: CLBuffer, byteOffset: Int = 0) throws {
        guard bytes.count > 0 else { return }
        guard byteOffset >= 0, byteOffset <= buffer.byteCount, bytes.count <= buffer.byteCount - byteOffset else {
            throw FlamingoError.invalidArgument("OpenCL: uploading \(bytes.count) bytes at \(byteOffset) overruns a buffer of \(buffer.byteCount) bytes")
        }
        try lock.locked {
            try CLStatus.check(fsup_cl_write(queue, buffer.mem, 1, byteOffset, bytes.count, bytes.baseAddress),
                               "uploading \(bytes.count) bytes")
        }
    }

    /// Copies `values` into `buffer` from element `offset` (elements of T).
    public func upload<T: BitwiseCopyable>(_ values: [T], to buffer: CLBuffer, at offset: Int = 0) throws {
        try values.withUnsafeBytes { try upload($0, to: buffer, byteOffset: offset * MemoryLayout<T>.stride) }
    }

    /// `count` elements of T from element `offset` of `buffer`, after every
    /// op enqueued before has run.
    public func download<T: BitwiseCopyable>(_ buffer: CLBuffer, as type: T.Type = Float.self, at offset: Int = 0,
                                             count: Int) throws -> [T] {
        let size = MemoryLayout<T>.stride
        guard count >= 0, offset >= 0, (offset + count) * size <= buffer.byteCount else {
            throw FlamingoError.invalidArgument("OpenCL: downloading \(count) elements at \(offset) overruns a buffer of \(buffer.byteCount) bytes")
        }
        guard count > 0 else { return [] }
        var rc: Int32 = 0
        let out = [T](unsafeUninitializedCapacity: count) { b, n in
            rc = lock.locked { fsup_cl_read(queue, buffer.mem, 1, offset * size, count * size, b.baseAddress) }
            if rc == CLStatus.success {
                n = count
            } else {
                n = 0
            }
        }
        try CLStatus.check(rc, "downloading \(count * size) bytes")
        return out
    }

    /// Device-side copy of `bytes` bytes.
    public func copy(_ src: CLBuffer, byteOffset srcOffset: Int = 0, to dst: CLBuffer, byteOffset dstOffset: Int = 0,
                     bytes: Int) throws {
        guard bytes > 0 else { return }
        guard srcOffset >= 0, dstOffset >= 0, srcOffset + bytes <= src.byteCount, dstOffset + bytes <= dst.byteCount else {
            throw FlamingoError.invalidArgument("OpenCL: copying \(bytes) bytes overruns a buffer")
        }
        try lock.locked {
            try CLStatus.check(fsup_cl_copy(queue, src.mem, dst.mem, srcOffset, dstOffset, bytes), "copying \(bytes) bytes")
        }
    }

    /// Sets `count` f32 elements from element `offset` to `value`.
    public func fill(_ buffer: CLBuffer, with value: Float, at offset: Int = 0, count: Int) throws {
        guard count > 0 else { return }
        guard offset >= 0, (offset + count) * 4 <= buffer.byteCount else {
            throw FlamingoError.invalidArgument("OpenCL: filling \(count) floats at \(offset) overruns a buffer of \(buffer.byteCount) bytes")
        }
        var v = value
        try lock.locked {
            try CLStatus.check(fsup_cl_fill(queue, buffer.mem, &v, 4, offset * 4, count * 4), "filling \(count) floats")
        }
    }

    // MARK: weights

    /// A weight matrix uploaded from host values (f32).
    public func weight(_ values: [Float], rows: Int, cols: Int) throws -> CLWeight {
        guard values.count == rows * cols else {
            throw FlamingoError.invalidArgument("OpenCL: \(values.count) values for a \(rows)×\(cols) weight")
        }
        return CLWeight(try buffer(values), type: .f32, rows: rows, cols: cols)
    }

    /// A weight matrix uploaded from raw 16-bit words (IEEE half or bfloat16 bit patterns).
    public func weight(bits: [UInt16], type: CLWeightType, rows: Int, cols: Int) throws -> CLWeight {
        guard type != .f32, bits.count == rows * cols else {
            throw FlamingoError.invalidArgument("OpenCL: \(bits.count) 16-bit values for a \(rows)×\(cols) \(type.suffix) weight")
        }
        return CLWeight(try buffer(bits), type: type, rows: rows, cols: cols)
    }

    /// An affine-quantized weight uploaded as stored: the packed words as
    /// they are, scales and biases as f32.
    public func weight(packed: UnsafeRawBufferPointer, scales: [Float], biases: [Float], bits: Int, group: Int,
                       rows: Int, cols: Int) throws -> CLWeight {
        guard packed.count == rows * cols * bits / 8, group > 0, cols % group == 0,
              scales.count == rows * (cols / group), biases.count == scales.count else {
            throw FlamingoError.invalidArgument("OpenCL: a \(bits)-bit weight \(rows)×\(cols) (group \(group)) with \(packed.count) bytes and \(scales.count) scales")
        }
        let b = try buffer(bytes: packed.count, zeroed: false)
        try upload(packed, to: b)
        var w = CLWeight(b, rows: rows, cols: cols)
        w.affine = CLAffine(scales: try buffer(scales), biases: try buffer(biases), bits: bits, group: group)
        return w
    }

    /// A stored tensor uploaded in its own type (f32, f16 or bf16), viewed
    /// as [rows, cols].
    public func weight(_ t: TensorView, rows: Int, cols: Int) throws -> CLWeight {
        let type = try CLWeightType(t)
        guard rows >= 0, cols >= 0, rows * cols == t.count, t.data.count >= t.count * type.byteSize else {
            throw FlamingoError.invalidArgument("OpenCL: tensor \(t.name) of shape \(t.shape) viewed as \(rows)×\(cols)")
        }
        let b = try buffer(bytes: t.count * type.byteSize, zeroed: false)
        try upload(UnsafeRawBufferPointer(rebasing: t.data[0..<(t.count * type.byteSize)]), to: b)
        return CLWeight(b, type: type, rows: rows, cols: cols)
    }
}
