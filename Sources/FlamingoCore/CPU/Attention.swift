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

/// Which keys query row i may attend to, for `attentionBlock`.
public enum KeySelection {
    /// Keys in the range, minus any marked invalid.
    case range(Range<Int>)
    /// No key: the output row is zero (cross-attention before any image).
    case none
    /// Every key with equal weight (all keys equally masked in the reference).
    case uniform
}

/// Multi-head attention of `nq` query rows over `nk` key rows through two
/// sgemm calls per head (scores = Q·Kᵀ, out = P·V); for prefill, the vision
/// encoder and the resampler. Head h reads q + h·hd and k/v + (h/group)·hd.
public func attentionBlock(q: UnsafePointer<Float>, qStride: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                           kvStride: Int, nq: Int, nk: Int, heads: Int, kvHeads: Int, headDim hd: Int, scale: Float,
                           alibiSlopes: [Float]? = nil, queryPos: (Int) -> Int = { $0 },
                           keyValid: UnsafePointer<Bool>? = nil, select: (Int) -> KeySelection,
                           out: UnsafeMutablePointer<Float>, outStride: Int, ws: Workspace) {
    guard nq > 0 else { return }
    let s = ws.take(nq * max(nk, 1))
    let group = heads / kvHeads
    let selections = (0..<nq).map(select)
    for h in 0..<heads {
        let kh = k + (h / group) * hd, vh = v + (h / group) * hd, oh = out + h * hd
        if nk > 0 {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nq), Int32(nk), Int32(hd), scale,
                        q + h * hd, Int32(qStride), kh, Int32(kvStride), 0, s, Int32(nk))
        }
        for i in 0..<nq {
            let row = s + i * nk
            switch selections[i] {
            case .none:
                row.initialize(repeating: 0, count: nk)
            case .uniform:
                row.initialize(repeating: 1 / Float(max(nk, 1)), count: nk)
            case .range(let keys):
                // Masked keys get −inf (exactly zero weight, as the reference's
                // most-negative mask after max subtraction); a row with every
                // key masked becomes uniform, as the reference's softmax.
                let slope = alibiSlopes?[h] ?? 0, pos = queryPos(i)
                for j in 0..<nk {
                    if !keys.contains(j) || keyValid.map({ !$0[j] }) ?? false { row[j] = -.infinity; continue }
                    if slope != 0 { row[j] += slope * Float(j - pos) }
                }
                softmax(row, count: nk)
            }
        }
        if nk > 0 {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(nq), Int32(hd), Int32(nk), 1,
                        s, Int32(nk), vh, Int32(kvStride), 0, oh, Int32(outStride))
        } else {
            for i in 0..<nq { (oh + i * outStride).initialize(repeating: 0, count: hd) }
        }
    }
}

import COpenBLAS
