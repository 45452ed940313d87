/// Element-wise ops on the device (kernels/opencl/elementwise.cl), all over
/// a [rows, cols] region of strided rows; `into` nil means in place.
extension OpenCLRuntime {
    private func unary(_ kernel: String, _ x: CLView, rows: Int, cols: Int, into y: CLView?,
                       scalar: Float? = nil) throws {
        let y = y ?? x
        try x.check(rows: rows, cols: cols, "x", kernel)
        try y.check(rows: rows, cols: cols, "y", kernel)
        try launch(kernel, family: "elementwise", global: [clRoundUp(cols, 64), rows], local: [64, 1]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(max(x.stride, cols))
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(max(y.stride, cols))
            try a.int(cols)
            if let scalar { try a.float(scalar) }
        }
    }

    /// Exact GELU, 0.5·x·(1 + erf(x/√2)) (PyTorch's default nn.GELU).
    public func gelu(_ x: CLView, rows: Int = 1, cols: Int, into y: CLView? = nil) throws {
        try unary("gelu", x, rows: rows, cols: cols, into: y)
    }

    /// QuickGELU of the OpenAI CLIP weights: x·σ(1.702·x).
    public func quickGELU(_ x: CLView, rows: Int = 1, cols: Int, into y: CLView? = nil) throws {
        try unary("quick_gelu", x, rows: rows, cols: cols, into: y)
    }

    /// y += a·x: the residual add (a = 1) and the tanh-gated adds.
    public func axpy(_ a: Float, _ x: CLView, into y: CLView, rows: Int = 1, cols: Int) throws {
        try unary("axpy", x, rows: rows, cols: cols, into: y, scalar: a)
    }

    /// y += x.
    public func add(_ x: CLView, into y: CLView, rows: Int = 1, cols: Int) throws {
        try axpy(1, x, into: y, rows: rows, cols: cols)
    }

    /// y = a·x.
    public func scale(_ x: CLView, rows: Int = 1, cols: Int, by a: Float, into y: CLView? = nil) throws {
        try unary("scale", x, rows: rows, cols: cols, into: y, scalar: a)
    }

    /// y = x over strided rows (e.g. the k and v columns of fused qkv rows
    /// into a KV cache at the sequence's positions). The regions must not overlap.
    public func copyRows(_ x: CLView, into y: CLView, rows: Int, cols: Int) throws {
        try unary("copy_rows", x, rows: rows, cols: cols, into: y)
    }

    /// Two copyRows of the same shape in one launch (keys and values into a KV cache).
    public func copyRows(_ x0: CLView, into y0: CLView, and x1: CLView, into y1: CLView, rows: Int, cols: Int) throws {
        let op = "copyRows2"
        for (v, what) in [(x0, "x0"), (y0, "y0"), (x1, "x1"), (y1, "y1")] { try v.check(rows: rows, cols: cols, what, op) }
        try launch("copy_rows2", family: "elementwise", global: [clRoundUp(cols, 64), rows, 2], local: [64, 1, 1]) { a in
            for (x, y) in [(x0, y0), (x1, y1)] {
                try a.buffer(x.buffer); try a.offset(x.offset); try a.int(max(x.stride, cols))
                try a.buffer(y.buffer); try a.offset(y.offset); try a.int(max(y.stride, cols))
            }
            try a.int(cols)
        }
    }

    /// SwiGLU: y = silu(gate)·up (y nil: into gate).
    public func swiGLU(gate: CLView, up: CLView, rows: Int = 1, cols: Int, into y: CLView? = nil) throws {
        let y = y ?? gate, op = "swiGLU"
        try gate.check(rows: rows, cols: cols, "gate", op)
        try up.check(rows: rows, cols: cols, "up", op)
        try y.check(rows: rows, cols: cols, "y", op)
        try launch("swiglu", family: "elementwise", global: [clRoundUp(cols, 64), rows], local: [64, 1]) { a in
            try a.buffer(gate.buffer); try a.offset(gate.offset); try a.int(max(gate.stride, cols))
            try a.buffer(up.buffer); try a.offset(up.offset); try a.int(max(up.stride, cols))
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(max(y.stride, cols))
            try a.int(cols)
        }
    }
}
