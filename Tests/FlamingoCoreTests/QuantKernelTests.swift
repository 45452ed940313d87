import XCTest
@testable import FlamingoCore
import CFlamingoKernels

/// The 16-bit and affine-integer weight kernels (kernels/cpu/quant.c) through
/// `linear`, against scalar double-precision references on awkward sizes,
/// with sentinels around every output (KernelTests' conventions).
final class QuantKernelTests: XCTestCase {
    var rng = KernelTests.SplitMix(seed: 7)

    /// Keeps the bytes a TensorView points at alive for the test.
    final class Storage {
        var blobs: [UnsafeMutableRawBufferPointer] = []
        func view(_ name: String, _ dtype: DType, _ shape: [Int], _ bytes: [UInt8], misalign: Bool = false) -> TensorView {
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count + 2, alignment: 64)
            blobs.append(raw)
            let off = misalign ? 2 : 0
            for (i, b) in bytes.enumerated() { raw[off + i] = b }
            return TensorView(name: name, dtype: dtype, shape: shape,
                              data: UnsafeRawBufferPointer(rebasing: raw[off..<(off + bytes.count)]))
        }
        deinit { for b in blobs { b.deallocate() } }
    }

    static func bytes<T>(_ a: [T]) -> [UInt8] { a.withUnsafeBytes { Array($0) } }

    /// A random affine weight: codes, scales and biases as stored, and its
    /// exact values.
    struct Affine {
        let rows: Int, cols: Int, bits: Int, group: Int
        var codes: [Int], scales: [Float], biases: [Float]
        func value(_ r: Int, _ j: Int) -> Double {
            let g = r * (cols / group) + j / group
            return Double(scales[g]) * Double(codes[r * cols + j]) + Double(biases[g])
        }
        var words: [UInt32] {
            var w = [UInt32](repeating: 0, count: rows * cols * bits / 32)
            for i in 0..<(rows * cols) { w[i * bits / 32] |= UInt32(codes[i]) << UInt32((i % (32 / bits)) * bits) }
            return w
        }
    }

    func randomAffine(rows: Int, cols: Int, bits: Int, group: Int) -> Affine {
        let levels = (1 << bits) - 1
        var a = Affine(rows: rows, cols: cols, bits: bits, group: group, codes: [], scales: [], biases: [])
        a.codes = (0..<(rows * cols)).map { _ in min(levels, Int((rng.next() + 1) / 2 * Float(levels + 1))) }
        // Multiples of 2^-12 and 2^-8 with 8-bit numerators: exact in f32, f16
        // and bf16 alike, so one reference serves every scale type.
        a.scales = (0..<(rows * cols / group)).map { _ in Float(Int(abs(rng.next()) * 254) + 1) / 4096 }
        a.biases = (0..<(rows * cols / group)).map { _ in Float(Int(rng.next() * 255)) / 256 }
        return a
    }

    func sbBytes(_ v: [Float], _ t: DType) -> [UInt8] {
        switch t {
        case .f16: return Self.bytes(v.map { Float16($0).bitPattern })
        case .bf16: return Self.bytes(v.map { bf16Bits($0) })
        default: return Self.bytes(v)
        }
    }

    func weight(_ a: Affine, sb: DType, storage: Storage, misalign: Bool = false) throws -> Weight {
        let packed = storage.view("w.weight", .u32, [a.rows, a.cols * a.bits / 32], Self.bytes(a.words), misalign: misalign)
        let groups = a.cols / a.group
        let s = storage.view("w.scales", sb, [a.rows, groups], sbBytes(a.scales, sb), misalign: misalign)
        let b = storage.view("w.biases", sb, [a.rows, groups], sbBytes(a.biases, sb))
        return try Weight(name: "w.weight", bits: a.bits, group: a.group, packed: packed, scales: s, biases: b)
    }

    /// The integer path's exact arithmetic: x quantized per group as the
    /// kernel does, integer dot products (of q − 128 for 8 bits, whose
    /// offset joins the bias), the group bias on the exact sum of x.
    func emulateInteger(_ a: Affine, row r: Int, x: ArraySlice<Float>) -> Double {
        let x = Array(x)
        var y = 0.0
        let bs = a.group
        for b in 0..<(a.cols / bs) {
            let xb = x[(b * bs)..<(b * bs + bs)]
            let amax = xb.map { abs($0) }.max() ?? 0
            let d = amax / 127, id = d > 0 ? 1 / d : 0
            let g = r * (a.cols / a.group) + b
            let offset = a.bits == 8 ? 128 : 0
            var idot = 0
            for j in (b * bs)..<(b * bs + bs) {
                idot += (a.codes[r * a.cols + j] - offset) * Int((x[j] * id).rounded(.toNearestOrEven))
            }
            y += Double(a.scales[g]) * Double(d) * Double(idot)
            y += (Double(a.biases[g]) + Double(offset) * Double(a.scales[g])) * xb.reduce(0.0) { $0 + Double($1) }
        }
        return y
    }

    func testAffineProducts() throws {
        let storage = Storage()
        for bits in [4, 8] { for group in [32, 64, 128] { for sb in [DType.f32, .f16, .bf16] {
            for (n, groups) in [(1, 1), (3, 9), (17, 2), (5, 17), (9, 8)] {
                let k = group * groups
                let a = randomAffine(rows: n, cols: k, bits: bits, group: group)
                let w = try weight(a, sb: sb, storage: storage, misalign: n == 3)
                XCTAssertEqual(w.format, .affine(bits: bits, group: group))
                for m in [1, 2, 4, 5] {
                    let x = rng.vector(m * k, scale: 2)
                    let out = KernelTests.Guarded(m * n)
                    linear(x, m: m, w, into: out.p)
                    XCTAssertTrue(out.sentinelsIntact, "q\(bits) g\(group) \(sb) \(n)x\(k) m=\(m): wrote outside its output")
                    if m > 1 && m <= Weight.gemvRows {
                        // Rows sharing a weight read get exactly what each gets alone.
                        for i in 0..<m {
                            let one = KernelTests.Guarded(n)
                            Array(x[(i * k)..<((i + 1) * k)]).withUnsafeBufferPointer { linear($0.baseAddress!, m: 1, w, into: one.p) }
                            XCTAssertEqual(one.values, Array(UnsafeBufferPointer(start: out.p + i * n, count: n)), "q\(bits) g\(group) row \(i) of \(m)")
                        }
                    }
                    for i in 0..<m { for r in 0..<n {
                        let exact = (0..<k).reduce(0.0) { $0 + a.value(r, $1) * Double(x[i * k + $1]) }
                        let got = Double(out.p[i * n + r])
                        let what = "q\(bits) g\(group) \(sb) \(n)x\(k) m=\(m) row \(r)"
                        if m <= Weight.gemvRows {
                            // Against the same integer arithmetic: only float rounding differs.
                            let emu = emulateInteger(a, row: r, x: x[(i * k)..<((i + 1) * k)])
                            let mag = (0..<k).reduce(0.0) { $0 + abs(a.value(r, $1) * Double(x[i * k + $1])) }
                            XCTAssertEqual(got, emu, accuracy: 1e-5 * max(1, mag), what)
                            // And the exact product within the activation rounding bound Σ|s·(q − offset)|·d/2.
                            var bound = 1e-5 * max(1, mag)
                            for gi in 0..<(k / group) {
                                let amax = x[(i * k + gi * group)..<(i * k + gi * group + group)].map { abs($0) }.max() ?? 0
                                let g = r * (k / group) + gi
                                for j in (gi * group)..<((gi + 1) * group) {
                                    bound += abs(Double(a.scales[g]) * Double(a.codes[r * k + j] - (bits == 8 ? 128 : 0))) * Double(amax) / 127 / 2
                                }
                            }
                            XCTAssertLessThanOrEqual(abs(got - exact), bound, what)
                        } else {
                            let mag = (0..<k).reduce(0.0) { $0 + abs(a.value(r, $1) * Double(x[i * k + $1])) }
                            XCTAssertEqual(got, exact, accuracy: 1e-5 * max(1, mag), what)
                        }
                    } }
                }
                // Embedding rows dequantize exactly.
                let row = KernelTests.Guarded(k)
                w.row(n - 1, into: row.p)
                XCTAssertTrue(row.sentinelsIntact)
                for j in 0..<k { XCTAssertEqual(Double(row.p[j]), a.value(n - 1, j), accuracy: 1e-6 * max(1, abs(a.value(n - 1, j)))) }
            }
        } } }
    }

    func testSixteenBitProducts() throws {
        let storage = Storage()
        for dtype in [DType.f16, .bf16] { for n in [1, 3, 17, 100] { for k in [1, 7, 33, 100] {
            let values = rng.vector(n * k)
            let bits = values.map { dtype == .f16 ? Float16($0).bitPattern : bf16Bits($0) }
            let stored = bits.map { dtype == .f16 ? Double(Float(Float16(bitPattern: $0))) : Double(Float(bitPattern: UInt32($0) << 16)) }
            let t = storage.view("w", dtype, [n, k], Self.bytes(bits), misalign: k == 7)
            let w = Weight(t, rows: n, cols: k)
            XCTAssertEqual(w.format, dtype == .f16 ? .f16 : .bf16)
            XCTAssertEqual(w.storedBytes, n * k * 2)
            for m in [1, 3, 4, 6] {
                let x = rng.vector(m * k)
                let out = KernelTests.Guarded(m * n)
                linear(x, m: m, w, into: out.p)
                var want = [Double](repeating: 0, count: m * n)
                for i in 0..<m { for r in 0..<n { for j in 0..<k { want[i * n + r] += stored[r * k + j] * Double(x[i * k + j]) } } }
                XCTAssertTrue(out.sentinelsIntact, "\(dtype) \(n)x\(k) m=\(m): wrote outside its output")
                for (g, e) in zip(out.values, want) {
                    XCTAssertEqual(Double(g), e, accuracy: 1e-5 * max(1, abs(e)), "\(dtype) \(n)x\(k) m=\(m)")
                }
            }
        } } }
    }

    func testQuantizerSearchNeverWorseAndCodesInRange() {
        for bits in [4, 8] { for group in [32, 64, 128] {
            let rows = 8, cols = group * 2
            // Heavy-tailed values: where clipping the range pays.
            var w = rng.vector(rows * cols)
            for i in stride(from: 0, to: w.count, by: 37) { w[i] *= 6 }
            var err: [Bool: Double] = [:]
            for search in [false, true] {
                let p = AffineQuantizer.quantize(w, rows: rows, cols: cols, bits: bits, group: group, search: search)
                var sse = 0.0
                for r in 0..<rows { for j in 0..<cols {
                    let i = r * cols + j, g = r * (cols / group) + j / group
                    let code = (p.words[i * bits / 32] >> UInt32((i % (32 / bits)) * bits)) & UInt32((1 << bits) - 1)
                    let v = Double(Float(Float16(bitPattern: p.scales[g]))) * Double(code) + Double(Float(Float16(bitPattern: p.biases[g])))
                    sse += (v - Double(w[i])) * (v - Double(w[i]))
                    if !search {  // min/max rounding: every value within half a step (plus f16 rounding)
                        XCTAssertLessThanOrEqual(abs(v - Double(w[i])), Double(Float(Float16(bitPattern: p.scales[g]))) * 0.5 + 2e-3)
                    }
                } }
                err[search] = sse
            }
            XCTAssertLessThanOrEqual(err[true]!, err[false]!, "q\(bits) g\(group): the search made the error worse")
        } }
    }
}

