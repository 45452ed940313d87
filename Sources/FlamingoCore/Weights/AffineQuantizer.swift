/// Affine per-group quantization of a row-major matrix into the MLX layout
/// (docs/model-format.md): q = clamp(round((w − bias)/scale), 0, 2^bits − 1).
///
/// Plain min/max rounding spends part of the grid on rare extreme values.
/// With `search`, each group tries a range of grid scales around the min/max
/// one (as llama.cpp's k-quant quantizers do), refits scale and bias to the
/// rounded codes by least squares, and keeps the candidate with the smallest
/// squared error measured with the scale and bias as stored (f16).
/// docs/quantization.md has the measured effect.
public enum AffineQuantizer {
    public struct Packed {
        public var words: [UInt32]      // [rows, cols·bits/32]
        public var scales: [UInt16]     // f16 bit patterns [rows, cols/group]
        public var biases: [UInt16]
    }

    /// Grid scales tried per group besides min/max: iscale = (levels + δ)/(max − min).
    static let searchSteps: [Float] = (-5...5).map { Float($0) * 0.2 }

    public static func quantize(_ w: UnsafePointer<Float>, rows: Int, cols: Int, bits: Int, group: Int,
                                search: Bool = true) -> Packed {
        let groups = cols / group, perWord = 32 / bits
        var out = Packed(words: [UInt32](repeating: 0, count: rows * cols / perWord),
                         scales: [UInt16](repeating: 0, count: rows * groups),
                         biases: [UInt16](repeating: 0, count: rows * groups))
        out.words.withUnsafeMutableBufferPointer { words in
            out.scales.withUnsafeMutableBufferPointer { scales in
                out.biases.withUnsafeMutableBufferPointer { biases in
                    parallelTasks(rows, work: rows * cols * (search ? 64 : 4)) { range in
                        var q = [Float](repeating: 0, count: group), codes = [Float](repeating: 0, count: group)
                        for r in range {
                            for g in 0..<groups {
                                let (s, b) = fit(w + r * cols + g * group, count: group, bits: bits, search: search,
                                                 q: &q, codes: &codes)
                                scales[r * groups + g] = s.bitPattern
                                biases[r * groups + g] = b.bitPattern
                                let base = (r * cols + g * group) / perWord
                                for i in 0..<group {
                                    words[base + i / perWord] |= UInt32(codes[i]) << UInt32((i % perWord) * bits)
                                }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Scale and bias (as stored) of one group and its codes in `codes`.
    static func fit(_ x: UnsafePointer<Float>, count n: Int, bits: Int, search: Bool,
                    q: inout [Float], codes: inout [Float]) -> (Float16, Float16) {
        let levels = Float((1 << bits) - 1)
        var lo = x[0], hi = x[0]
        for i in 1..<n { lo = min(lo, x[i]); hi = max(hi, x[i]) }
        var candidates = [(hi > lo ? (hi - lo) / levels : 0, lo)]
        if search && hi > lo {
            for delta in searchSteps {
                let iscale = (levels + delta) / (hi - lo)
                for i in 0..<n { q[i] = min(max((iscale * (x[i] - lo)).rounded(), 0), levels) }
                let (s, b) = leastSquares(x, q, n)
                if s > 0 { candidates.append((s, b)) }
            }
        }
        var best: (err: Float, s: Float16, b: Float16) = (.infinity, 0, 0)
        for (s, b) in candidates {
            // Measured with the values as stored, the codes re-rounded to them.
            let sh = Float16(s), bh = Float16(b), sf = Float(sh), bf = Float(bh)
            let inv = sf > 0 ? 1 / sf : 0
            var err: Float = 0
            for i in 0..<n {
                let c = min(max(((x[i] - bf) * inv).rounded(), 0), levels)
                let e = sf * c + bf - x[i]
                err += e * e
                q[i] = c
            }
            if err < best.err { best = (err, sh, bh); swap(&q, &codes) }
        }
        return (best.s, best.b)
    }

    /// (s, b) minimising Σ (s·q + b − x)².
    private static func leastSquares(_ x: UnsafePointer<Float>, _ q: [Float], _ n: Int) -> (Float, Float) {
        var sq: Float = 0, sx: Float = 0, sqq: Float = 0, sqx: Float = 0
        for i in 0..<n { sq += q[i]; sx += x[i]; sqq += q[i] * q[i]; sqx += q[i] * x[i] }
        let nf = Float(n), den = nf * sqq - sq * sq
        guard den > 0 else { return (0, sx / nf) }
        let s = (nf * sqx - sq * sx) / den
        return (s, (sx - s * sq) / nf)
    }
}
