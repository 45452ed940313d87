import Glibc
import XCTest
@testable import FlamingoCore
import CFlamingoKernels

/// Every CPU kernel against a scalar double-precision reference on random
/// inputs of awkward sizes, with sentinel values around each output that
/// must survive (catches out-of-bounds writes), in the style of llama.cpp's
/// test-backend-ops. Error metric: normalised MSE, mse(a, b) / mse(b, 0).
final class KernelTests: XCTestCase {
    static let sizes = [1, 3, 15, 16, 17, 33, 100]
    static let sentinel: Float = 1.2345e-33
    var rng = SplitMix(seed: 42)

    struct SplitMix {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> Float {
            state &+= 0x9E3779B97F4A7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
            z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 24) * 2 - 1
        }
    }

    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.next() * scale } }

    /// An output buffer with 16 sentinels on either side.
    final class Guarded {
        let storage: Buffer
        let count: Int
        init(_ count: Int, initial: [Float]? = nil) {
            self.count = count
            storage = Buffer(count + 32)
            for i in 0..<(count + 32) { storage[i] = KernelTests.sentinel }
            if let initial { for i in 0..<count { storage[16 + i] = initial[i] } }
        }
        var p: UnsafeMutablePointer<Float> { storage.p + 16 }
        var values: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
        var sentinelsIntact: Bool {
            (0..<16).allSatisfy { storage[$0] == KernelTests.sentinel && storage[16 + count + $0] == KernelTests.sentinel }
        }
    }

    func check(_ out: Guarded, _ want: [Double], maxNMSE: Double = 1e-7, _ what: String,
               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(out.sentinelsIntact, "\(what): wrote outside its output", file: file, line: line)
        var err = 0.0, ref = 0.0
        for (a, b) in zip(out.values, want) {
            XCTAssertFalse(a.isNaN, "\(what): NaN", file: file, line: line)
            err += (Double(a) - b) * (Double(a) - b)
            ref += b * b
        }
        let nmse = ref == 0 ? err : err / ref
        XCTAssertLessThanOrEqual(nmse, maxNMSE, "\(what): NMSE \(nmse)", file: file, line: line)
    }

    func testLinear() {
        for m in [1, 2, 7] { for n in Self.sizes { for k in [1, 17, 64] {
            let x = random(m * k), w = random(n * k), b = random(n)
            let W = Matrix(rows: n, cols: k), B = Matrix(rows: 1, cols: n)
            for i in 0..<(n * k) { W.data[i] = w[i] }
            for i in 0..<n { B.data[i] = b[i] }
            let out = Guarded(m * n)
            linear(x, m: m, W, bias: B, into: out.p)
            var want = [Double](repeating: 0, count: m * n)
            for r in 0..<m { for j in 0..<n {
                var s = Double(b[j])
                for i in 0..<k { s += Double(x[r * k + i]) * Double(w[j * k + i]) }
                want[r * n + j] = s
            } }
            check(out, want, maxNMSE: 1e-10, "linear m=\(m) n=\(n) k=\(k)")
        } } }
    }

    func testElementwise() {
        for n in Self.sizes {
            let x = random(n, scale: 4), y = random(n)
            var out = Guarded(n, initial: y)
            add(x, into: out.p, count: n)
            check(out, (0..<n).map { Double(y[$0]) + Double(x[$0]) }, "add \(n)")
            out = Guarded(n, initial: y)
            axpy(0.3, x, into: out.p, count: n)
            check(out, (0..<n).map { Double(y[$0]) + 0.3 * Double(x[$0]) }, "axpy \(n)")
            let d = dot(x, y, count: n)
            let dRef = (0..<n).reduce(0.0) { $0 + Double(x[$1]) * Double(y[$1]) }
            XCTAssertEqual(Double(d), dRef, accuracy: 1e-5 * max(1, abs(dRef)), "dot \(n)")
            out = Guarded(n, initial: x)
            gelu(out.p, count: n)
            check(out, x.map { 0.5 * Double($0) * (1 + erf(Double($0) / 2.0.squareRoot())) }, "gelu \(n)")
            out = Guarded(n, initial: x)
            quickGELU(out.p, count: n)
            check(out, x.map { Double($0) / (1 + exp(-1.702 * Double($0))) }, "quickGELU \(n)")
            out = Guarded(n, initial: x)
            swiGLU(out.p, y, count: n)
            check(out, (0..<n).map { Double(x[$0]) / (1 + exp(-Double(x[$0]))) * Double(y[$0]) }, "swiGLU \(n)")
            out = Guarded(n, initial: x)
            softmax(out.p, count: n)
            let mx = x.map(Double.init).max()!, e = x.map { exp(Double($0) - mx) }, s = e.reduce(0, +)
            check(out, e.map { $0 / s }, maxNMSE: 1e-6 * 1e-6, "softmax \(n)")
        }
    }

    func testStreamSum() {
        for n in Self.sizes + [1000, 4099] {
            let x = random(n)
            let want = x.reduce(0.0) { $0 + Double($1) }
            XCTAssertEqual(Double(fk_stream_sum(x, n)), want, accuracy: 1e-5 * Double(n), "stream sum \(n)")
        }
    }

    func testVectorExp() {
        let x = random(1000, scale: 87) + [-.infinity, -100, 0, 88]
        let out = Guarded(x.count)
        fk_exp(x, out.p, x.count)
        check(out, x.map { exp(Double($0)) }, maxNMSE: 1e-12, "exp")
        XCTAssertEqual(out.p[1000], 0)
        XCTAssertLessThan(out.p[1001], 1e-37)
    }

    func testNorms() {
        for rows in [1, 3] { for dim in Self.sizes {
            let x = random(rows * dim, scale: 3), g = random(dim), b = random(dim)
            let G = Matrix(rows: 1, cols: dim), Bm = Matrix(rows: 1, cols: dim)
            for i in 0..<dim { G.data[i] = g[i]; Bm.data[i] = b[i] }
            for (weight, bias) in [(G, Bm), (G, nil), (nil, nil)] as [(Matrix?, Matrix?)] {
                let out = Guarded(rows * dim)
                layerNorm(x, rows: rows, dim: dim, weight: weight, bias: bias, eps: 1e-5, into: out.p)
                var want = [Double]()
                for r in 0..<rows {
                    let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
                    let mean = row.reduce(0, +) / Double(dim)
                    let v = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(dim)
                    for i in 0..<dim {
                        var y = (row[i] - mean) / (v + 1e-5).squareRoot()
                        if weight != nil { y *= Double(g[i]) }
                        if bias != nil { y += Double(b[i]) }
                        want.append(y)
                    }
                }
                check(out, want, maxNMSE: 1e-10, "layerNorm rows=\(rows) dim=\(dim)")
            }
            let out = Guarded(rows * dim)
            rmsNorm(x, rows: rows, dim: dim, weight: G, eps: 1e-6, into: out.p)
            var want = [Double]()
            for r in 0..<rows {
                let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
                let inv = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(dim) + 1e-6).squareRoot()
                for i in 0..<dim { want.append(row[i] * inv * Double(g[i])) }
            }
            check(out, want, maxNMSE: 1e-10, "rmsNorm rows=\(rows) dim=\(dim)")
        } }
    }

    func testAttendRow() {
        for d in [1, 16, 17] { for n in [1, 5, 33] {
            let stride = d + 3
            let q = random(d), k = random(n * stride), v = random(n * stride)
            let valid = (0..<n).map { $0 % 3 != 1 || n == 1 }
            for slope: Float in [0, 0.25] {
                let scores = Buffer(n), out = Guarded(d)
                valid.withUnsafeBufferPointer { vb in
                    attendRow(q: q, k: k, v: v, stride: stride, headDim: d, keys: 0..<n, scale: 0.3,
                              alibiSlope: slope, queryPos: n - 1, keyValid: vb.baseAddress, scores: scores.p, out: out.p)
                }
                var s = [Double](repeating: -.infinity, count: n)
                for j in 0..<n where valid[j] {
                    s[j] = (0..<d).reduce(0.0) { $0 + Double(q[$1]) * Double(k[j * stride + $1]) } * 0.3
                        + Double(slope) * Double(j - (n - 1))
                }
                let mx = s.max()!, e = s.map { $0 == -.infinity ? 0 : exp($0 - mx) }, sum = e.reduce(0, +)
                let want = (0..<d).map { c in (0..<n).reduce(0.0) { $0 + e[$1] / sum * Double(v[$1 * stride + c]) } }
                check(out, want, maxNMSE: 1e-10, "attendRow d=\(d) n=\(n) slope=\(slope)")
            }
            // Every key masked: uniform over the keys, as the reference.
            let none = [Bool](repeating: false, count: n), scores = Buffer(n), out = Guarded(d)
            none.withUnsafeBufferPointer { vb in
                attendRow(q: q, k: k, v: v, stride: stride, headDim: d, keys: 0..<n, scale: 1,
                          keyValid: vb.baseAddress, scores: scores.p, out: out.p)
            }
            check(out, (0..<d).map { c in (0..<n).reduce(0.0) { $0 + Double(v[$1 * stride + c]) } / Double(n) },
                  maxNMSE: 1e-10, "attendRow all masked d=\(d) n=\(n)")
        } }
    }
}

