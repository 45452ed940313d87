/// Row normalisations on the device (kernels/opencl/norm.cl, softmax.cl).
extension OpenCLRuntime {
    /// LayerNorm over the last dimension (biased variance, two-pass mean
    /// and variance as PyTorch), weight and bias optional (weight-only
    /// norms of MPT). x and y may be the same view.
    public func layerNorm(_ x: CLView, rows: Int, dim: Int, weight: CLView?, bias: CLView?, eps: Float,
                          into y: CLView) throws {
        let op = "layerNorm"
        try x.check(rows: rows, cols: dim, "x", op)
        try y.check(rows: rows, cols: dim, "y", op)
        if let weight { try weight.check(rows: 1, cols: dim, "weight", op) }
        if let bias { try bias.check(rows: 1, cols: dim, "bias", op) }
        guard dim > 0 else { return }
        try launch("layer_norm", family: "norm", global: [rows * 128], local: [128]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(max(x.stride, dim))
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(max(y.stride, dim))
            try a.buffer(weight?.buffer); try a.offset(weight?.offset ?? 0); try a.flag(weight != nil)
            try a.buffer(bias?.buffer); try a.offset(bias?.offset ?? 0); try a.flag(bias != nil)
            try a.int(dim); try a.float(eps)
        }
    }

    /// RMSNorm (LLaMA): x / sqrt(mean(x²) + eps) · weight. x and y may be the same view.
    public func rmsNorm(_ x: CLView, rows: Int, dim: Int, weight: CLView, eps: Float, into y: CLView) throws {
        let op = "rmsNorm"
        try x.check(rows: rows, cols: dim, "x", op)
        try y.check(rows: rows, cols: dim, "y", op)
        try weight.check(rows: 1, cols: dim, "weight", op)
        guard dim > 0 else { return }
        try launch("rms_norm", family: "norm", global: [rows * 128], local: [128]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(max(x.stride, dim))
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(max(y.stride, dim))
            try a.buffer(weight.buffer); try a.offset(weight.offset)
            try a.int(dim); try a.float(eps)
        }
    }

    /// In-place softmax of each row after subtracting its maximum: -inf
    /// entries get 0, an all -inf row becomes uniform (as `softmax` on the CPU).
    public func softmaxRows(_ x: CLView, rows: Int, cols: Int) throws {
        try x.check(rows: rows, cols: cols, "x", "softmaxRows")
        guard cols > 0 else { return }
        try launch("softmax_rows", family: "softmax", global: [rows * 128], local: [128]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(max(x.stride, cols)); try a.int(cols)
        }
    }
}
