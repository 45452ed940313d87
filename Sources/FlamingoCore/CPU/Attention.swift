/// One head of scaled dot-product attention for one query row over the key
/// rows `keys` of `k`/`v` (row stride `stride`, head offset already applied).
///
/// Masked keys (keyValid false) take no weight, exactly like the reference's
/// most-negative-finite mask after max subtraction; a row whose keys are all
/// masked gets the uniform distribution, as the reference's softmax does.
/// ALiBi adds slope·(j − queryPos), which differs from the reference's
/// slope·(j − (S−1)) by a per-row constant that softmax cancels.
public func attendRow(q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                      stride: Int, headDim d: Int, keys: Range<Int>, scale: Float,
                      alibiSlope: Float = 0, queryPos: Int = 0, keyValid: UnsafePointer<Bool>? = nil,
                      scores: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
    let n = keys.count
    out.initialize(repeating: 0, count: d)
    guard n > 0 else { return }
    var anyValid = false
    var m = -Float.infinity
    for (t, j) in keys.enumerated() {
        if let keyValid, !keyValid[j] { scores[t] = -.infinity; continue }
        anyValid = true
        var s = dot(q, k + j * stride, count: d) * scale
        if alibiSlope != 0 { s += alibiSlope * Float(j - queryPos) }
        scores[t] = s
        m = max(m, s)
    }
    if !anyValid {
        let w = 1 / Float(n)
        for j in keys { axpy(w, v + j * stride, into: out, count: d) }
        return
    }
    var sum: Float = 0
    for t in 0..<n {
        let e = scores[t] == -.infinity ? 0 : expf(scores[t] - m)
        scores[t] = e
        sum += e
    }
    let inv = 1 / sum
    for (t, j) in keys.enumerated() where scores[t] != 0 {
        axpy(scores[t] * inv, v + j * stride, into: out, count: d)
    }
}

import Glibc
