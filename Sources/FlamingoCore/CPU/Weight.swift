import CFlamingoKernels
import COpenBLAS

/// How a weight matrix is stored (docs/model-format.md).
public enum WeightFormat: Equatable, Hashable, Sendable {
    case f32, f16, bf16
    /// value = scale·q + bias per group of `group` consecutive inputs, q unsigned `bits` wide.
    case affine(bits: Int, group: Int)

    public var name: String {
        switch self {
        case .f32: return "f32"
        case .f16: return "f16"
        case .bf16: return "bf16"
        case .affine(let bits, _): return "q\(bits)"
        }
    }
}

/// A Linear (or embedding) weight [rows = out, cols = in] in its stored
/// format, read in place from the memory map: f32 through OpenBLAS, 16-bit
/// and affine-integer weights through kernels/cpu/quant.c. The mapping must
/// outlive the weight (the Model keeps it).
public final class Weight: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let format: WeightFormat
    /// Bytes of the stored weight (scales and biases included).
    public let storedBytes: Int
    let f32: Matrix?
    private let kernel: fk_weight

    /// An f32 weight.
    public init(_ m: Matrix) {
        rows = m.rows; cols = m.cols; format = .f32; storedBytes = m.rows * m.cols * 4
        f32 = m
        kernel = fk_weight()
        copies = []
    }

    /// A float tensor viewed as [rows, cols]; f16 and bf16 stay 16-bit.
    public convenience init(_ t: TensorView, rows: Int, cols: Int) {
        guard (t.dtype == .f16 || t.dtype == .bf16), rows * cols > 0, t.data.count == rows * cols * 2 else {
            self.init(Matrix(t, rows: rows, cols: cols))
            return
        }
        self.init(format: t.dtype == .f16 ? .f16 : .bf16, rows: rows, cols: cols,
                  data: t.data, scales: nil, biases: nil, sbType: 0)
    }

    /// An affine-quantized weight: `packed` U32 [rows, cols·bits/32],
    /// `scales` and `biases` [rows, cols/group] of one float type. Every shape
    /// and type is checked here, so a weight built from any file is safe to read.
    public convenience init(name: String, bits: Int, group: Int, packed: TensorView, scales: TensorView,
                            biases: TensorView) throws {
        func bad(_ m: String) -> FlamingoError { .invalidFormat("tensor \(name): \(m)") }
        guard QuantizationConfig.supportedBits.contains(bits), QuantizationConfig.supportedGroups.contains(group) else {
            throw bad("\(bits)-bit groups of \(group) are not supported (bits 4 or 8, group 32, 64 or 128)")
        }
        guard packed.dtype == .u32, packed.shape.count == 2 else {
            throw bad("a quantized weight must be a 2-D U32 tensor, found \(packed.dtype.rawValue) \(packed.shape)")
        }
        let rows = packed.shape[0], cols = packed.shape[1] * 32 / bits
        guard scales.dtype.isFloat, scales.shape == [rows, cols / group] else {
            throw bad("\(scales.name) must be a float tensor [\(rows), \(cols / group)], found \(scales.dtype.rawValue) \(scales.shape)")
        }
        guard biases.dtype == scales.dtype, biases.shape == scales.shape else {
            throw bad("\(biases.name) (\(biases.dtype.rawValue) \(biases.shape)) must match \(scales.name) (\(scales.dtype.rawValue) \(scales.shape))")
        }
        let sb = scales.dtype == .f32 ? FK_SB_F32 : scales.dtype == .f16 ? FK_SB_F16 : FK_SB_BF16
        self.init(format: .affine(bits: bits, group: group), rows: rows, cols: cols, data: packed.data,
                  scales: scales.data, biases: biases.data, sbType: Int32(sb))
    }

    private init(format: WeightFormat, rows: Int, cols: Int, data: UnsafeRawBufferPointer,
                 scales: UnsafeRawBufferPointer?, biases: UnsafeRawBufferPointer?, sbType: Int32) {
        self.rows = rows; self.cols = cols; self.format = format; f32 = nil
        storedBytes = data.count + (scales?.count ?? 0) + (biases?.count ?? 0)
        var k = fk_weight()
        k.rows = rows; k.cols = cols; k.sb_type = sbType
        switch format {
        case .f16: k.format = Int32(FK_W_F16)
        case .bf16: k.format = Int32(FK_W_BF16)
        case .affine(let bits, let group): k.format = Int32(bits == 8 ? FK_W_Q8 : FK_W_Q4); k.group = group
        case .f32: break
        }
        var copies: [UnsafeMutableRawPointer] = []
        k.w = Self.aligned(data, copies: &copies)
        k.scales = Self.aligned(scales, copies: &copies)
        k.biases = Self.aligned(biases, copies: &copies)
        kernel = k
        self.copies = copies
    }

    /// Kernels read 16- and 32-bit elements: a misaligned tensor (legal in
    /// safetensors) is copied once into aligned memory.
    private static func aligned(_ b: UnsafeRawBufferPointer?, copies: inout [UnsafeMutableRawPointer]) -> UnsafeRawPointer? {
        guard let b, let base = b.baseAddress else { return nil }
        if Int(bitPattern: base) % 4 == 0 { return base }
        let copy = UnsafeMutableRawPointer.allocate(byteCount: b.count, alignment: 64)
        copy.copyMemory(from: base, byteCount: b.count)
        copies.append(copy)
        return UnsafeRawPointer(copy)
    }

    private let copies: [UnsafeMutableRawPointer]
    deinit { for c in copies { c.deallocate() } }

    /// The packed bytes and the scale/bias reader of an affine weight (for
    /// uploading it elsewhere), nil for other formats.
    func packedParts() -> (words: UnsafeRawBufferPointer, scale: (Int) -> Float, bias: (Int) -> Float)? {
        guard case .affine(let bits, _) = format, let w = kernel.w, let s = kernel.scales, let b = kernel.biases else { return nil }
        let type = kernel.sb_type
        func read(_ p: UnsafeRawPointer, _ i: Int) -> Float {
            switch type {
            case Int32(FK_SB_F16): return Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            case Int32(FK_SB_BF16): return Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            default: return p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
            }
        }
        return (UnsafeRawBufferPointer(start: w, count: rows * cols * bits / 8), { read(s, $0) }, { read(b, $0) })
    }

    /// Row r dequantized to f32 (embedding lookups).
    public func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        if let f32 { out.update(from: f32.row(r), count: cols); return }
        withUnsafePointer(to: kernel) { fk_dequant_rows($0, out, r, r + 1) }
    }

    /// The whole weight as an f32 matrix (for paths that need f32 rows).
    public func widened() -> Matrix {
        if let f32 { return f32 }
        let m = Matrix(rows: rows, cols: cols)
        parallelTasks(rows, work: rows * cols) { r in
            withUnsafePointer(to: kernel) { fk_dequant_rows($0, m.data + r.lowerBound * cols, r.lowerBound, r.upperBound) }
        }
        return m
    }

    /// Up to this many rows (a decode step, the beams of a beam search, a
    /// small batch) use the matrix-vector kernels, which read each weight once
    /// for all of them; more rows dequantize blocks of the weight and use sgemm.
    static let gemvRows = Int(FK_GEMV_MAX_ROWS)

    /// y [m, rows] = x [m, cols] · Wᵀ for a non-f32 weight.
    fileprivate func product(_ x: UnsafePointer<Float>, m: Int, into y: UnsafeMutablePointer<Float>) {
        let n = rows, k = cols
        if m <= Self.gemvRows {
            // Affine weights meet an int8 copy of each activation row, one block per group.
            let block = kernel.group > 0 ? kernel.group : k
            let blocks = max(k / block, 1)
            let q = UnsafeMutablePointer<Int8>.allocate(capacity: max(k, 1) * m)
            let d = UnsafeMutablePointer<Float>.allocate(capacity: blocks * 2 * m)
            defer { q.deallocate(); d.deallocate() }
            var acts = (0..<m).map { i in
                fk_qx(q: q + i * k, d: d + 2 * i * blocks, sum: d + (2 * i + 1) * blocks, cols: k, block: block,
                      format: kernel.format)
            }
            if case .affine = format {
                for i in 0..<m { fk_quantize_x(x + i * k, &acts[i]) }
            }
            acts.withUnsafeBufferPointer { a in
                parallelTasks(n, work: storedBytes) { r in
                    withUnsafePointer(to: kernel) { w in
                        fk_gemv_rows(w, x, k, a.baseAddress, m, y + r.lowerBound, n, r.lowerBound, r.upperBound)
                    }
                }
            }
            return
        }
        // Blocks of ~4 MB of f32 rows: dequantized in parallel, then one sgemm each.
        let block = min(n, max(16, (1 << 20) / max(k, 1)))
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: block * k * 4, alignment: 64).bindMemory(to: Float.self, capacity: block * k)
        defer { scratch.deallocate() }
        var r0 = 0
        while r0 < n {
            let nb = min(block, n - r0), first = r0
            parallelTasks(nb, work: nb * k * 4) { r in
                withUnsafePointer(to: kernel) {
                    fk_dequant_rows($0, scratch + r.lowerBound * k, first + r.lowerBound, first + r.upperBound)
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(nb), Int32(k),
                        1, x, Int32(k), scratch, Int32(k), 0, y + r0, Int32(n))
            r0 += nb
        }
    }
}

/// Linear layer y = x·Wᵀ (+ b) on `m` rows for a weight in any stored format.
public func linear(_ x: UnsafePointer<Float>, m: Int, _ w: Weight, bias: Matrix? = nil,
                   into y: UnsafeMutablePointer<Float>) {
    if let f = w.f32 { linear(x, m: m, f, bias: bias, into: y); return }
    guard m > 0, w.rows > 0 else { return }
    w.product(x, m: m, into: y)
    if let bias {
        for r in 0..<m { add(bias.data, into: y + r * w.rows, count: w.rows) }
    }
}