extension KernelTests.SplitMix {
    mutating func vector(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
}

/// The clipping search on the trained flamingo-mini's matrices: the squared
/// weight error it saves over min/max rounding (printed; docs/quantization.md).
final class QuantizerSearchTests: XCTestCase {
    func testSearchLowersTheErrorOnTrainedWeights() throws {
        let model = try Model(directory: fixturesDir + "/../../models/flamingo-mini")
        for bits in [4, 8] {
            var sse: [Bool: Double] = [false: 0, true: 0], energy = 0.0
            for spec in model.config.expectedWeights where spec.quantizable && spec.shape[1] % 64 == 0 {
                let m = try model.matrix(spec.name)
                for i in 0..<(m.rows * m.cols) { energy += Double(m.data[i]) * Double(m.data[i]) }
                for search in [false, true] {
                    let p = AffineQuantizer.quantize(m.data, rows: m.rows, cols: m.cols, bits: bits, group: 64, search: search)
                    for r in 0..<m.rows { for j in 0..<m.cols {
                        let i = r * m.cols + j, g = r * (m.cols / 64) + j / 64
                        let code = (p.words[i * bits / 32] >> UInt32((i % (32 / bits)) * bits)) & UInt32((1 << bits) - 1)
                        let v = Double(Float(Float16(bitPattern: p.scales[g]))) * Double(code) + Double(Float(Float16(bitPattern: p.biases[g])))
                        sse[search, default: 0] += (v - Double(m.data[i])) * (v - Double(m.data[i]))
                    } }
                }
            }
            let plain = (sse[false]! / energy).squareRoot(), searched = (sse[true]! / energy).squareRoot()
            print("quantizer q\(bits) g64 on flamingo-mini: relative RMS error min/max \(plain), searched \(searched) (\(String(format: "%.1f", 100 * (1 - searched / plain)))% lower)")
            XCTAssertLessThan(searched, plain)
        }
    }
}
