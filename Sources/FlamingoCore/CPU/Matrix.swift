import COpenBLAS

/// A weight matrix in PyTorch layout [rows = out, cols = in] as f32. An f32
/// tensor is used in place from the memory map (no copy); 16-bit weights are
/// widened once at load into 64-byte aligned memory.
public final class Matrix: @unchecked Sendable {
    public let rows: Int
    public let cols: Int
    public let data: UnsafeMutablePointer<Float>
    private let owned: Bool

    public init(rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        let n = max(rows * cols, 1)
        data = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64).bindMemory(to: Float.self, capacity: n)
        data.initialize(repeating: 0, count: n)
        owned = true
    }

    /// A stored tensor viewed as [rows, cols]. The tensor's file mapping must
    /// outlive the matrix (the Model keeps it).
    public init(_ t: TensorView, rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        if t.dtype == .f32, let base = t.data.baseAddress, Int(bitPattern: base) % 4 == 0, rows * cols > 0 {
            data = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Float.self))
            owned = false
            return
        }
        let n = max(rows * cols, 1)
        data = UnsafeMutableRawPointer.allocate(byteCount: n * 4, alignment: 64).bindMemory(to: Float.self, capacity: n)
        data.initialize(repeating: 0, count: n)
        for i in 0..<(rows * cols) { data[i] = t.float(at: i) }
        owned = true
    }

    deinit { if owned { UnsafeMutableRawPointer(data).deallocate() } }

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
