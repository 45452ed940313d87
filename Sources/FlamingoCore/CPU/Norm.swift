import Glibc

/// LayerNorm over the last dimension with biased variance, for `rows`
/// rows of `dim`; weight/bias optional (weight-only norms of MPT).
/// `x` and `y` may alias.
public func layerNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: Matrix?, bias: Matrix?,
                      eps: Float, into y: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        let mean = sum(xr, count: dim) / Float(dim)
        let variance = sumOfSquaredDeviations(xr, mean, count: dim) / Float(dim)
        let inv = 1 / sqrtf(variance + eps)
        for i in 0..<dim {
            var v = (xr[i] - mean) * inv
            if let weight { v *= weight.data[i] }
            if let bias { v += bias.data[i] }
            yr[i] = v
        }
    }
}

/// RMSNorm (LLaMA): x / sqrt(mean(x²) + eps) · weight. `x` and `y` may alias.
public func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: Matrix, eps: Float,
                    into y: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        let inv = 1 / sqrtf(dot(xr, xr, count: dim) / Float(dim) + eps)
        for i in 0..<dim { yr[i] = xr[i] * inv * weight.data[i] }
    }
}

/// Σ x, with vector accumulators (Swift does not vectorise float reductions).
func sum(_ x: UnsafePointer<Float>, count n: Int) -> Float {
    var a = V16()
    var i = 0
    while i + 16 <= n { a += load16(x + i); i += 16 }
    var s = a.sum()
    while i < n { s += x[i]; i += 1 }
    return s
}

/// Σ (x − m)², two-pass as PyTorch's LayerNorm variance.
func sumOfSquaredDeviations(_ x: UnsafePointer<Float>, _ m: Float, count n: Int) -> Float {
    var a = V16()
    let vm = V16(repeating: m)
    var i = 0
    while i + 16 <= n { let d = load16(x + i) - vm; a = a.addingProduct(d, d); i += 16 }
    var s = a.sum()
    while i < n { let d = x[i] - m; s += d * d; i += 1 }
    return s
}
