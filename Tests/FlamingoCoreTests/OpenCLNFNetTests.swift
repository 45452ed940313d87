import Glibc
import XCTest
@testable import FlamingoCore

/// The NFNet's OpenCL ops (kernels/opencl/conv.cl, OpsConv.swift) in the
/// style of OpenCLOpTests: every kernel against a scalar double reference on
/// awkward sizes (maps 1×1, 5×7, 13×11; channels 3 … 48; groups of 8 and 12
/// channels; stride 1 and 2), NMSE ≤ 1e-7 for the activation, pool, mean and
/// gated add and ≤ 5e-4 for convolutions; NaN fails. Inputs carry NaN in
/// their pixel and row gaps (a stray read poisons the result) and outputs are
/// written into a sentinel frame with gaps that must come back bit-identical,
/// their own elements starting as NaN. Then the whole device NFNet against
/// timm (nfnet_tiny) and the CPU encoder, and the NFNet Flamingo model on the
/// OpenCL backend against the CPU backend. Skipped without an OpenCL device.
final class OpenCLNFNetTests: XCTestCase {
    static let sentinel = OpenCLOpTests.sentinel
    static let unwritten = OpenCLOpTests.unwritten
    static let elementwise = 1e-7
    static let convolution = 5e-4
    var rng = OpenCLOpTests.Random(seed: 11)

