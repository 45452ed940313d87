import Glibc

/// Linear layers on the device (kernels/opencl/matmul.cl).
extension OpenCLRuntime {
    /// Which matrix kernel `linear` uses.
    public enum LinearKernel: Sendable {
        /// GEMV up to `gemvMaxRows` rows (each weight read once for all of
        /// them: decoding, a few beams), tiled GEMM above.
        case automatic
        case gemm
        case gemv
        /// The tensor-core GEMM of kernels/opencl/mma.cl (16-bit weights; x
        /// rounded to the weight type): inline PTX on NVIDIA, emulated elsewhere.
        case tensorCores
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
        let chosen: LinearKernel
        switch kernel {
        case .automatic:
            if rows <= Self.gemvMaxRows {
                chosen = .gemv
            } else {
                chosen = try w.type != .f32 && w.affine == nil && tensorCoresVerified() ? .tensorCores : .gemm
            }
        case .gemm: chosen = .gemm
        case .gemv:
            guard rows <= Self.gemvMaxRows else {
                throw FlamingoError.invalidArgument("OpenCL linear: GEMV takes at most \(Self.gemvMaxRows) rows, not \(rows)")
            }
            chosen = .gemv
        case .tensorCores:
            guard w.type != .f32, w.affine == nil else {
                throw FlamingoError.invalidArgument("OpenCL linear: tensor cores take 16-bit weights")
            }
            chosen = .tensorCores
        }
        let (name, family, global, local): (String, String, [Int], [Int])
        let suffix = w.affine == nil ? w.type.suffix : "affine"
        switch chosen {
        case .gemv: (name, family, global, local) = ("gemv_" + suffix, "matmul", [w.rows * 128], [128])
        case .tensorCores:
            (name, family, global, local) = ("gemm_mma_" + w.type.suffix, "mma",
                                             [clRoundUp(w.rows, 64) * 2, clRoundUp(rows, 64) / 64], [128, 1])
        default:
            (name, family, global, local) = ("gemm_" + suffix, "matmul",
                                             [clRoundUp(w.rows, 64) / 4, clRoundUp(rows, 64) / 4], [16, 16])
        }
        try launch(name, family: family, global: global, local: local) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(max(x.stride, w.cols))
            try a.buffer(w.buffer); try a.offset(w.offset); try a.int(w.stride)
            try a.buffer(bias?.buffer); try a.offset(bias?.offset ?? 0); try a.flag(bias != nil)
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(max(y.stride, w.rows))
            try a.int(rows); try a.int(w.rows); try a.int(w.cols)
            try a.float(alpha); try a.flag(accumulate); try a.int(Int(activation.rawValue))
            if let q = w.affine {
                try a.buffer(q.scales); try a.buffer(q.biases); try a.int(q.bits); try a.int(q.group)
            }
        }
    }
}

extension OpenCLRuntime {
    /// Whether `linear` uses the tensor-core kernel by itself: only on
    /// NVIDIA, and only after it matched the portable GEMM on a random
    /// product of awkward size on this device (checked once per runtime, so
    /// a fragment-layout or driver problem falls back instead of returning
    /// wrong numbers). FLAMINGO_TENSOR_CORES=0 turns it off.
    func tensorCoresVerified() throws -> Bool {
        if let v = lock.locked({ tensorCoreState }) { return v }
        var ok = false
        if isNVIDIA, getenv("FLAMINGO_TENSOR_CORES").map({ String(cString: $0) }) != "0" {
            ok = try selfCheckTensorCores()
            Log.info("OpenCL: tensor-core GEMM \(ok ? "verified, in use" : "disagreed with the portable GEMM; not used") on \(device.info.name)")
        }
        lock.locked { tensorCoreState = ok }
        return ok
    }

    private func selfCheckTensorCores() throws -> Bool {
        let (m, k, n) = (70, 40, 67)
        var state: UInt32 = 12345
        func next() -> Float { state = state &* 1_664_525 &+ 1_013_904_223; return Float(state >> 8) / Float(1 << 24) - 0.5 }
        let x = (0..<(m * k)).map { _ in next() }
        let bits = (0..<(n * k)).map { _ in Float16(next()).bitPattern }
        let w = try weight(bits: bits, type: .f16, rows: n, cols: k)
        let xb = try buffer(x), y1 = try buffer(floats: m * n), y2 = try buffer(floats: m * n)
        try linear(CLView(xb), rows: m, w, into: CLView(y1), kernel: .gemm)
        try linear(CLView(xb), rows: m, w, into: CLView(y2), kernel: .tensorCores)
        let a = try download(y1, count: m * n), b = try download(y2, count: m * n)
        var err: Float = 0, ref: Float = 0
        for i in a.indices { err += (a[i] - b[i]) * (a[i] - b[i]); ref += a[i] * a[i] }
        return err.isFinite && err <= 1e-4 * ref
    }
}

@inline(__always) func clRoundUp(_ n: Int, _ m: Int) -> Int { (n + m - 1) / m * m }
