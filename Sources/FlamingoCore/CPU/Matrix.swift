import COpenBLAS

/// A weight matrix in PyTorch layout [rows = out, cols = in], as f32 in
/// 64-byte aligned memory. 16-bit stored weights are widened once at load;
/// f32 weights are copied so every kernel sees aligned rows.
public final class Matrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let data: UnsafeMutablePointer<Float>

    public init(rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(rows * cols, 1) * 4, alignment: 64)
        data = raw.bindMemory(to: Float.self, capacity: max(rows * cols, 1))
        data.initialize(repeating: 0, count: max(rows * cols, 1))
    }

    /// Widens a stored tensor viewed as [rows, cols].
    public convenience init(_ t: TensorView, rows: Int, cols: Int) {
        self.init(rows: rows, cols: cols)
        switch t.dtype {
        case .f32:
            UnsafeMutableRawPointer(data).copyMemory(from: t.data.baseAddress!, byteCount: rows * cols * 4)
        default:
            for i in 0..<(rows * cols) { data[i] = t.float(at: i) }
        }
    }

    /// A 2-D tensor, or a 1-D tensor as a single row.
    public convenience init(_ t: TensorView) {
        let cols = t.shape.last ?? 1
        self.init(t, rows: cols == 0 ? 0 : t.count / cols, cols: cols)
    }

    deinit { UnsafeMutableRawPointer(data).deallocate() }

    /// Row `r` as a pointer (for embedding lookups and biases).
    public func row(_ r: Int) -> UnsafeMutablePointer<Float> { data + r * cols }
}

/// Linear layer y = x·Wᵀ (+ b) on `m` rows: OpenBLAS sgemm, or sgemv for a
/// single row (Debian's OpenBLAS 0.3.21 is 2-3x slower through sgemm there).
public func linear(_ x: UnsafePointer<Float>, m: Int, _ w: Matrix, bias: Matrix? = nil,
                   into y: UnsafeMutablePointer<Float>) {
    let n = w.rows, k = w.cols
    guard m > 0, n > 0 else { return }
    if k == 0 {
        y.initialize(repeating: 0, count: m * n)
    } else if m == 1 {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), 1, w.data, Int32(k), x, 1, 0, y, 1)
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    1, x, Int32(k), w.data, Int32(k), 0, y, Int32(n))
    }
    if let bias {
        for r in 0..<m { add(bias.data, into: y + r * n, count: n) }
    }
}
