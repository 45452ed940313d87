/// Linear layers on the device (kernels/opencl/matmul.cl).
extension OpenCLRuntime {
    /// Which matrix kernel `linear` uses.
    public enum LinearKernel: Sendable {
        /// GEMV up to `gemvMaxRows` rows (each weight read once for all of
        /// them: decoding, a few beams), tiled GEMM above.
        case automatic
        case gemm
        case gemv
    }

    /// An activation applied in the matrix kernels' epilogue (after the
    /// bias, before alpha), saving a pass over the output.
    public enum Activation: Int32, Sendable {
        case none = 0, gelu = 1, quickGELU = 2
    }

    /// The most rows the GEMV kernel handles in one pass (GEMV_ROWS).
    public static let gemvMaxRows = 4

    /// y = alpha·act(x·Wᵀ + bias) for `rows` rows, or y += that when
    /// `accumulate` (the residual add of a block's output projection, scaled
    /// by tanh(gate) in GATED XATTN-DENSE, without a separate pass).
    /// x: [rows, w.cols] f32, y: [rows, w.rows] f32, bias: [w.rows] f32.
    /// y must not overlap x (x may be a column slice of a wider activation).
    /// A weight with no columns gives y = alpha·bias (or zero), as on the CPU.
    public func linear(_ x: CLView, rows: Int, _ w: CLWeight, bias: CLView? = nil, into y: CLView,
                       alpha: Float = 1, accumulate: Bool = false, activation: Activation = .none,
                       kernel: LinearKernel = .automatic) throws {
        let op = "linear"
        try w.check(op)
        try x.check(rows: rows, cols: w.cols, "x", op)
        try y.check(rows: rows, cols: w.rows, "y", op)
        if let bias { try bias.check(rows: 1, cols: w.rows, "bias", op) }
        guard rows > 0, w.rows > 0 else { return }
        let useGEMV: Bool
        switch kernel {
        case .automatic: useGEMV = rows <= Self.gemvMaxRows
        case .gemm: useGEMV = false
        case .gemv:
            guard rows <= Self.gemvMaxRows else {
                throw FlamingoError.invalidArgument("OpenCL linear: GEMV takes at most \(Self.gemvMaxRows) rows, not \(rows)")
            }
            useGEMV = true
        }
        let name = (useGEMV ? "gemv_" : "gemm_") + w.type.suffix
        let global = useGEMV ? [w.rows * 128] : [clRoundUp(w.rows, 64) / 4, clRoundUp(rows, 64) / 4]
        let local = useGEMV ? [128] : [16, 16]
        try launch(name, family: "matmul", global: global, local: local) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(max(x.stride, w.cols))
            try a.buffer(w.buffer); try a.offset(w.offset); try a.int(w.stride)
            try a.buffer(bias?.buffer); try a.offset(bias?.offset ?? 0); try a.flag(bias != nil)
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(max(y.stride, w.rows))
            try a.int(rows); try a.int(w.rows); try a.int(w.cols)
            try a.float(alpha); try a.flag(accumulate); try a.int(Int(activation.rawValue))
        }
    }
}

@inline(__always) func clRoundUp(_ n: Int, _ m: Int) -> Int { (n + m - 1) / m * m }