extension KernelTests {
    /// The sgemm-based block attention equals row-by-row attention for every
    /// key selection, with grouped heads, ALiBi and invalid keys.
    func testAttentionBlockMatchesRows() {
        let heads = 4, kvHeads = 2, hd = 17, nq = 5, nk = 9
        let qStride = heads * hd + 3, kvStride = kvHeads * hd + 5, outStride = heads * hd + 1
        let q = random(nq * qStride), k = random(nk * kvStride), v = random(nk * kvStride)
        let valid = (0..<nk).map { $0 != 2 }
        let slopes: [Float] = [0.5, 0.25, 0.125, 0.0625]
        let selections: [KeySelection] = [.range(0..<5), .none, .uniform, .range(2..<3), .range(3..<9)]
        let out = Guarded(nq * outStride), ws = Workspace()
        valid.withUnsafeBufferPointer { vb in
            attentionBlock(q: q, qStride: qStride, k: k, v: v, kvStride: kvStride, nq: nq, nk: nk, heads: heads,
                           kvHeads: kvHeads, headDim: hd, scale: 0.3, alibiSlopes: slopes, queryPos: { $0 + 4 },
                           keyValid: vb.baseAddress, select: { selections[$0] }, out: out.p, outStride: outStride, ws: ws)
        }
        var want = [Double](repeating: 0, count: nq * outStride)
        for i in 0..<nq { for h in 0..<heads {
            let kv = (h / (heads / kvHeads)) * hd
            var weights = [Double](repeating: 0, count: nk)
            switch selections[i] {
            case .none: break
            case .uniform: weights = [Double](repeating: 1 / Double(nk), count: nk)
            case .range(let r):
                var s = [Double](repeating: -.infinity, count: nk)
                for j in r where valid[j] {
                    s[j] = (0..<hd).reduce(0.0) { $0 + Double(q[i * qStride + h * hd + $1]) * Double(k[j * kvStride + kv + $1]) } * 0.3
                        + Double(slopes[h]) * Double(j - (i + 4))
                }
                let m = s.max()!
                if m == -.infinity {
                    weights = [Double](repeating: 1 / Double(nk), count: nk)  // as the reference's softmax
                } else {
                    let e = s.map { $0 == -.infinity ? 0 : exp($0 - m) }, sum = e.reduce(0, +)
                    weights = e.map { $0 / sum }
                }
            }
            for c in 0..<hd {
                want[i * outStride + h * hd + c] = (0..<nk).reduce(0.0) { $0 + weights[$1] * Double(v[$1 * kvStride + kv + c]) }
            }
        } }
        // Padding columns of each output row are not written.
        for i in 0..<nq { for c in (heads * hd)..<outStride { want[i * outStride + c] = Double(out.p[i * outStride + c]) } }
        check(out, want, maxNMSE: 1e-10, "attentionBlock")
    }

