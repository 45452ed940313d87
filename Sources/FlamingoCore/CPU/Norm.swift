import Glibc

/// LayerNorm over the last dimension with biased variance, for `rows`
/// rows of `dim`; weight/bias optional (weight-only norms of MPT).
/// `x` and `y` may alias.
public func layerNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: Matrix?, bias: Matrix?,
                      eps: Float, into y: UnsafeMutablePointer<Float>) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = y + r * dim
        var mean: Float = 0
        for i in 0..<dim { mean += xr[i] }
        mean /= Float(dim)
        var variance: Float = 0
        for i in 0..<dim { let d = xr[i] - mean; variance += d * d }
        variance /= Float(dim)
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
