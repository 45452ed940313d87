import CFlamingoKernels
import CFlamingoSupport
import Glibc
import XCTest
@testable import FlamingoCore

/// Every OpenCL kernel against the CPU implementation (or a scalar double
/// reference) on random inputs of awkward sizes, in the style of llama.cpp's
/// test-backend-ops: normalised MSE, mse(a, b) / mse(b, 0), at most 1e-7 for
/// element-wise ops and 5e-4 for matrix products and attention; NaN fails;
/// every output buffer on the device has 16 sentinel elements on either side
/// that must come back unchanged, and its own elements start as NaN, so an
/// element the kernel forgot to write fails too.
///
/// Without an OpenCL device the device tests skip (XCTSkip). With
/// FLAMINGO_OPS_PERF=1, testPerf prints µs/run and GB/s or GFLOP/s for
/// LLM-like shapes instead (docs/opencl.md).
final class OpenCLOpTests: XCTestCase {
    static let pad = 16
    static let sentinel = Float(bitPattern: 0x5EAD_BEEF)
    static let unwritten = Float(bitPattern: 0x7FC0_0ABC)   // a quiet NaN
    var rng = Random(seed: 7)

    /// Scratch caches for the whole test run, kept between runs so that
    /// only the first ever run pays for kernel compilation.
    static let cacheRoot: String = {
        let tmp = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        return tmp + "/flamingo-opencl-tests"
    }()

    override class func setUp() {
        super.setUp()
        // PoCL reads POCL_CACHE_DIR when the platform is first opened, which
        // is the first Devices.all() of the process.
        setenv("POCL_CACHE_DIR", cacheRoot + "/pocl", 0)
    }

    nonisolated(unsafe) static var shared: Result<OpenCLRuntime, Error>?

    /// The runtime of the tests, or XCTSkip when this machine has no OpenCL device.
    func runtime() throws -> OpenCLRuntime { try Self.sharedRuntime() }

    /// One runtime for every OpenCL test class of the run.
    static func sharedRuntime() throws -> OpenCLRuntime {
        setenv("POCL_CACHE_DIR", cacheRoot + "/pocl", 0)
        if Self.shared == nil {
            if fsup_cl_compute_available() == 0 || !Devices.all().contains(where: { $0.backend == .opencl }) {
                throw XCTSkip("no OpenCL device on this machine (install an ICD such as pocl-opencl-icd to run these tests)")
            }
            Self.shared = Result { try OpenCLRuntime(cacheDirectory: Self.cacheRoot + "/programs") }
        }
        switch Self.shared {
        case .success(let rt)?: return rt
        case .failure(let e)?: throw e
        case nil: throw XCTSkip("no OpenCL runtime")
        }
    }

    // MARK: helpers