    /// The worker pool: every index exactly once, for counts around the thread count; a nested
    /// call (the pool is taken: libdispatch runs it) and jobs from two host threads at once.
    func testThreadPool() {
        let saved = Threads.count
        defer { Threads.set(saved) }
        Threads.set(max(2, saved))
        for n in [1, 2, 3, 7, 64, 1000] {
            var hits = [Int32](repeating: 0, count: n)
            hits.withUnsafeMutableBufferPointer { h in
                let p = h.baseAddress
                Threads.run(n) { i in p?[i] += 1 }
            }
            XCTAssertEqual(hits, [Int32](repeating: 1, count: n), "n=\(n)")
        }
        var nested = [Int32](repeating: 0, count: 12)
        nested.withUnsafeMutableBufferPointer { h in
            let p = h.baseAddress
            Threads.run(3) { i in Threads.run(4) { j in p?[i * 4 + j] += 1 } }
        }
        XCTAssertEqual(nested, [Int32](repeating: 1, count: 12))
        var concurrent = [Int32](repeating: 0, count: 2 * 500)
        concurrent.withUnsafeMutableBufferPointer { h in
            let p = h.baseAddress
            DispatchQueue.concurrentPerform(iterations: 2) { t in
                for r in 0..<50 { Threads.run(10) { i in p?[t * 500 + r * 10 + i] += 1 } }
            }
        }
        XCTAssertEqual(concurrent, [Int32](repeating: 1, count: 1000))
    }
}