    func runtime() throws -> OpenCLRuntime { try OpenCLOpTests.sharedRuntime() }
    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.next() * scale } }

    func nmse(_ a: [Float], _ b: [Double]) -> Double {
        var err = 0.0, ref = 0.0
        for (x, y) in zip(a, b) {
            if !x.isFinite { return .infinity }
            err += (Double(x) - y) * (Double(x) - y)
            ref += y * y
        }
        return ref == 0 ? err : err / ref
    }

    @discardableResult
    func check(_ a: [Float], _ b: [Double], max: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) -> Double {
        XCTAssertEqual(a.count, b.count, "\(what): size", file: file, line: line)
        let e = nmse(a, b)
        XCTAssertLessThanOrEqual(e, max, "\(what): NMSE \(e)", file: file, line: line)
        return e
    }

    /// Worst NMSE seen per op family (printed at the end of each test).
    var worst: [String: Double] = [:]
    func note(_ family: String, _ e: Double) { worst[family] = Swift.max(worst[family] ?? 0, e) }
    override func tearDown() {
        for (k, v) in worst.sorted(by: { $0.key < $1.key }) { print("OpenCL NFNet worst NMSE \(k): \(v)") }
        super.tearDown()
    }

    // MARK: planes with gaps

    /// A device input plane holding dense [h, w, c] `values` with a channel gap, a row gap and a
    /// leading offset (NaN in every gap), or planar [c, h, w] when `chw`.
    func inputPlane(_ rt: OpenCLRuntime, _ values: [Float], h: Int, w: Int, c: Int, chw: Bool = false) throws -> CLPlane {
        if chw {
            var host = [Float](repeating: .nan, count: 5 + c * h * w)
            for y in 0..<h { for x in 0..<w { for ch in 0..<c { host[5 + (ch * h + y) * w + x] = values[(y * w + x) * c + ch] } } }
            return CLPlane.chw(try rt.buffer(host), offset: 5, h: h, w: w, c: c)
        }
        let pix = c + 3, row = w * pix + 5, off = 7
        var host = [Float](repeating: .nan, count: off + h * row + 3)
        for y in 0..<h { for x in 0..<w { for ch in 0..<c { host[off + y * row + x * pix + ch] = values[(y * w + x) * c + ch] } } }
        return CLPlane(try rt.buffer(host), offset: off, h: h, w: w, c: c, row: row, pix: pix)
    }

    /// An output plane inside an (h+2)×(w+2) frame of pixels with 2 spare channels, everything
    /// sentinel but the output's own elements (NaN); `dense` makes a plain packed plane between
    /// 16 sentinels on either side instead.
    struct Framed {
        let plane: CLPlane
        let total: Int
        let inside: (Int) -> Bool
    }

    func framed(_ rt: OpenCLRuntime, h: Int, w: Int, c: Int, dense: Bool = false, initial: [Float]? = nil) throws -> Framed {
        let pix = dense ? c : c + 2, fw = dense ? w : w + 2, fh = dense ? h : h + 2
        let pad = 16, off = dense ? pad : pad + fw * pix + pix, row = fw * pix
        let total = 2 * pad + fh * fw * pix
        var host = [Float](repeating: Self.sentinel, count: total)
        var mask = [Bool](repeating: false, count: total)
        for y in 0..<h { for x in 0..<w { for ch in 0..<c {
            let i = off + y * row + x * pix + ch
            host[i] = initial?[(y * w + x) * c + ch] ?? Self.unwritten
            mask[i] = true
        } } }
        return Framed(plane: CLPlane(try rt.buffer(host), offset: off, h: h, w: w, c: c, row: row, pix: pix),
                      total: total, inside: { mask[$0] })
    }

    /// The output as dense [h, w, c] after checking every element outside it.
    func values(_ rt: OpenCLRuntime, _ f: Framed, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws -> [Float] {
        let all = try rt.download(f.plane.buffer, count: f.total)
        let intact = (0..<f.total).allSatisfy { f.inside($0) || all[$0].bitPattern == Self.sentinel.bitPattern }
        XCTAssertTrue(intact, "\(what): wrote outside its output", file: file, line: line)
        return Self.dense(all, f.plane)
    }

    static func dense(_ all: [Float], _ p: CLPlane) -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(p.h * p.w * p.c)
        for y in 0..<p.h { for x in 0..<p.w { for ch in 0..<p.c { out.append(all[p.offset + y * p.row + x * p.pix + ch * p.channel]) } } }
        return out
    }

    // MARK: convolution

    func runConv(_ rt: OpenCLRuntime, h: Int, w: Int, cin: Int, cout: Int, k: Int = 3, stride: Int, groups: Int,
                 act: ConvActivation = .gelu, chw: Bool = false, dense: Bool = false, direct: Bool = false,
                 file: StaticString = #filePath, line: UInt = #line) throws {
        let what = "conv \(h)×\(w) \(cin)→\(cout) k\(k) s\(stride) g\(groups) \(act)\(chw ? " chw" : "")\(dense ? " dense" : "")\(direct ? " direct" : "")"
        let x = random(h * w * cin), wt = random(cout * (cin / groups) * k * k, scale: 0.5), bias = random(cout)
        let conv = try rt.conv(weight: wt, bias: bias, inChannels: cin, outChannels: cout, kernel: k, stride: stride,
                               groups: groups, direct: direct)
        XCTAssertEqual(conv.usesLinear, k == 1 && stride == 1 && groups == 1 && !direct, what, file: file, line: line)
        let scale: Float = act == .none ? 1 : 1.7
        let want = NFNetTests.convRef(x, h: h, w: w, cin: cin, wt, bias: bias, cout: cout, k: k, stride: stride,
                                      groups: groups, act: act, scale: Double(scale))
        let input: CLPlane
        if dense {
            input = CLPlane(try rt.buffer(x), h: h, w: w, c: cin)
        } else {
            input = try inputPlane(rt, x, h: h, w: w, c: cin, chw: chw)
        }
        let out = try framed(rt, h: want.oh, w: want.ow, c: cout, dense: dense)
        try rt.conv2d(input, conv, into: out.plane, activation: act, scale: scale)
        note(conv.usesLinear && dense ? "conv 1×1 (linear)" : "conv direct",
             check(try values(rt, out, what, file: file, line: line), want.out, max: Self.convolution, what, file: file, line: line))
    }

    func testConvolution() throws {
        let rt = try runtime()
        for (h, w) in [(1, 1), (5, 7), (13, 11)] {
            for stride in [1, 2] {
                // 3-channel stem convs (planar pixels and NHWC), odd widths, groups of 8 and 12 channels,
                // 8 → 12 channel groups (cin_g ≠ cout_g).
                for (cin, cout, groups, chw) in [(3, 16, 1, true), (3, 5, 1, false), (5, 24, 1, false), (16, 16, 2, false),
                                                 (16, 24, 2, false), (24, 24, 3, false), (33, 33, 1, false),
                                                 (32, 48, 4, false), (36, 24, 3, false)] {
                    try runConv(rt, h: h, w: w, cin: cin, cout: cout, stride: stride, groups: groups, chw: chw)
                }
            }
        }
        // Activations; 1×1 through linear (dense planes) and through the direct kernel (planes with
        // gaps fall back to it; or weights kept for it); a strided 1×1.
        for act in [ConvActivation.none, .geluTanh] {
            try runConv(rt, h: 5, w: 7, cin: 16, cout: 24, stride: 1, groups: 2, act: act)
            try runConv(rt, h: 13, w: 11, cin: 24, cout: 33, k: 1, stride: 1, groups: 1, act: act, dense: true)
        }
        for (h, w) in [(1, 1), (5, 7), (13, 11)] {
            for (cin, cout) in [(3, 16), (33, 24), (16, 5)] {
                try runConv(rt, h: h, w: w, cin: cin, cout: cout, k: 1, stride: 1, groups: 1, dense: true)
                try runConv(rt, h: h, w: w, cin: cin, cout: cout, k: 1, stride: 1, groups: 1)
                try runConv(rt, h: h, w: w, cin: cin, cout: cout, k: 1, stride: 1, groups: 1, dense: true, direct: true)
                try runConv(rt, h: h, w: w, cin: cin, cout: cout, k: 1, stride: 2, groups: 1)
            }
        }
        // A 7×7 stem conv and an even map with asymmetric SAME padding at stride 2.
        try runConv(rt, h: 13, w: 11, cin: 3, cout: 16, k: 7, stride: 2, groups: 1, chw: true)
        try runConv(rt, h: 8, w: 6, cin: 16, cout: 16, stride: 2, groups: 2)
    }

    func testConvValidation() throws {
        let rt = try runtime()
        let conv = try rt.conv(weight: random(16 * 8 * 9), bias: nil, inChannels: 16, outChannels: 16, kernel: 3, stride: 2, groups: 2)
        let x = CLPlane(try rt.buffer(floats: 5 * 7 * 16), h: 5, w: 7, c: 16)
        assertThrows(FlamingoError.invalidArgument, containing: "does not fit") {
            try rt.conv2d(x, conv, into: CLPlane(try rt.buffer(floats: 5 * 7 * 16), h: 5, w: 7, c: 16))
        }
        assertThrows(FlamingoError.invalidArgument, containing: "overruns") {
            try rt.conv2d(x, conv, into: CLPlane(try rt.buffer(floats: 3 * 4 * 16 - 1), h: 3, w: 4, c: 16))
        }
        assertThrows(FlamingoError.invalidArgument, containing: "not a valid convolution") {
            _ = try rt.conv(weight: random(16), bias: nil, inChannels: 4, outChannels: 6, kernel: 1, groups: 4)
        }
        assertThrows(FlamingoError.invalidArgument, containing: "weights") {
            _ = try rt.conv(weight: random(15), bias: nil, inChannels: 4, outChannels: 4, kernel: 1)
        }
    }

    // MARK: activation, pool, mean, gated add

    static let maps = [(1, 1), (1, 4), (5, 7), (4, 5), (13, 11)]
    static let channels = [3, 5, 16, 24, 33]

    func testActivation() throws {
        let rt = try runtime()
        for (h, w) in Self.maps {
            for c in Self.channels {
                var x = random(h * w * c, scale: 6)
                for (i, v) in [0, -0.0, 30, -30, 1e-20, -5.6].enumerated() where i < x.count { x[i] = Float(v) }
                for act in [ConvActivation.none, .gelu, .geluTanh] {
                    let what = "act \(act) \(h)×\(w)×\(c)"
                    let out = try framed(rt, h: h, w: w, c: c)
                    try rt.nfActivation(try inputPlane(rt, x, h: h, w: w, c: c), into: out.plane, act, scale: 1.7015)
                    let got = try values(rt, out, what)
                    let want = x.map { NFNetTests.actRef(Double($0), act) * 1.7015 }
                    note("activation", check(got, want, max: Self.elementwise, what))
                    // As the CPU kernel: |error| ≤ 1.1e-6 for GELU's erf approximation, 2e-7 relative elsewhere.
                    for (i, v) in got.enumerated() {
                        XCTAssertEqual(Double(v), want[i], accuracy: 2e-6 + 1e-6 * abs(want[i]), "\(what) x=\(x[i])")
                    }
                    // In place on a dense plane.
                    let d = CLPlane(try rt.buffer(x), h: h, w: w, c: c)
                    try rt.nfActivation(d, into: d, act, scale: 1.7015)
                    XCTAssertEqual(try rt.download(d.buffer, count: x.count), got, "\(what) in place")
                }
            }
        }
        for n in [1, 7, 64, 65, 1000] {
            let x = random(n)
            let g = try framed(rt, h: 1, w: 1, c: n, dense: true, initial: x)
            try rt.relu(CLView(g.plane.buffer, offset: g.plane.offset), count: n)
            check(try values(rt, g, "relu \(n)"), x.map { Double(max($0, 0)) }, max: 0, "relu \(n)")
        }
    }

    func testPoolMeanScaleAdd() throws {
        let rt = try runtime()
        for (h, w) in Self.maps + [(2, 2), (7, 2)] {
            for c in Self.channels {
                let x = random(h * w * c)
                let oh = (h + 1) / 2, ow = (w + 1) / 2
                var want: [Double] = []
                for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
                    var s = 0.0, n = 0.0
                    for y in (2 * oy)..<min(2 * oy + 2, h) { for xx in (2 * ox)..<min(2 * ox + 2, w) { s += Double(x[(y * w + xx) * c + ch]); n += 1 } }
                    want.append(s / n)
                } } }
                let pool = try framed(rt, h: oh, w: ow, c: c)
                try rt.averagePool2x2(try inputPlane(rt, x, h: h, w: w, c: c), into: pool.plane)
                note("pool", check(try values(rt, pool, "pool \(h)×\(w)×\(c)"), want, max: Self.elementwise, "pool \(h)×\(w)×\(c)"))

                let mean = try framed(rt, h: 1, w: 1, c: c, dense: true)
                try rt.channelMean(try inputPlane(rt, x, h: h, w: w, c: c), into: CLView(mean.plane.buffer, offset: mean.plane.offset))
                let wantMean = (0..<c).map { ch in (0..<(h * w)).reduce(0.0) { $0 + Double(x[$1 * c + ch]) } / Double(h * w) }
                note("mean", check(try values(rt, mean, "mean \(h)×\(w)×\(c)"), wantMean, max: Self.elementwise, "mean \(h)×\(w)×\(c)"))

                // out = h·g + shortcut, g = attn_gain·σ(se)·common or common; into a separate plane and in place.
                let hx = random(h * w * c), sc = random(h * w * c), se = random(c, scale: 4)
                let gain: Float = 2, common: Float = 0.37
                for withSE in [true, false] {
                    let what = "scale_add \(h)×\(w)×\(c) se=\(withSE)"
                    let g = (0..<c).map { withSE ? Double(gain) * (1 / (1 + exp(-Double(se[$0])))) * Double(common) : Double(common) }
                    let wantAdd = (0..<(h * w * c)).map { Double(sc[$0]) + Double(hx[$0]) * g[$0 % c] }
                    let seView = withSE ? CLView(try rt.buffer(se)) : nil
                    let out = try framed(rt, h: h, w: w, c: c)
                    try rt.scaleAdd(try inputPlane(rt, hx, h: h, w: w, c: c), se: seView, attnGain: gain, common: common,
                                    shortcut: try inputPlane(rt, sc, h: h, w: w, c: c), into: out.plane)
                    note("scale_add", check(try values(rt, out, what), wantAdd, max: Self.elementwise, what))
                    let inPlace = try framed(rt, h: h, w: w, c: c, initial: sc)
                    try rt.scaleAdd(try inputPlane(rt, hx, h: h, w: w, c: c), se: seView, attnGain: gain, common: common,
                                    shortcut: inPlace.plane, into: inPlace.plane)
                    note("scale_add", check(try values(rt, inPlace, what + " in place"), wantAdd, max: Self.elementwise, what + " in place"))
                }
            }
        }
        // Long sums stay accurate (squeeze-excite means over large feature maps).
        let n = 100_003, c = 5
        let mean = try rt.buffer(floats: c)
        try rt.channelMean(CLPlane(try rt.buffer([Float](repeating: 0.1, count: n * c)), h: 1, w: n, c: c), into: CLView(mean))
        for v in try rt.download(mean, count: c) { XCTAssertEqual(v, 0.1, accuracy: 2e-7) }
        let x = random(317 * 331 * c)
        try rt.channelMean(CLPlane(try rt.buffer(x), h: 317, w: 331, c: c), into: CLView(mean))
        let want = (0..<c).map { ch in (0..<(317 * 331)).reduce(0.0) { $0 + Double(x[$1 * c + ch]) } / Double(317 * 331) }
        for (i, v) in try rt.download(mean, count: c).enumerated() { XCTAssertEqual(Double(v), want[i], accuracy: 1e-6) }
    }

    // MARK: the whole encoder

    func tinyWeights() throws -> (SafetensorsFile, SafetensorsFile, NFNetConfig) {
        let dir = fixturesDir + "/nfnet_tiny"
        return (try SafetensorsFile(path: dir + "/model.safetensors"), try SafetensorsFile(path: dir + "/reference.safetensors"),
                try NFNetConfig(json: JSON.parse(NFNetTests.tinyJSON)))
    }

    /// nfnet_tiny on the device against timm (stem, every stage, features: max|Δ|/max|ref| ≤ 1e-4,
    /// as the CPU test) and against the CPU encoder.
    func testTinyMatchesTimmAndTheCPU() throws {
        let rt = try runtime()
        let (weights, ref, config) = try tinyWeights()
        for features in [NFNetConfig.Features.final, .lastStage] {
            var c = config
            c.features = features
            let device = try DeviceNFNet(rt: rt, config: c, prefix: "") { name in
                guard let t = weights.tensors[name] else { throw FlamingoError.notFound("no tensor named \(name)") }
                return t
            }
            let cpu = try NFNet(config: c, prefix: "", keepAlive: weights) { try XCTUnwrap(weights.tensors[$0]) }
            XCTAssertEqual(device.numPatches, 4)
            XCTAssertEqual(device.featureChannels, features == .final ? 256 : 128)
            let pixels = try XCTUnwrap(ref.tensors["input.pixels"])
            let images = pixels.shape[0], h = pixels.shape[2], w = pixels.shape[3]
            let all = Buffer(pixels.floats())
            let scratch = DeviceScratch(rt)
            var results: [String: NFNetTests.Comparison] = [:]
            for n in 0..<images {
                let tokens = try rt.buffer(floats: device.numPatches * device.featureChannels + 32)
                let out = CLView(tokens, offset: 16, stride: device.featureChannels)
                try rt.fill(tokens, with: Self.sentinel, count: 16)
                try rt.fill(tokens, with: Self.sentinel, at: 16 + device.numPatches * device.featureChannels, count: 16)
                try device.forward(all.p + n * 3 * h * w, height: h, width: w, into: out, scratch: scratch) { name, plane in
                    // Last-stage features are the stage-3 output itself.
                    guard let r = ref.tensors[name == "features" && features == .lastStage ? "stages.3" : name] else { return }
                    let host = Buffer(try rt.download(plane.buffer, count: plane.buffer.byteCount / 4))
                    let cmp = NFNetTests.compare(Plane(host.p + plane.offset, h: plane.h, w: plane.w, c: plane.c,
                                                       row: plane.row, pix: plane.pix), r, image: n)
                    let old = results[name] ?? NFNetTests.Comparison()
                    results[name] = NFNetTests.Comparison(maxDiff: max(old.maxDiff, cmp.maxDiff), maxRef: max(old.maxRef, cmp.maxRef))
                }
                let got = try rt.download(tokens, count: device.numPatches * device.featureChannels + 32)
                XCTAssertTrue(got.prefix(16).allSatisfy { $0.bitPattern == Self.sentinel.bitPattern }
                              && got.suffix(16).allSatisfy { $0.bitPattern == Self.sentinel.bitPattern }, "tokens: wrote outside")
                let feats = Array(got[16..<(got.count - 16)])
                let want = try cpu.features(all.p + n * 3 * h * w, height: h, width: w)
                let wantValues = (0..<want.count).map { Double(want[$0]) }
                let e = check(feats, wantValues, max: 1e-9, "\(features) features vs the CPU NFNet, image \(n)")
                let diff = zip(feats, wantValues).map { abs(Double($0) - $1) }.max() ?? 0
                let top = wantValues.map(abs).max() ?? 1
                print("OpenCL NFNet \(features) vs CPU image \(n): NMSE \(e), max|Δ|/max|ref| \(diff / top)")
                XCTAssertLessThanOrEqual(diff / top, 1e-5, "\(features) features vs the CPU NFNet")
            }
            XCTAssertEqual(Set(results.keys), ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "features"])
            for (k, v) in results.sorted(by: { $0.key < $1.key }) {
                print("OpenCL NFNet (\(features)) \(k) vs timm: max|Δ| \(v.maxDiff), max|ref| \(v.maxRef), ratio \(v.ratio)")
                XCTAssertLessThanOrEqual(v.ratio, 1e-4, "\(k): max|Δ| \(v.maxDiff), max|ref| \(v.maxRef)")
            }
        }
    }

    func testEncoderValidation() throws {
        let rt = try runtime()
        let (weights, _, config) = try tinyWeights()
        var wrong = config
        wrong.groupSize = 16
        assertThrows(FlamingoError.invalidFormat, containing: "stages.0.0.conv2.weight has shape") {
            _ = try DeviceNFNet(rt: rt, config: wrong, prefix: "") { try XCTUnwrap(weights.tensors[$0]) }
        }
        let device = try DeviceNFNet(rt: rt, config: config, prefix: "") { try XCTUnwrap(weights.tensors[$0]) }
        let pixels = [Float](repeating: 0, count: 3 * 48 * 48)
        let small = CLView(try rt.buffer(floats: 4 * 256 - 1), stride: 256)
        assertThrows(FlamingoError.invalidArgument, containing: "overruns") {
            try device(pixels, into: small, scratch: DeviceScratch(rt))
        }
        assertThrows(FlamingoError.invalidArgument, containing: "outside") {
            try device.forward(pixels, height: 0, width: 4, into: small, scratch: DeviceScratch(rt))
        }
    }

    /// The NFNet Flamingo model on the OpenCL backend encodes on the device (no host encoder)
    /// and its visual tokens match the CPU backend's (images and the 8-frame video).
    func testPaperModelEncodesOnTheDevice() throws {
        let rt = try runtime()
        let fx = try ReferenceTests.Fixture("flamingo_paper_tiny")
        let cpu = try Flamingo(fx.model), device = try Flamingo(fx.model, backend: .openCL(rt))
        XCTAssertNil(device.vision, "the OpenCL backend built a host vision encoder")
        XCTAssertTrue(device.device?.vision is DeviceNFNet)
        let pixels = try fx.r("input.pixels").floats()
        let per = pixels.count / PaperModelTests.framesPerMedia.reduce(0, +)
        let frames = Buffer(pixels)
        var at = 0
        for (m, count) in PaperModelTests.framesPerMedia.enumerated() {
            let ptrs = (0..<count).map { UnsafePointer(frames.p + (at + $0) * per) }
            let a = try cpu.encodeMedia(frames: ptrs, mediaIndex: m), b = try device.encodeMedia(frames: ptrs, mediaIndex: m)
            var diff: Float = 0, top: Float = 0
            for i in 0..<a.count { diff = max(diff, abs(a[i] - b[i])); top = max(top, abs(a[i])) }
            print("OpenCL NFNet paper model media \(m) (\(count) frames): max|Δ|/max|ref| \(diff / top)")
            XCTAssertLessThanOrEqual(diff / max(top, 1e-30), 1e-4, "media \(m)")
            at += count
        }
        // NFNet features (before the resampler) of every frame against the host encoder.
        let vc: NFNetConfig
        guard case .nfnet(let c) = fx.model.config.vision else { return XCTFail("not an NFNet model") }
        vc = c
        let host = try NFNet(fx.model, config: vc, prefix: "vision_encoder")
        let ptrs = (0..<(pixels.count / per)).map { UnsafePointer(frames.p + $0 * per) }
        let feats = try XCTUnwrap(try device.device?.features(ptrs))
        let got = try rt.download(feats.buffer, count: ptrs.count * vc.numPatches * vc.featureChannels)
        var want: [Double] = []
        for p in ptrs { let f = host(p); want += (0..<f.count).map { Double(f[$0]) } }
        note("paper model features", check(got, want, max: 1e-9, "paper model NFNet features"))
        withExtendedLifetime(frames) {}
    }
}