    struct Random {
        var state: UInt64
        init(seed: UInt64) { state = seed }
        mutating func next() -> Float {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 24) * 2 - 1
        }
    }

    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.next() * scale } }

    /// A device output of `count` floats between sentinels; starts as
    /// `initial` or NaN.
    struct Guarded {
        let buffer: CLBuffer
        let count: Int
        var view: CLView { CLView(buffer, offset: OpenCLOpTests.pad) }
        func view(stride: Int) -> CLView { CLView(buffer, offset: OpenCLOpTests.pad, stride: stride) }
    }

    func guarded(_ rt: OpenCLRuntime, _ count: Int, initial: [Float]? = nil) throws -> Guarded {
        var host = [Float](repeating: Self.sentinel, count: count + 2 * Self.pad)
        for i in 0..<count { host[Self.pad + i] = initial?[i] ?? Self.unwritten }
        return Guarded(buffer: try rt.buffer(host), count: count)
    }

    /// The output values after checking the sentinels.
    func values(_ rt: OpenCLRuntime, _ g: Guarded, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
        let all = try rt.download(g.buffer, count: g.count + 2 * Self.pad)
        let intact = (0..<Self.pad).allSatisfy {
            all[$0].bitPattern == Self.sentinel.bitPattern && all[Self.pad + g.count + $0].bitPattern == Self.sentinel.bitPattern
        }
        XCTAssertTrue(intact, "\(what): wrote outside its output", file: file, line: line)
        return Array(all[Self.pad..<(Self.pad + g.count)])
    }

    func nmse(_ a: [Float], _ b: [Double]) -> Double {
        var err = 0.0, ref = 0.0
        for (x, y) in zip(a, b) {
            if x.isNaN { return .infinity }
            if x.isInfinite || y.isInfinite {
                if Double(x) != y { return .infinity }
                continue
            }
            err += (Double(x) - y) * (Double(x) - y)
            ref += y * y
        }
        return ref == 0 ? err : err / ref
    }

    func check(_ a: [Float], _ b: [Double], max: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "\(what): size", file: file, line: line)
        let e = nmse(a, b)
        XCTAssertLessThanOrEqual(e, max, "\(what): NMSE \(e)", file: file, line: line)
    }

    func check(_ a: [Float], _ b: [Float], max: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        check(a, b.map(Double.init), max: max, what, file: file, line: line)
    }

    static let elementwise = 1e-7
    static let matmul = 5e-4

    func matrix(_ values: [Float], rows: Int, cols: Int) -> Matrix {
        let m = Matrix(rows: rows, cols: cols)
        for i in 0..<(rows * cols) { m.data[i] = values[i] }
        return m
    }

    /// Random weights as stored on the device (bits) and as the CPU sees them (widened).
    func weights(_ n: Int, _ type: CLWeightType, scale: Float = 1) -> (bits: [UInt16], floats: [Float]) {
        let f = random(n, scale: scale)
        switch type {
        case .f32: return ([], f)
        case .f16:
            let b = f.map { Float16($0).bitPattern }
            return (b, b.map { Float(Float16(bitPattern: $0)) })
        case .bf16:
            let b = f.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
            return (b, b.map { Float(bitPattern: UInt32($0) << 16) })
        }
    }

    func deviceWeight(_ rt: OpenCLRuntime, _ w: (bits: [UInt16], floats: [Float]), _ type: CLWeightType,
                      rows: Int, cols: Int) throws -> CLWeight {
        type == .f32 ? try rt.weight(w.floats, rows: rows, cols: cols)
                     : try rt.weight(bits: w.bits, type: type, rows: rows, cols: cols)
    }

    // MARK: build machinery (no device needed for the first two)

    /// The committed EmbeddedKernels.swift holds exactly kernels/opencl/*.cl.
    func testEmbeddedKernelsUpToDate() throws {
        let dir = repoRoot + "/kernels/opencl"
        guard let d = opendir(dir) else { return XCTFail("cannot list \(dir)") }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            if name.hasSuffix(".cl") { names.append(String(name.dropLast(3))) }
        }
        closedir(d)
        names.sort()
        XCTAssertEqual(EmbeddedKernels.files.map(\.name), names,
                       "EmbeddedKernels.swift is stale: run python3 tools/embed_kernels.py")
        for (name, source) in EmbeddedKernels.files where names.contains(name) {
            let text = String(decoding: try readWholeFile("\(dir)/\(name).cl"), as: UTF8.self)
            XCTAssertTrue(text == source, "\(name).cl differs from EmbeddedKernels.swift: run python3 tools/embed_kernels.py")
        }
    }

    func testDeviceSelectionRules() throws {
        func dev(_ backend: DeviceInfo.Backend, _ kind: DeviceInfo.Kind, _ name: String, _ platform: String) -> DeviceInfo {
            DeviceInfo(backend: backend, kind: kind, platformIndex: 0, deviceIndex: 0, computeUnits: 1, memoryBytes: 1,
                       name: name, platformName: platform, vendor: "", driverVersion: "")
        }
        let list = [dev(.cpu, .cpu, "cpu", ""),
                    dev(.opencl, .cpu, "pthread-skylake", "Portable Computing Language"),
                    dev(.opencl, .gpu, "NVIDIA H100 80GB HBM3", "NVIDIA CUDA")]
        XCTAssertEqual(try OpenCLDevice.resolve(nil, in: list), 2, "default prefers a GPU")
        XCTAssertEqual(try OpenCLDevice.resolve(" ", in: list), 2)
        XCTAssertEqual(try OpenCLDevice.resolve("1", in: list), 1)
        XCTAssertEqual(try OpenCLDevice.resolve("h100", in: list), 2)
        XCTAssertEqual(try OpenCLDevice.resolve("portable", in: list), 1, "platform names match too")
        XCTAssertEqual(try OpenCLDevice.resolve(nil, in: Array(list.prefix(2))), 1, "no GPU: first OpenCL device")
        XCTAssertThrowsError(try OpenCLDevice.resolve("0", in: list)) { XCTAssertEqual(($0 as? FlamingoError)?.status, 1) }
        XCTAssertThrowsError(try OpenCLDevice.resolve("7", in: list)) { XCTAssertEqual(($0 as? FlamingoError)?.status, 7) }
        XCTAssertThrowsError(try OpenCLDevice.resolve("radeon", in: list)) {
            XCTAssertTrue("\($0)".contains("no OpenCL device matches"), "\($0)")
        }
        XCTAssertThrowsError(try OpenCLDevice.resolve(nil, in: [list[0]])) {
            XCTAssertTrue("\($0)".contains("no OpenCL device found"), "\($0)")
        }
    }

    /// FLAMINGO_DEVICE overrides the spec given to select().
    func testDeviceEnvironmentOverride() throws {
        let rt = try runtime()
        let saved = getenv("FLAMINGO_DEVICE").map { String(cString: $0) }
        defer { if let saved { setenv("FLAMINGO_DEVICE", saved, 1) } else { unsetenv("FLAMINGO_DEVICE") } }
        setenv("FLAMINGO_DEVICE", "\(rt.device.index)", 1)
        XCTAssertEqual(try OpenCLDevice.select("no such device").index, rt.device.index)
        setenv("FLAMINGO_DEVICE", "0", 1)
        XCTAssertThrowsError(try OpenCLDevice.select()) { XCTAssertTrue("\($0)".contains("CPU backend"), "\($0)") }
        unsetenv("FLAMINGO_DEVICE")
        XCTAssertEqual(try OpenCLDevice.select(String(rt.device.info.name.prefix(6))).info.name, rt.device.info.name)
    }

    /// Cold build, cached load, and both kinds of corrupt cache file
    /// (bad header/checksum; valid header around bytes the driver rejects).
    func testProgramCache() throws {
        _ = try runtime()
        let dir = TempDir()
        func fresh() throws -> OpenCLRuntime {
            let rt = try OpenCLRuntime(device: try OpenCLDevice.select(), cacheDirectory: dir.path + "/cache")
            _ = try rt.lock.locked { try rt.program("softmax") }
            return rt
        }
        XCTAssertEqual(try fresh().programOrigins["softmax"], .source)
        let cached = try fresh()
        XCTAssertEqual(cached.programOrigins["softmax"], .cache)
        let files = try listDirectory(dir.path + "/cache").filter { $0.hasSuffix(".clbin") }
        XCTAssertEqual(files.count, 1)
        let file = dir.path + "/cache/" + (files.first ?? "")

        var bytes = try readWholeFile(file)
        bytes[bytes.count / 2] ^= 0x5A            // checksum mismatch
        dir.write("cache/" + (files.first ?? ""), bytes)
        XCTAssertEqual(try fresh().programOrigins["softmax"], .source)
        XCTAssertEqual(try fresh().programOrigins["softmax"], .cache, "rewritten after the corrupt file")

        // A well-formed file whose payload is not a program binary.
        let good = try readWholeFile(file)
        var junk = Array(good[0..<CLProgramCache.headerSize]) + (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let sum = fnv1a(junk[CLProgramCache.headerSize...])
        for i in 0..<8 {
            junk[16 + i] = UInt8(truncatingIfNeeded: UInt64(4096) >> (8 * UInt64(i)))
            junk[24 + i] = UInt8(truncatingIfNeeded: sum >> (8 * UInt64(i)))
        }
        dir.write("cache/" + (files.first ?? ""), junk)
        let rebuilt = try fresh()
        XCTAssertEqual(rebuilt.programOrigins["softmax"], .source)
        // And it still computes.
        let x = try rebuilt.buffer([Float](arrayLiteral: 1, 2, 3))
        try rebuilt.softmaxRows(CLView(x), rows: 1, cols: 3)
        let y = try rebuilt.download(x, count: 3)
        XCTAssertEqual(y.reduce(0, +), 1, accuracy: 1e-6)

        // Truncated to nothing.
        dir.write("cache/" + (files.first ?? ""), [UInt8]())
        XCTAssertEqual(try fresh().programOrigins["softmax"], .source)
    }

    func testBuildFailureCarriesLog() throws {
        let rt = try runtime()
        XCTAssertThrowsError(try rt.lock.locked {
            try rt.compile(source: "__kernel void broken(__global float *x) { x[0] = undefined_name; }", family: "broken")
        }) { e in
            guard case .backend(let m) = e as? FlamingoError else { return XCTFail("\(e)") }
            XCTAssertTrue(m.contains("broken.cl"), m)
            XCTAssertTrue(m.contains("undefined_name"), "build log missing: \(m)")
        }
    }

    func testArgumentErrors() throws {
        let rt = try runtime()
        let b = try rt.buffer(floats: 10)
        XCTAssertThrowsError(try rt.gelu(CLView(b, offset: 5), cols: 6)) {
            guard case .invalidArgument(let m) = $0 as? FlamingoError else { return XCTFail("\($0)") }
            XCTAssertTrue(m.contains("overruns"), m)
        }
        XCTAssertThrowsError(try rt.gelu(CLView(b, offset: -1), cols: 2))
        XCTAssertThrowsError(try rt.gelu(CLView(b, stride: 3), rows: 2, cols: 4), "rows overlap")
        XCTAssertThrowsError(try rt.buffer(bytes: rt.maxAllocationBytes + 1)) {
            guard case .outOfMemory = $0 as? FlamingoError else { return XCTFail("\($0)") }
        }
        let w = try rt.weight([Float](repeating: 1, count: 6), rows: 2, cols: 3)
        XCTAssertThrowsError(try rt.linear(CLView(b), rows: 4, w, into: CLView(b, stride: 2)))
        XCTAssertThrowsError(try rt.attention(q: CLView(b), k: CLView(b), v: CLView(b), out: CLView(b), queries: 1, keys: 1,
                                              heads: 1, kvHeads: 1, headDim: 300, scale: 1, mask: .causal(start: 0))) {
            guard case .unsupported = $0 as? FlamingoError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try rt.embedding(tokens: [0, 3], table: w, into: CLView(b)))
    }

    // MARK: matrix products

    func testLinear() throws {
        let rt = try runtime()
        // (rows, in, out): sizes off the 64×64×16 tile and the GEMV's 4-wide loads, 1s, and a large one.
        let shapes = [(1, 1, 1), (1, 17, 33), (3, 130, 7), (4, 64, 64), (2, 1001, 5),
                      (5, 17, 33), (64, 64, 64), (65, 130, 67), (130, 300, 200), (7, 1, 3)]
        for (m, k, n) in shapes {
            for type in [CLWeightType.f32, .f16, .bf16] {
                // plain; bias + strided x/y; alpha + accumulate; bias + GELU; QuickGELU + alpha + accumulate
                for variant in 0..<5 {
                    let w = weights(n * k, type)
                    let W = try deviceWeight(rt, w, type, rows: n, cols: k)
                    let ldx = variant == 1 ? k + 3 : k, ldy = variant == 1 ? n + 5 : n
                    let x = random(m * ldx), b = random(n), y0 = random(m * ldy)
                    let bias: [Float]? = variant == 1 || variant == 3 ? b : nil
                    let alpha: Float = variant == 2 || variant == 4 ? 0.37 : 1
                    let acc = variant == 2 || variant == 4
                    let act: OpenCLRuntime.Activation = variant == 3 ? .gelu : variant == 4 ? .quickGELU : .none
                    func activate(_ v: Double) -> Double {
                        switch act {
                        case .none: return v
                        case .gelu: return 0.5 * v * (1 + erf(v / 2.0.squareRoot()))
                        case .quickGELU: return v / (1 + exp(-1.702 * v))
                        }
                    }
                    // CPU reference on dense copies.
                    var xd = [Float](), ref = [Float](repeating: 0, count: m * n)
                    for r in 0..<m { xd += x[(r * ldx)..<(r * ldx + k)] }
                    linear(xd, m: m, matrix(w.floats, rows: n, cols: k), bias: bias.map { matrix($0, rows: 1, cols: n) }, into: &ref)
                    var want = acc ? y0.map(Double.init) : [Double](repeating: .nan, count: m * ldy)
                    for r in 0..<m { for j in 0..<n {
                        want[r * ldy + j] = (acc ? want[r * ldy + j] : 0) + Double(alpha) * activate(Double(ref[r * n + j]))
                    } }
                    for kernel in [OpenCLRuntime.LinearKernel.gemm, .gemv] where kernel == .gemm || m <= OpenCLRuntime.gemvMaxRows {
                        let xb = try rt.buffer(x)
                        let out = try guarded(rt, m * ldy, initial: acc ? y0 : (variant == 1 ? want.map { _ in Float(-7) } : nil))
                        try rt.linear(CLView(xb, stride: ldx), rows: m, W, bias: try bias.map { CLView(try rt.buffer($0)) },
                                      into: out.view(stride: ldy), alpha: alpha, accumulate: acc, activation: act,
                                      kernel: kernel)
                        var got = try values(rt, out, "linear")
                        var wantDense = want
                        if variant == 1 {   // the gaps between rows must be untouched
                            for r in 0..<m { for j in n..<ldy {
                                XCTAssertEqual(got[r * ldy + j], -7, "linear wrote into the row gap")
                                got[r * ldy + j] = 0; wantDense[r * ldy + j] = 0
                            } }
                        }
                        check(got, wantDense, max: Self.matmul, "linear \(kernel) m=\(m) k=\(k) n=\(n) \(type) variant \(variant)")
                    }
                }
            }
        }
    }

    /// Affine-quantized weights (gemv_affine, gemm_affine) against the CPU
    /// product of the same weight dequantized to f32: every bits/group, sizes
    /// off the tiles, 1–4 rows (GEMV) and more (GEMM), bias + alpha + accumulate.
    func testLinearAffine() throws {
        let rt = try runtime()
        var state: UInt32 = 11
        func code(_ levels: Int) -> Int { state = state &* 1_664_525 &+ 1_013_904_223; return Int(state >> 8) % (levels + 1) }
        for bits in [4, 8] { for group in [32, 64, 128] {
            for (m, groups, n) in [(1, 1, 33), (3, 2, 7), (4, 5, 65), (5, 1, 33), (65, 3, 67), (130, 2, 70)] {
                let k = group * groups, levels = (1 << bits) - 1
                let codes = (0..<(n * k)).map { _ in code(levels) }
                var words = [UInt32](repeating: 0, count: n * k * bits / 32)
                for (i, q) in codes.enumerated() { words[i * bits / 32] |= UInt32(q) << UInt32((i % (32 / bits)) * bits) }
                let scales = random(n * groups).map { abs($0) * 0.05 + 0.001 }, biases = random(n * groups).map { $0 * 0.1 }
                let dense = (0..<(n * k)).map { i in scales[i / k * groups + (i % k) / group] * Float(codes[i]) + biases[i / k * groups + (i % k) / group] }
                let W = try words.withUnsafeBytes {
                    try rt.weight(packed: $0, scales: scales, biases: biases, bits: bits, group: group, rows: n, cols: k)
                }
                for variant in 0..<2 {  // plain; bias + alpha + accumulate
                    let x = random(m * k), b = random(n), y0 = random(m * n)
                    var ref = [Float](repeating: 0, count: m * n)
                    linear(x, m: m, matrix(dense, rows: n, cols: k), bias: variant == 1 ? matrix(b, rows: 1, cols: n) : nil, into: &ref)
                    let want = (0..<(m * n)).map { variant == 1 ? Double(y0[$0]) + 0.5 * Double(ref[$0]) : Double(ref[$0]) }
                    for kernel in [OpenCLRuntime.LinearKernel.gemm, .gemv] where kernel == .gemm || m <= OpenCLRuntime.gemvMaxRows {
                        let out = try guarded(rt, m * n, initial: variant == 1 ? y0 : nil)
                        try rt.linear(CLView(try rt.buffer(x)), rows: m, W, bias: variant == 1 ? CLView(try rt.buffer(b)) : nil,
                                      into: out.view(stride: n), alpha: variant == 1 ? 0.5 : 1, accumulate: variant == 1, kernel: kernel)
                        check(try values(rt, out, "linear affine"), want, max: Self.matmul,
                              "linear affine q\(bits) g\(group) \(kernel) m=\(m) k=\(k) n=\(n) variant \(variant)")
                    }
                }
            }
        } }
        // A weight whose scales are too short for its rows is refused before any launch.
        var bad = try [UInt32](repeating: 0, count: 8).withUnsafeBytes {
            try rt.weight(packed: $0, scales: [1, 1], biases: [0, 0], bits: 4, group: 32, rows: 2, cols: 32)
        }
        bad.rows = 3
        XCTAssertThrowsError(try rt.linear(CLView(try rt.buffer(random(32))), rows: 1, bad, into: CLView(try rt.buffer(random(3)))))
    }

    /// The tensor-core GEMM (kernels/opencl/mma.cl; its mma emulated off
    /// NVIDIA with the PTX fragment layout): x rounded to the weight's 16-bit
    /// type, then exact up to f32 accumulation, so the reference rounds x
    /// too and the threshold is tight. Sizes off the 64×64×16 tile, K tails,
    /// strides, bias, alpha/accumulate, the activation epilogue.
    func testLinearTensorCores() throws {
        let rt = try runtime()
        func round(_ v: Float, _ type: CLWeightType) -> Float {
            if type == .f16 { return Float(Float16(v)) }
            let u = v.bitPattern
            return Float(bitPattern: (u &+ 0x7FFF &+ ((u >> 16) & 1)) & 0xFFFF_0000)
        }
        for (m, k, n) in [(5, 17, 33), (64, 16, 64), (65, 130, 67), (130, 33, 9), (7, 1, 70)] {
            for type in [CLWeightType.f16, .bf16] {
                for variant in 0..<2 {  // plain; strided x/y + bias + GELU + alpha + accumulate
                    let w = weights(n * k, type)
                    let W = try deviceWeight(rt, w, type, rows: n, cols: k)
                    let ldx = variant == 1 ? k + 3 : k, ldy = variant == 1 ? n + 2 : n
                    let x = random(m * ldx), b = random(n), y0 = random(m * ldy)
                    var want = variant == 1 ? y0.map(Double.init) : [Double](repeating: 0, count: m * ldy)
                    for r in 0..<m { for j in 0..<n {
                        var v = 0.0
                        for c in 0..<k { v += Double(round(x[r * ldx + c], type)) * Double(w.floats[j * k + c]) }
                        if variant == 1 {
                            v += Double(b[j])
                            v = 0.37 * (0.5 * v * (1 + erf(v / 2.0.squareRoot())))
                        }
                        want[r * ldy + j] += v
                    } }
                    let out = try guarded(rt, m * ldy, initial: variant == 1 ? y0 : nil)
                    try rt.linear(CLView(try rt.buffer(x), stride: ldx), rows: m, W,
                                  bias: variant == 1 ? CLView(try rt.buffer(b)) : nil, into: out.view(stride: ldy),
                                  alpha: variant == 1 ? 0.37 : 1, accumulate: variant == 1,
                                  activation: variant == 1 ? .gelu : .none, kernel: .tensorCores)
                    var got = try values(rt, out, "tensor cores")
                    if variant == 0 { for r in 0..<m { for j in n..<ldy { got[r * ldy + j] = 0 } } }
                    check(got, want, max: 1e-10, "tensor cores m=\(m) k=\(k) n=\(n) \(type) variant \(variant)")
                }
            }
        }
        let w32 = try rt.weight([1, 2], rows: 1, cols: 2)
        XCTAssertThrowsError(try rt.linear(CLView(try rt.buffer([Float](repeating: 0, count: 10))), rows: 5, w32,
                                           into: CLView(try rt.buffer(floats: 5)), kernel: .tensorCores))
        XCTAssertFalse(try rt.tensorCoresVerified(), "only NVIDIA platforms use the tensor-core kernel by themselves")
    }

    /// A long GEMV row (K not a multiple of 4) and a wide output.
    func testGEMVLongRows() throws {
        let rt = try runtime()
        for (k, n, type) in [(4099, 3, CLWeightType.f32), (4099, 3, .f16), (2048, 515, .bf16)] {
            let w = weights(n * k, type, scale: 0.05), x = random(k)
            let W = try deviceWeight(rt, w, type, rows: n, cols: k)
            var ref = [Float](repeating: 0, count: n)
            linear(x, m: 1, matrix(w.floats, rows: n, cols: k), into: &ref)
            let out = try guarded(rt, n)
            try rt.linear(CLView(try rt.buffer(x)), rows: 1, W, into: out.view)
            check(try values(rt, out, "gemv"), ref, max: Self.matmul, "gemv k=\(k) n=\(n) \(type)")
        }
    }

    // MARK: norms and element-wise

    func testNorms() throws {
        let rt = try runtime()
        for (rows, dim) in [(1, 1), (3, 17), (2, 128), (5, 1000), (1, 4099)] {
            let ld = dim + 2
            let x = random(rows * ld, scale: 3), g = random(dim), b = random(dim)
            var dense = [Float]()
            for r in 0..<rows { dense += x[(r * ld)..<(r * ld + dim)] }
            let gb = try rt.buffer(g), bb = try rt.buffer(b)
            for (weight, bias) in [(true, true), (true, false), (false, false)] {
                var ref = [Float](repeating: 0, count: rows * dim)
                layerNorm(dense, rows: rows, dim: dim, weight: weight ? matrix(g, rows: 1, cols: dim) : nil,
                          bias: bias ? matrix(b, rows: 1, cols: dim) : nil, eps: 1e-5, into: &ref)
                let out = try guarded(rt, rows * dim)
                try rt.layerNorm(CLView(try rt.buffer(x), stride: ld), rows: rows, dim: dim,
                                 weight: weight ? CLView(gb) : nil, bias: bias ? CLView(bb) : nil, eps: 1e-5,
                                 into: out.view(stride: dim))
                check(try values(rt, out, "layerNorm"), ref, max: Self.elementwise, "layerNorm \(rows)×\(dim) w=\(weight) b=\(bias)")
            }
            // In place on strided rows.
            let io = try guarded(rt, rows * ld, initial: x)
            try rt.layerNorm(io.view(stride: ld), rows: rows, dim: dim, weight: CLView(gb), bias: CLView(bb), eps: 1e-5,
                             into: io.view(stride: ld))
            var ref = [Float](repeating: 0, count: rows * dim)
            layerNorm(dense, rows: rows, dim: dim, weight: matrix(g, rows: 1, cols: dim), bias: matrix(b, rows: 1, cols: dim),
                      eps: 1e-5, into: &ref)
            let got = try values(rt, io, "layerNorm in place")
            check((0..<rows).flatMap { got[($0 * ld)..<($0 * ld + dim)] }, ref, max: Self.elementwise, "layerNorm in place \(rows)×\(dim)")

            var rref = [Float](repeating: 0, count: rows * dim)
            rmsNorm(dense, rows: rows, dim: dim, weight: matrix(g, rows: 1, cols: dim), eps: 1e-6, into: &rref)
            let out = try guarded(rt, rows * dim)
            try rt.rmsNorm(CLView(try rt.buffer(x), stride: ld), rows: rows, dim: dim, weight: CLView(gb), eps: 1e-6,
                           into: out.view(stride: dim))
            check(try values(rt, out, "rmsNorm"), rref, max: Self.elementwise, "rmsNorm \(rows)×\(dim)")
        }
    }

    func testSoftmaxRows() throws {
        let rt = try runtime()
        for (rows, n) in [(1, 1), (3, 17), (4, 129), (2, 3000)] {
            var x = random(rows * n, scale: 8)
            for i in stride(from: 0, to: x.count, by: 3) { x[i] = -.infinity }      // masked entries
            if rows > 2 { for j in 0..<n { x[2 * n + j] = -.infinity } }            // a fully masked row
            var ref = x
            for r in 0..<rows { ref.withUnsafeMutableBufferPointer { softmax($0.baseAddress! + r * n, count: n) } }
            let io = try guarded(rt, rows * n, initial: x)
            try rt.softmaxRows(io.view(stride: n), rows: rows, cols: n)
            let got = try values(rt, io, "softmax")
            check(got, ref, max: 1e-6 * 1e-6, "softmax \(rows)×\(n)")
            for r in 0..<rows where x[(r * n)..<((r + 1) * n)].contains(where: { $0 != -.infinity }) {
                for j in 0..<n where x[r * n + j] == -.infinity { XCTAssertEqual(got[r * n + j], 0, "masked entries are exactly 0") }
            }
        }
    }

    func testElementwise() throws {
        let rt = try runtime()
        for (rows, cols) in [(1, 1), (1, 17), (3, 65), (2, 5000)] {
            let ld = cols + 1
            let x = random(rows * ld, scale: 6), u = random(rows * ld, scale: 2), y0 = random(rows * cols)
            func dense(_ a: [Float]) -> [Float] { (0..<rows).flatMap { a[($0 * ld)..<($0 * ld + cols)] } }
            let xd = dense(x), ud = dense(u)
            let xb = try rt.buffer(x), ub = try rt.buffer(u)
            let xv = CLView(xb, stride: ld), uv = CLView(ub, stride: ld)

            func run(_ name: String, initial: [Float]? = nil, _ ref: [Double], _ op: (CLView) throws -> Void) throws {
                let out = try guarded(rt, rows * cols, initial: initial)
                try op(out.view(stride: cols))
                check(try values(rt, out, name), ref, max: Self.elementwise, "\(name) \(rows)×\(cols)")
            }
            var g = xd
            gelu(&g, count: g.count)
            try run("gelu", g.map(Double.init)) { try rt.gelu(xv, rows: rows, cols: cols, into: $0) }
            try run("gelu double", xd.map { 0.5 * Double($0) * erfc(-Double($0) / 2.0.squareRoot()) }) {
                try rt.gelu(xv, rows: rows, cols: cols, into: $0)
            }
            var q = xd
            quickGELU(&q, count: q.count)
            try run("quickGELU", q.map(Double.init)) { try rt.quickGELU(xv, rows: rows, cols: cols, into: $0) }
            var s = xd
            swiGLU(&s, ud, count: s.count)
            try run("swiGLU", s.map(Double.init)) { try rt.swiGLU(gate: xv, up: uv, rows: rows, cols: cols, into: $0) }
            try run("axpy", initial: y0, (0..<y0.count).map { Double(y0[$0]) + Double(Float(0.3) * xd[$0]) }) {
                try rt.axpy(0.3, xv, into: $0, rows: rows, cols: cols)
            }
            try run("add", initial: y0, (0..<y0.count).map { Double(y0[$0] + xd[$0]) }) {
                try rt.add(xv, into: $0, rows: rows, cols: cols)
            }
            try run("scale", xd.map { Double(Float(-1.5) * $0) }) { try rt.scale(xv, rows: rows, cols: cols, by: -1.5, into: $0) }
            try run("copyRows", xd.map(Double.init)) { try rt.copyRows(xv, into: $0, rows: rows, cols: cols) }
            let second = try guarded(rt, rows * cols)
            try run("copyRows pair", xd.map(Double.init)) {
                try rt.copyRows(xv, into: $0, and: uv, into: second.view(stride: cols), rows: rows, cols: cols)
            }
            check(try values(rt, second, "copyRows pair"), ud.map(Double.init), max: 0, "copyRows pair, second")
            // In place (into: nil) on the strided input.
            let io = try guarded(rt, rows * ld, initial: x)
            try rt.gelu(io.view(stride: ld), rows: rows, cols: cols)
            let got = try values(rt, io, "gelu in place")
            check(dense(got), g.map(Double.init), max: Self.elementwise, "gelu in place")
            XCTAssertEqual((0..<rows).map { got[$0 * ld + cols] }, (0..<rows).map { x[$0 * ld + cols] }, "row gaps untouched")
        }
    }

    func testEmbedding() throws {
        let rt = try runtime()
        for (vocab, dim) in [(1, 1), (37, 65), (500, 300)] {
            for type in [CLWeightType.f32, .f16, .bf16] {
                let w = weights(vocab * dim, type)
                let table = try deviceWeight(rt, w, type, rows: vocab, cols: dim)
                let tokens = [0, vocab - 1, vocab / 2, 0, vocab - 1].prefix(vocab == 1 ? 2 : 5)
                let out = try guarded(rt, tokens.count * dim)
                try rt.embedding(tokens: Array(tokens), table: table, into: out.view(stride: dim))
                let want = tokens.flatMap { w.floats[($0 * dim)..<(($0 + 1) * dim)] }
                XCTAssertEqual(try values(rt, out, "embedding"), want, "embedding \(vocab)×\(dim) \(type) is exact")
                // Device ids outside the table give zero rows, never a stray read.
                let bad = try rt.buffer([Int32(-1), Int32(vocab)])
                let z = try guarded(rt, 2 * dim)
                try rt.embedding(ids: CLView(bad), count: 2, table: table, into: z.view(stride: dim))
                XCTAssertEqual(try values(rt, z, "embedding bad ids"), [Float](repeating: 0, count: 2 * dim))
            }
        }
        let table = try rt.weight([1, 2], rows: 2, cols: 1)
        XCTAssertThrowsError(try rt.embedding(tokens: [2], table: table, into: CLView(try rt.buffer(floats: 4))))
    }

    func testRotary() throws {
        let rt = try runtime()
        // Against applyRotary over a cache with left padding (pads sit at position 1).
        for (heads, hd, dims, rows) in [(1, 2, 2, 1), (3, 10, 6, 5), (4, 64, 64, 9), (2, 80, 20, 3)] {
            let ld = heads * hd + 7
            let cache = KVCache(layers: 1, capacity: 64, width: 1)
            _ = try cache.append(valid: [false, false, true])
            let start = try cache.append(valid: [Bool](repeating: true, count: rows))
            let seg = BatchSegment(rows: 0..<rows, start: start, cache: cache)
            let x = random(rows * ld, scale: 2)
            var ref = x
            ref.withUnsafeMutableBufferPointer {
                applyRotary($0.baseAddress!, stride: ld, segment: seg, heads: heads, headDim: hd, dims: dims, theta: 10000)
            }
            let io = try guarded(rt, rows * ld, initial: x)
            try rt.rotary(io.view(stride: ld), rows: rows, heads: heads, headDim: hd, dims: dims, theta: 10000,
                          positions: Array(cache.positions[start...]))
            check(try values(rt, io, "rotary"), ref, max: Self.elementwise, "rotary h=\(heads) hd=\(hd) dims=\(dims)")
        }
        // Long-context positions against a double reference of the same f32 angles.
        let heads = 2, hd = 128, positions = [0, 1, 2047, 4095, 30000]
        let x = random(positions.count * heads * hd)
        var want = x.map(Double.init)
        for (r, p) in positions.enumerated() { for i in 0..<(hd / 2) {
            let angle = Double(Float(p) * (1 / powf(500000, Float(2 * i) / Float(hd))))
            for h in 0..<heads {
                let o = r * heads * hd + h * hd, a = Double(x[o + i]), b = Double(x[o + i + hd / 2])
                want[o + i] = a * cos(angle) - b * sin(angle)
                want[o + i + hd / 2] = b * cos(angle) + a * sin(angle)
            }
        } }
        let io = try guarded(rt, x.count, initial: x)
        try rt.rotary(io.view(stride: heads * hd), rows: positions.count, heads: heads, headDim: hd, dims: hd, theta: 500000,
                      positions: CLView(try rt.buffer(positions.map { Int32($0) })))
        check(try values(rt, io, "rotary long"), want, max: Self.elementwise, "rotary at long positions")
    }

    // MARK: attention

    /// CPU attentionBlock over host arrays (k and v in one [nk, ldkv] array).
    func cpuAttention(q: [Float], ldq: Int, kv: [Float], ldkv: Int, vOffset: Int, nq: Int, nk: Int, heads: Int, kvHeads: Int,
                      hd: Int, scale: Float, slopes: [Float]?, queryPos: @escaping (Int) -> Int, valid: [Bool]?,
                      select: @escaping (Int) -> KeySelection) -> [Float] {
        var out = [Float](repeating: 0, count: nq * heads * hd)
        let ws = Workspace()
        let flags = valid ?? []
        q.withUnsafeBufferPointer { qp in kv.withUnsafeBufferPointer { kvp in flags.withUnsafeBufferPointer { vp in
            out.withUnsafeMutableBufferPointer { op in
                attentionBlock(q: qp.baseAddress!, qStride: ldq, k: kvp.baseAddress!, v: kvp.baseAddress! + vOffset, kvStride: ldkv,
                               nq: nq, nk: nk, heads: heads, kvHeads: kvHeads, headDim: hd, scale: scale, alibiSlopes: slopes,
                               queryPos: queryPos, keyValid: valid == nil ? nil : vp.baseAddress, select: select,
                               out: op.baseAddress!, outStride: heads * hd, ws: ws)
            }
        } } }
        return out
    }

    func testCausalAttention() throws {
        let rt = try runtime()
        // (query rows, cached rows before them, heads, kv heads, head dim)
        for (nq, start, heads, kvHeads, hd) in [(1, 0, 1, 1, 1), (5, 0, 4, 2, 32), (3, 37, 2, 2, 80), (70, 10, 4, 1, 64),
                                                (2, 130, 1, 1, 256), (9, 3, 6, 3, 17)] {
            for (alibi, padded) in [(false, false), (true, true)] {
                let nk = start + nq, kvw = kvHeads * hd, ldq = heads * hd + 3
                let q = random(nq * ldq), k = random(nk * kvw, scale: 2), v = random(nk * kvw)
                let slopes: [Float]? = alibi ? (0..<heads).map { powf(2, -8 * Float($0 + 1) / Float(heads)) } : nil
                // Left padding: the first keys are pads; with start 0 the first query row sees only pads.
                let valid: [Bool]? = padded ? (0..<nk).map { $0 >= 2 } : nil
                let want = cpuAttention(q: q, ldq: ldq, kv: k + v, ldkv: kvw, vOffset: nk * kvw, nq: nq, nk: nk, heads: heads,
                                        kvHeads: kvHeads, hd: hd, scale: 1 / Float(hd).squareRoot(), slopes: slopes,
                                        queryPos: { start + $0 }, valid: valid, select: { .range(0..<(start + $0 + 1)) })
                let qb = try rt.buffer(q), kb = try rt.buffer(k), vb = try rt.buffer(v)
                let slopeView = try slopes.map { CLView(try rt.buffer($0)) }
                let validView = try valid.map { CLView(try rt.buffer($0.map { UInt8($0 ? 1 : 0) })) }
                for kernel in [OpenCLRuntime.AttentionKernel.rowwise, .tiled] where kernel == .rowwise || hd <= 128 {
                    let out = try guarded(rt, nq * heads * hd)
                    try rt.attention(q: CLView(qb, stride: ldq), k: CLView(kb, stride: kvw), v: CLView(vb, stride: kvw),
                                     out: out.view(stride: heads * hd), queries: nq, keys: nk, heads: heads, kvHeads: kvHeads,
                                     headDim: hd, scale: 1 / Float(hd).squareRoot(), alibiSlopes: slopeView, keyValid: validView,
                                     mask: .causal(start: start), kernel: kernel)
                    check(try values(rt, out, "attention"), want, max: Self.matmul,
                          "causal attention \(kernel) nq=\(nq) start=\(start) heads=\(heads)/\(kvHeads) hd=\(hd) alibi=\(alibi) padded=\(padded)")
                }
            }
        }
    }

    func testCrossAttention() throws {
        let rt = try runtime()
        // Visual tokens: T media × n latents, K and V interleaved per row as MediaKV.
        for (media, latents, heads, hd, nq) in [(1, 1, 1, 8, 1), (3, 5, 2, 64, 7), (2, 64, 8, 64, 12), (4, 33, 3, 100, 9)] {
            let nk = media * latents, inner = heads * hd
            let q = random(nq * inner), kv = random(nk * 2 * inner, scale: 2)
            // text_time per row: 0 (none), 1...media (that image), media+1 (uniform).
            let times = (0..<nq).map { $0 % (media + 2) }
            let select: (Int) -> KeySelection = { i in
                let t = times[i]
                return t == 0 ? .none : t <= media ? .range(((t - 1) * latents)..<(t * latents)) : .uniform
            }
            let want = cpuAttention(q: q, ldq: inner, kv: kv, ldkv: 2 * inner, vOffset: inner, nq: nq, nk: nk, heads: heads,
                                    kvHeads: heads, hd: hd, scale: 1 / Float(hd).squareRoot(), slopes: nil,
                                    queryPos: { $0 }, valid: nil, select: select)
            let kvb = try rt.buffer(kv), qb = try rt.buffer(q)
            let out = try guarded(rt, nq * inner)
            try rt.crossAttention(q: CLView(qb, stride: inner), k: CLView(kvb, stride: 2 * inner),
                                  v: CLView(kvb, offset: inner, stride: 2 * inner), out: out.view(stride: inner),
                                  queries: nq, keys: nk, heads: heads, headDim: hd, scale: 1 / Float(hd).squareRoot(),
                                  select: (0..<nq).map(select))
            let got = try values(rt, out, "crossAttention")
            check(got, want, max: Self.matmul, "cross attention media=\(media) latents=\(latents) heads=\(heads) hd=\(hd)")
            for i in 0..<nq where times[i] == 0 {
                XCTAssertEqual(Array(got[(i * inner)..<((i + 1) * inner)]), [Float](repeating: 0, count: inner), "row before any image is zero")
            }
            // The other kernel on the same selections (device-side, reusable across layers).
            let sel = try rt.buffer(OpenCLRuntime.encodeSelections((0..<nq).map(select)))
            for kernel in [OpenCLRuntime.AttentionKernel.rowwise, .tiled] where kernel == .rowwise || hd <= 128 {
                let out2 = try guarded(rt, nq * inner)
                try rt.attention(q: CLView(qb, stride: inner), k: CLView(kvb, stride: 2 * inner),
                                 v: CLView(kvb, offset: inner, stride: 2 * inner), out: out2.view(stride: inner),
                                 queries: nq, keys: nk, heads: heads, kvHeads: heads, headDim: hd,
                                 scale: 1 / Float(hd).squareRoot(), mask: .selections(CLView(sel), positionBase: 0), kernel: kernel)
                check(try values(rt, out2, "attention selections"), want, max: Self.matmul, "cross attention \(kernel) media=\(media)")
            }
        }
    }

    func testDecodeAttention() throws {
        let rt = try runtime()
        for (nk, heads, kvHeads, hd) in [(1, 1, 1, 1), (63, 4, 4, 64), (65, 8, 2, 64), (300, 2, 1, 128), (1000, 4, 4, 80)] {
            for (alibi, padding) in [(false, 0), (true, 3), (false, nk)] {   // nk pads: every key masked
                let kvw = kvHeads * hd, ld = kvw + 4, scale = 1 / Float(hd).squareRoot()
                let q = random(heads * hd), k = random(nk * ld, scale: 2), v = random(nk * ld)
                let slopes: [Float]? = alibi ? (0..<heads).map { powf(2, -Float($0 + 1)) } : nil
                let valid = (0..<nk).map { $0 >= padding }
                // CPU: attendRow per head, as causalSelfAttention decodes.
                var want = [Float](repeating: 0, count: heads * hd)
                var scores = [Float](repeating: 0, count: nk)
                for h in 0..<heads {
                    let off = (h / (heads / kvHeads)) * hd
                    q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                        valid.withUnsafeBufferPointer { vv in scores.withUnsafeMutableBufferPointer { sp in
                            want.withUnsafeMutableBufferPointer { wp in
                                attendRow(q: qp.baseAddress! + h * hd, k: kp.baseAddress! + off, v: vp.baseAddress! + off, stride: ld,
                                          headDim: hd, keys: 0..<nk, scale: scale, alibiSlope: slopes?[h] ?? 0, queryPos: nk - 1,
                                          keyValid: vv.baseAddress, scores: sp.baseAddress!, out: wp.baseAddress! + h * hd)
                            }
                        } }
                    } } }
                }
                let kb = try rt.buffer(k), vb = try rt.buffer(v), qb = try rt.buffer(q)
                let slopeView = try slopes.map { CLView(try rt.buffer($0)) }
                let validView = CLView(try rt.buffer(valid.map { UInt8($0 ? 1 : 0) }))
                for splits in [nil, 1, 3, 64] as [Int?] {
                    let out = try guarded(rt, heads * hd)
                    try rt.decodeAttention(q: CLView(qb), k: CLView(kb, stride: ld), v: CLView(vb, stride: ld), out: out.view,
                                           keys: nk, heads: heads, kvHeads: kvHeads, headDim: hd, scale: scale,
                                           alibiSlopes: slopeView, keyValid: validView, position: nk - 1, splits: splits)
                    check(try values(rt, out, "decodeAttention"), want, max: Self.matmul,
                          "decode attention nk=\(nk) heads=\(heads)/\(kvHeads) hd=\(hd) alibi=\(alibi) pads=\(padding) splits=\(splits.map(String.init) ?? "auto")")
                }
                // The general kernel on one row gives the same.
                let out = try guarded(rt, heads * hd)
                try rt.attention(q: CLView(qb), k: CLView(kb, stride: ld), v: CLView(vb, stride: ld), out: out.view,
                                 queries: 1, keys: nk, heads: heads, kvHeads: kvHeads, headDim: hd, scale: scale,
                                 alibiSlopes: slopeView, keyValid: validView, mask: .causal(start: nk - 1))
                check(try values(rt, out, "attention 1 row"), want, max: Self.matmul, "1-row attention nk=\(nk)")
            }
        }
    }

    // MARK: perf mode

    /// FLAMINGO_OPS_PERF=1: µs/run and throughput for LLM-like shapes
    /// (OpenFlamingo-3B: hidden 2048 (MPT-1B) / 2560, 32 heads of 64-128,
    /// CLIP ViT-L 1024), printed, not asserted.
    func testPerf() throws {
        guard getenv("FLAMINGO_OPS_PERF").map({ String(cString: $0) }) == "1" else {
            throw XCTSkip("perf mode: set FLAMINGO_OPS_PERF=1")
        }
        let rt = try runtime()
        print("OpenCL op perf on \(rt.device.info.name) (\(rt.device.info.platformName), driver \(rt.device.info.driverVersion))")
        func time(_ name: String, bytes: Double = 0, flops: Double = 0, _ body: () throws -> Void) throws {
            try body(); try rt.finish()                              // warm-up (and kernel JIT)
            var t0 = now()
            try body(); try rt.finish()
            // As many runs as fit ~0.3 s, enqueued back to back as in a forward pass.
            let runs = max(1, min(200, Int(0.3 / max(now() - t0, 1e-6))))
            t0 = now()
            for _ in 0..<runs { try body() }
            try rt.finish()
            let us = (now() - t0) / Double(runs) * 1e6
            var line = "  \(name): \(String(format1: us)) µs/run"
            if bytes > 0 { line += ", \(String(format1: bytes / us / 1e3)) GB/s" }
            if flops > 0 { line += ", \(String(format1: flops / us / 1e3)) GFLOP/s" }
            print(line)
            fflush(stdout)
        }
        // Big weights tile one random block (values do not matter here, and
        // generating 100M random numbers in a debug build takes minutes).
        func big(_ n: Int, _ type: CLWeightType) -> (bits: [UInt16], floats: [Float]) {
            let block = weights(1 << 16, type, scale: 0.02)
            return type == .f32 ? ([], (0..<n).map { block.floats[$0 & 0xFFFF] }) : ((0..<n).map { block.bits[$0 & 0xFFFF] }, [])
        }
        let d = 2048, ff = 8192
        for type in [CLWeightType.f32, .f16, .bf16] {
            let w = try deviceWeight(rt, big(ff * d, type), type, rows: ff, cols: d)
            let x = try rt.buffer(big(512 * d, .f32).floats), y = try rt.buffer(floats: 512 * ff)
            for m in [1, 4] {
                try time("gemv \(type) \(m)×\(d) → \(ff)", bytes: Double(ff * d * type.byteSize + m * (d + ff) * 4),
                         flops: 2 * Double(m * ff * d)) {
                    try rt.linear(CLView(x), rows: m, w, into: CLView(y))
                }
            }
        }
        let rows = 64
        let a = try rt.buffer(big(rows * ff, .f32).floats), b = try rt.buffer(big(rows * ff, .f32).floats), g = try rt.buffer(random(ff))
        try time("layerNorm \(rows)×\(d)", bytes: Double(2 * rows * d * 4)) {
            try rt.layerNorm(CLView(a), rows: rows, dim: d, weight: CLView(g), bias: CLView(g), eps: 1e-5, into: CLView(b))
        }
        try time("rmsNorm \(rows)×\(d)", bytes: Double(2 * rows * d * 4)) {
            try rt.rmsNorm(CLView(a), rows: rows, dim: d, weight: CLView(g), eps: 1e-5, into: CLView(b))
        }
        try time("gelu \(rows)×\(ff)", bytes: Double(2 * rows * ff * 4)) { try rt.gelu(CLView(a), rows: rows, cols: ff, into: CLView(b)) }
        try time("swiGLU \(rows)×\(ff)", bytes: Double(3 * rows * ff * 4)) {
            try rt.swiGLU(gate: CLView(a), up: CLView(b), rows: rows, cols: ff, into: CLView(b))
        }
        try time("axpy \(rows)×\(d)", bytes: Double(3 * rows * d * 4)) { try rt.axpy(0.5, CLView(a), into: CLView(b), cols: rows * d) }
        try time("softmax \(rows)×\(d)", bytes: Double(2 * rows * d * 4)) { try rt.softmaxRows(CLView(b), rows: rows, cols: d) }
        let table = try deviceWeight(rt, big(50432 * d, .f16), .f16, rows: 50432, cols: d)
        let ids = try rt.buffer((0..<rows).map { Int32($0 * 700) })
        try time("embedding f16 \(rows)×\(d)", bytes: Double(rows * d * 6)) {
            try rt.embedding(ids: CLView(ids), count: rows, table: table, into: CLView(b))
        }
        let heads = 32, hd = 64, pos = try rt.buffer((0..<rows).map { Int32($0 + 100) })
        try time("rotary \(rows)×\(heads)×\(hd)", bytes: Double(2 * rows * heads * hd * 4)) {
            try rt.rotary(CLView(a), rows: rows, heads: heads, headDim: hd, dims: hd, theta: 10000, positions: CLView(pos))
        }
        for nk in [256, 2048] {
            let k = try rt.buffer(big(nk * heads * hd, .f32).floats), v = try rt.buffer(big(nk * heads * hd, .f32).floats)
            let q = try rt.buffer(random(rows * heads * hd)), o = try rt.buffer(floats: rows * heads * hd)
            try time("decode attention \(heads)×\(hd), \(nk) keys", bytes: Double(2 * nk * heads * hd * 4)) {
                try rt.decodeAttention(q: CLView(q), k: CLView(k), v: CLView(v), out: CLView(o), keys: nk, heads: heads,
                                       kvHeads: heads, headDim: hd, scale: 0.125, position: nk - 1)
            }
            try time("prefill attention \(rows) rows, \(heads)×\(hd), \(nk) keys", flops: 4 * Double(rows * nk * heads * hd)) {
                try rt.attention(q: CLView(q), k: CLView(k), v: CLView(v), out: CLView(o), queries: rows, keys: nk, heads: heads,
                                 kvHeads: heads, headDim: hd, scale: 0.125, mask: .causal(start: nk - rows))
            }
        }
        // Prefill / vision shapes last: slowest on a CPU device.
        for type in [CLWeightType.f32, .f16] {
            let w = try deviceWeight(rt, big(ff * d, type), type, rows: ff, cols: d)
            let x = try rt.buffer(big(512 * d, .f32).floats), y = try rt.buffer(floats: 512 * ff)
            for m in [64, 512] {
                try time("gemm \(type) \(m)×\(d) → \(ff)", flops: 2 * Double(m * ff * d)) {
                    try rt.linear(CLView(x), rows: m, w, into: CLView(y))
                }
            }
        }
    }
}

/// The repository root (this file is Tests/FlamingoCoreTests/OpenCLOpTests.swift).
private let repoRoot: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
}()

private func listDirectory(_ path: String) throws -> [String] {
    guard let d = opendir(path) else { throw FlamingoError.io("cannot list \(path)") }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

private func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

private extension String {
    /// One decimal place, without Foundation's String(format:).
    init(format1 v: Double) {
        let t = (v * 10).rounded() / 10
        self = t >= 100 ? String(Int(t)) : String(t)
    }
}
