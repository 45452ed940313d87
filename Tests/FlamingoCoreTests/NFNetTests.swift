import CFlamingoKernels
import Dispatch
import Glibc
import XCTest
@testable import FlamingoCore

/// NFNet (spec/11, docs/nfnet.md): the configuration and its timm geometry,
/// every convolution kernel against a scalar double-precision reference on
/// awkward sizes with sentinels, and the whole encoder against timm's
/// `forward_features` (nfnet_tiny committed; NFNet-F0 when
/// tools/reference/make_nfnet_f0_reference.py has written build/nfnet_f0).
final class NFNetTests: XCTestCase {
    static let sentinel: Float = 1.2345e-33
    var rng = KernelTests.SplitMix(seed: 7)

    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.next() * scale } }

    // MARK: configuration

    func testPresetGeometryMatchesTimm() throws {
        let f0 = try NFNetConfig.preset("dm_nfnet_f0")
        XCTAssertEqual(f0.depths, [1, 2, 6, 3])
        XCTAssertEqual(f0.imageSize, 256)
        XCTAssertEqual(f0.stemConvs.map(\.outChannels), [16, 32, 64, 128])
        XCTAssertEqual(f0.stemConvs.map(\.stride), [2, 1, 1, 2])
        let b = f0.blocks
        XCTAssertEqual(b.count, 12)
        XCTAssertEqual(b.filter(\.transition).map(\.name), ["stages.0.0", "stages.1.0", "stages.2.0", "stages.3.0"])
        XCTAssertEqual(b.map(\.midChannels), [128, 256, 256] + Array(repeating: 768, count: 9))
        XCTAssertEqual(b.map(\.groups), [1, 2, 2] + Array(repeating: 6, count: 9))
        XCTAssertEqual(b.map(\.seChannels), [128, 256, 256] + Array(repeating: 768, count: 9))
        XCTAssertEqual(b.map(\.stride), [1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1])
        // β schedule: 1, then 1/√(1 + jα²) within a stage, carried into the next transition.
        XCTAssertEqual(b[0].beta, 1, accuracy: 1e-12)
        XCTAssertEqual(b[1].beta, 1 / 1.04.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(b[2].beta, 1 / 1.04.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(b[3].beta, 1 / 1.08.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(b[4].beta, 1 / 1.04.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(f0.featureChannels, 3072)
        XCTAssertEqual(f0.numPatches, 64)
        // State-dict sizes of timm 1.0.31 dm_nfnet_f0 / f6 with num_classes=0.
        let w0 = f0.weights(prefix: "")
        XCTAssertEqual(w0.count, 231)
        XCTAssertEqual(w0.reduce(0) { $0 + $1.shape.reduce(1, *) }, 68_416_284)
        let f6 = try NFNetConfig.preset("f6", imageSize: 320)
        let w6 = f6.weights(prefix: "vision_encoder")
        XCTAssertEqual(w6.count, 1455)
        XCTAssertEqual(w6.reduce(0) { $0 + $1.shape.reduce(1, *) }, 435_286_116)
        XCTAssertTrue(w6.allSatisfy { $0.name.hasPrefix("vision_encoder.") })
        XCTAssertEqual(f6.numPatches, 100)
        var stage = f6
        stage.features = .lastStage
        XCTAssertEqual(stage.featureChannels, 1536)
        for v in ["f1", "f2", "f3", "f4", "f5"] { XCTAssertNoThrow(try NFNetConfig.preset(v)) }
        assertThrows(FlamingoError.unsupported, containing: "f7") { _ = try NFNetConfig.preset("f7") }
    }

    func testConfigJSON() throws {
        let c = try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "variant": "f6", "image_size": 320, "features": "last_stage", "activation": "gelu_tanh"}"#))
        var want = try NFNetConfig.preset("f6", imageSize: 320)
        want.features = .lastStage
        want.activation = .geluTanh
        XCTAssertEqual(c, want)
        let tiny = try NFNetConfig(json: JSON.parse(Self.tinyJSON))
        XCTAssertEqual(tiny, Self.tinyConfig)
        XCTAssertEqual(try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "variant": "f0"}"#)), try NFNetConfig.preset("f0"))
        assertThrows(FlamingoError.invalidFormat, containing: "unknown key") {
            _ = try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "variant": "f0", "depth": [1]}"#))
        }
        assertThrows(FlamingoError.invalidFormat, containing: "variant") {
            _ = try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "image_size": 64}"#))
        }
        assertThrows(FlamingoError.invalidFormat, containing: "image_size") {
            _ = try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "depths": [1]}"#))
        }
        assertThrows(FlamingoError.unsupported, containing: "clip_vit") {
            _ = try NFNetConfig(json: JSON.parse(#"{"kind": "clip_vit"}"#))
        }
        assertThrows(FlamingoError.invalidFormat, containing: "depths") {
            _ = try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "variant": "f0", "depths": [1, 2, 3, 4, 5]}"#))
        }
        assertThrows(FlamingoError.invalidFormat, containing: "depths and channels") {
            _ = try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "variant": "f0", "depths": [1, 2]}"#))
        }
        assertThrows(FlamingoError.invalidFormat, containing: "groups of 48") {
            _ = try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "variant": "f0", "group_size": 48, "channel_divisor": 32}"#))
        }
        assertThrows(FlamingoError.unsupported, containing: "stem_type") {
            _ = try NFNetConfig(json: JSON.parse(#"{"kind": "nfnet", "variant": "f0", "stem_type": "deep_pool"}"#))
        }
    }

    // MARK: kernels

    /// An output buffer with 16 sentinels on either side.
    typealias Guarded = KernelTests.Guarded

    func checkClose(_ got: [Float], _ want: [Double], maxNMSE: Double = 1e-10, _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
        var err = 0.0, ref = 0.0
        for (a, b) in zip(got, want) {
            if a.isNaN { XCTFail("\(what): NaN", file: file, line: line); return }
            err += (Double(a) - b) * (Double(a) - b)
            ref += b * b
        }
        let nmse = ref == 0 ? err : err / ref
        XCTAssertLessThanOrEqual(nmse, maxNMSE, "\(what): NMSE \(nmse)", file: file, line: line)
    }

    static func actRef(_ x: Double, _ a: ConvActivation) -> Double {
        switch a {
        case .none: return x
        case .gelu: return 0.5 * x * (1 + erf(x / 2.0.squareRoot()))
        case .geluTanh: return 0.5 * x * (1 + tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
        }
    }

    /// TF-SAME convolution in double: x [h, w, cin] dense, weight [cout, cin/g, k, k] → [oh, ow, cout].
    static func convRef(_ x: [Float], h: Int, w: Int, cin: Int, _ wt: [Float], bias: [Float], cout: Int, k: Int,
                        stride s: Int, groups: Int, act: ConvActivation, scale: Double) -> (out: [Double], oh: Int, ow: Int) {
        let g = SamePadding(h: h, w: w, kernel: k, stride: s)
        let cig = cin / groups, cog = cout / groups
        var out = [Double](repeating: 0, count: g.outH * g.outW * cout)
        for oy in 0..<g.outH { for ox in 0..<g.outW { for oc in 0..<cout {
            let grp = oc / cog
            var acc = Double(bias[oc])
            for ky in 0..<k { for kx in 0..<k {
                let iy = oy * s + ky - g.top, ix = ox * s + kx - g.left
                guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                for ic in 0..<cig {
                    acc += Double(x[(iy * w + ix) * cin + grp * cig + ic]) * Double(wt[((oc * cig + ic) * k + ky) * k + kx])
                }
            } }
            out[(oy * g.outW + ox) * cout + oc] = actRef(acc, act) * scale
        } } }
        return (out, g.outH, g.outW)
    }

    /// One direct or GEMM convolution: input laid into a zero-padded plane with an
    /// extra channel stride (pix > c), output written into the interior of a larger
    /// sentinel-filled plane whose borders and gaps must survive.
    func runConvCase(h: Int, w: Int, cin: Int, cout: Int, k: Int, stride: Int, groups: Int,
                     act: ConvActivation, direct: Bool, winograd: Bool = false, tile: Int = 4,
                     file: StaticString = #filePath, line: UInt = #line) {
        let what = "conv h=\(h) w=\(w) cin=\(cin) cout=\(cout) k=\(k) s=\(stride) g=\(groups) act=\(act) direct=\(direct) winograd=\(winograd ? tile : 0)"
        let x = random(h * w * cin), wt = random(cout * (cin / groups) * k * k, scale: 0.5), bias = random(cout)
        let conv = try! wt.withUnsafeBufferPointer { wp in
            try bias.withUnsafeBufferPointer { bp in
                try Conv2D(weight: wp.baseAddress!, bias: bp.baseAddress!, inChannels: cin, outChannels: cout, kernel: k,
                       stride: stride, groups: groups, gemm: !direct, winograd: winograd,
                       winogradTile: tile)
            }
        }
        XCTAssertEqual(conv.usesGEMM, !direct && k == 1, file: file, line: line)
        XCTAssertEqual(conv.usesWinograd, winograd, file: file, line: line)
        let g = conv.padding(h: h, w: w)
        let scale: Float = act == .none ? 1 : 1.7
        let want = Self.convRef(x, h: h, w: w, cin: cin, wt, bias: bias, cout: cout, k: k, stride: stride,
                                groups: groups, act: act, scale: Double(scale))
        XCTAssertEqual(want.oh, g.outH, file: file, line: line)
        // Input: dense for GEMM, else padded with a channel gap of 3.
        let inPix = conv.usesGEMM ? cin : cin + 3
        let input = Buffer(max(1, g.paddedH * g.paddedW * inPix))
        let inPlane = conv.usesGEMM ? Plane(input.p, h: h, w: w, c: cin)
            : Plane(input.p, h: g.paddedH, w: g.paddedW, c: cin, row: g.paddedW * inPix, pix: inPix)
        let dst = conv.usesGEMM ? inPlane : inPlane.offset(y: g.top, x: g.left)
        for y in 0..<h { for xx in 0..<w { for c in 0..<cin { dst.p[y * dst.row + xx * dst.pix + c] = x[(y * w + xx) * cin + c] } } }
        // Output: a (oh+2)×(ow+2) frame, out pixel stride cout (+2 for the direct kernel).
        let outPix = conv.usesGEMM ? cout : cout + 2
        let fw = g.outW + 2, fh = g.outH + 2
        let frame = Guarded(fh * fw * outPix)
        for i in 0..<frame.count { frame.p[i] = Self.sentinel }
        let outPlane = conv.usesGEMM ? Plane(frame.p, h: g.outH, w: g.outW, c: cout)
            : Plane(frame.p + fw * outPix + outPix, h: g.outH, w: g.outW, c: cout, row: fw * outPix, pix: outPix)
        conv(inPlane, into: outPlane, activation: act, scale: scale)
        XCTAssertTrue(frame.sentinelsIntact, "\(what): wrote outside its output", file: file, line: line)
        var got: [Float] = []
        for y in 0..<g.outH { for xx in 0..<g.outW { for c in 0..<cout { got.append(outPlane.p[y * outPlane.row + xx * outPlane.pix + c]) } } }
        if !conv.usesGEMM {
            var touched = 0
            for i in 0..<frame.count where frame.p[i] != Self.sentinel { touched += 1 }
            XCTAssertEqual(touched, got.filter { $0 != Self.sentinel }.count, "\(what): wrote outside the output pixels",
                           file: file, line: line)
        }
        checkClose(got, want.out, maxNMSE: winograd && tile == 4 ? 1e-10 : 1e-11, what, file: file, line: line)
    }

    func testDirectConvolution() {
        // 3×3 stride 1 / 2, odd sizes, channel counts around the 8/16 blocks, groups (NFNet's grouped convs).
        for (h, w) in [(1, 1), (2, 3), (5, 7), (9, 4), (13, 11)] {
            for stride in [1, 2] {
                for (cin, cout, groups) in [(1, 1, 1), (3, 16, 1), (5, 9, 1), (16, 17, 1), (16, 24, 2), (24, 40, 2),
                                            (12, 36, 3), (33, 33, 1), (64, 64, 4)] {
                    runConvCase(h: h, w: w, cin: cin, cout: cout, k: 3, stride: stride, groups: groups, act: .gelu, direct: true)
                }
            }
        }
        // Activations and other kernels: the 7×7 / 3×3 stems, 1×1 through the direct kernel (stride 2 too).
        for act in [ConvActivation.none, .geluTanh] {
            runConvCase(h: 7, w: 10, cin: 8, cout: 20, k: 3, stride: 1, groups: 2, act: act, direct: true)
        }
        runConvCase(h: 15, w: 13, cin: 3, cout: 8, k: 7, stride: 2, groups: 1, act: .none, direct: true)
        runConvCase(h: 14, w: 17, cin: 3, cout: 2, k: 3, stride: 2, groups: 1, act: .gelu, direct: true)
        runConvCase(h: 6, w: 5, cin: 19, cout: 35, k: 1, stride: 1, groups: 1, act: .none, direct: true)
        runConvCase(h: 6, w: 5, cin: 19, cout: 35, k: 1, stride: 2, groups: 1, act: .gelu, direct: true)
        runConvCase(h: 3, w: 4, cin: 24, cout: 40, k: 1, stride: 1, groups: 2, act: .gelu, direct: true)
        // NFNet's real group width: 128 channels per group, 2 groups, 6-pixel and 8-pixel tails.
        runConvCase(h: 7, w: 9, cin: 256, cout: 256, k: 3, stride: 2, groups: 2, act: .gelu, direct: true)
        // A map larger than one task (192 pixels).
        runConvCase(h: 17, w: 19, cin: 8, cout: 8, k: 3, stride: 1, groups: 1, act: .gelu, direct: true)
    }

    func testWinogradConvolution() {
        // F(2×2) and F(4×4): maps with partial output tiles, channel tails, groups with cin_g ≠ cout_g,
        // more tiles than one task.
        for tile in [2, 4] {
            for (h, w) in [(1, 1), (2, 2), (3, 5), (6, 7), (10, 9), (20, 20), (23, 26)] {
                for (cin, cout, groups) in [(1, 1, 1), (3, 16, 1), (5, 9, 1), (16, 24, 2), (24, 40, 2), (33, 33, 1), (64, 64, 4)] {
                    runConvCase(h: h, w: w, cin: cin, cout: cout, k: 3, stride: 1, groups: groups, act: .gelu, direct: true,
                                winograd: true, tile: tile)
                }
            }
            for act in [ConvActivation.none, .geluTanh] {
                runConvCase(h: 7, w: 10, cin: 8, cout: 20, k: 3, stride: 1, groups: 2, act: act, direct: true,
                            winograd: true, tile: tile)
            }
            runConvCase(h: 9, w: 7, cin: 256, cout: 256, k: 3, stride: 1, groups: 2, act: .gelu, direct: true,
                        winograd: true, tile: tile)
        }
    }

    func testGEMMConvolution() {
        for (h, w) in [(1, 1), (1, 5), (3, 7), (8, 8)] {
            for (cin, cout) in [(1, 1), (3, 17), (16, 16), (33, 70)] {
                for act in [ConvActivation.none, .gelu] {
                    runConvCase(h: h, w: w, cin: cin, cout: cout, k: 1, stride: 1, groups: 1, act: act, direct: false)
                }
            }
        }
    }

    func testActivationKernel() {
        for n in KernelTests.sizes + [1000] {
            let x = random(n, scale: 6) + [0, -0.0, 30, -30, 1e-20]
            for act in [ConvActivation.none, .gelu, .geluTanh] {
                let out = Guarded(x.count)
                fk_nf_act(x, out.p, x.count, act.rawValue, 1.7015)
                XCTAssertTrue(out.sentinelsIntact, "act \(act) \(n)")
                checkClose(out.values, x.map { Self.actRef(Double($0), act) * 1.7015 }, maxNMSE: 1e-12, "act \(act) \(n)")
                // GELU's erf is a rational approximation: |error| ≤ 1.1e-6 (worst near x = −5.6, where
                // GELU ≈ 0); 2e-7 relative elsewhere.
                for (i, v) in out.values.enumerated() {
                    let r = Self.actRef(Double(x[i]), act) * 1.7015
                    XCTAssertEqual(Double(v), r, accuracy: 2e-6 + 1e-6 * abs(r), "act \(act) x=\(x[i])")
                }
            }
        }
    }

    func testPoolMeanScaleAdd() {
        for (h, w) in [(1, 1), (1, 4), (3, 3), (4, 5), (7, 2)] {
            for c in [1, 8, 13, 70] {
                let x = random(h * w * c)
                let oh = (h + 1) / 2, ow = (w + 1) / 2
                let out = Guarded(oh * ow * c)
                averagePool2x2(Plane(UnsafeMutablePointer(mutating: x), h: h, w: w, c: c), into: out.p)
                var want = [Double]()
                for oy in 0..<oh { for ox in 0..<ow { for ch in 0..<c {
                    var s = 0.0, n = 0.0
                    for y in (2 * oy)..<min(2 * oy + 2, h) { for xx in (2 * ox)..<min(2 * ox + 2, w) { s += Double(x[(y * w + xx) * c + ch]); n += 1 } }
                    want.append(s / n)
                } } }
                XCTAssertTrue(out.sentinelsIntact, "pool \(h)x\(w)x\(c)")
                checkClose(out.values, want, maxNMSE: 1e-13, "pool \(h)x\(w)x\(c)")

                let mean = Guarded(c)
                fk_channel_mean(x, h * w, c, mean.p)
                XCTAssertTrue(mean.sentinelsIntact, "mean \(h)x\(w)x\(c)")
                checkClose(mean.values, (0..<c).map { ch in (0..<(h * w)).reduce(0.0) { $0 + Double(x[$1 * c + ch]) } / Double(h * w) },
                           maxNMSE: 1e-13, "mean \(h)x\(w)x\(c)")

                let scale = random(c), sc = random(h * w * c)
                let res = Guarded(h * w * c, initial: sc)
                fk_scale_add(x, scale, res.p, res.p, h * w, c)
                XCTAssertTrue(res.sentinelsIntact, "scale_add \(h)x\(w)x\(c)")
                checkClose(res.values, (0..<(h * w * c)).map { Double(sc[$0]) + Double(x[$0]) * Double(scale[$0 % c]) },
                           maxNMSE: 1e-13, "scale_add \(h)x\(w)x\(c)")
            }
        }
        // Long sums stay accurate (SE means over large feature maps).
        let n = 100_003, c = 64
        let x = [Float](repeating: 0.1, count: n * c)
        let mean = Guarded(c)
        fk_channel_mean(x, n, c, mean.p)
        for v in mean.values { XCTAssertEqual(v, 0.1, accuracy: 2e-7) }
    }

    func testConvValidation() {
        let w = [Float](repeating: 0, count: 64)
        for (cin, cout, k, s, g) in [(0, 4, 3, 1, 1), (4, 4, 3, 1, 3), (4, 6, 3, 1, 4), (4, 4, 0, 1, 1), (4, 4, 3, 0, 1)] {
            assertThrows(FlamingoError.invalidArgument, containing: "Conv2D") {
                _ = try w.withUnsafeBufferPointer { try Conv2D(weight: $0.baseAddress!, bias: nil, inChannels: cin,
                                                               outChannels: cout, kernel: k, stride: s, groups: g) }
            }
        }
    }

    func testWeightStandardization() {
        let out = 5, n = 27
        let w = random(out * n), g = random(out)
        let got = standardizedWeights(out: out, fanIn: n, eps: 1e-5, weight: { w[$0] }, gain: { g[$0] })
        for o in 0..<out {
            let row = w[(o * n)..<((o + 1) * n)].map(Double.init)
            let mean = row.reduce(0, +) / Double(n)
            let v = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
            for i in 0..<n {
                let want = (row[i] - mean) / (v + 1e-5).squareRoot() * Double(g[o]) / Double(n).squareRoot()
                XCTAssertEqual(Double(got[o * n + i]), want, accuracy: 1e-6 * max(1, abs(want)))
            }
        }
    }

    // MARK: against timm

    static let tinyJSON = #"""
        {"kind": "nfnet", "depths": [1, 2, 1, 1], "channels": [32, 64, 96, 128], "stem_channels": 16,
         "group_size": 8, "final_conv_channels": 256, "image_size": 48}
        """#
    static let tinyConfig = NFNetConfig(depths: [1, 2, 1, 1], channels: [32, 64, 96, 128], stemChannels: 16,
                                        groupSize: 8, finalConvChannels: 256, imageSize: 48)

    struct Comparison { var maxDiff: Float = 0; var maxRef: Float = 0; var ratio: Float { maxDiff / max(maxRef, 1e-30) } }

    /// Engine NHWC plane of image `n` against a reference NCHW tensor.
    static func compare(_ plane: Plane, _ ref: TensorView, image n: Int) -> Comparison {
        var r = Comparison()
        let c = ref.shape[1], h = ref.shape[2], w = ref.shape[3]
        guard plane.c == c, plane.h == h, plane.w == w else { return Comparison(maxDiff: .infinity, maxRef: 1) }
        for ch in 0..<c { for y in 0..<h { for x in 0..<w {
            let want = ref.float(at: ((n * c + ch) * h + y) * w + x)
            r.maxDiff = max(r.maxDiff, abs(plane.p[y * plane.row + x * plane.pix + ch] - want))
            r.maxRef = max(r.maxRef, abs(want))
        } } }
        return r
    }

    /// Runs every image of `input.pixels` and compares each tap present in the reference.
    func compareWithTimm(_ net: NFNet, _ ref: SafetensorsFile, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Comparison] {
        let pixels = try XCTUnwrap(ref.tensors["input.pixels"])
        let images = pixels.shape[0], h = pixels.shape[2], w = pixels.shape[3]
        let all = Buffer(pixels.floats())
        var results: [String: Comparison] = [:]
        for n in 0..<images {
            var taps: [String: Comparison] = [:]
            let out = net.forward(all.p + n * 3 * h * w, height: h, width: w) { name, plane in
                if let r = ref.tensors[name] { taps[name] = Self.compare(plane, r, image: n) }
            }
            let grid = net.config.outputSize(height: h, width: w)
            XCTAssertEqual(out.count, grid.height * grid.width * net.featureChannels, file: file, line: line)
            XCTAssertNotNil(taps["features"], file: file, line: line)
            for (k, v) in taps {
                let old = results[k] ?? Comparison()
                results[k] = Comparison(maxDiff: max(old.maxDiff, v.maxDiff), maxRef: max(old.maxRef, v.maxRef))
            }
        }
        for (k, v) in results.sorted(by: { $0.key < $1.key }) {
            print("NFNet \(k): max|Δ| \(v.maxDiff), max|ref| \(v.maxRef), ratio \(v.ratio)")
            XCTAssertLessThanOrEqual(v.ratio, 1e-4, "\(k): max|Δ| \(v.maxDiff), max|ref| \(v.maxRef)", file: file, line: line)
        }
        return results
    }

    func testTinyMatchesTimm() throws {
        let dir = fixturesDir + "/nfnet_tiny"
        let weights = try SafetensorsFile(path: dir + "/model.safetensors")
        let ref = try SafetensorsFile(path: dir + "/reference.safetensors")
        let config = try NFNetConfig(json: JSON.parse(Self.tinyJSON))
        // Every tensor of the checkpoint is one the config lists, with its shape.
        let specs = config.weights(prefix: "")
        XCTAssertEqual(Set(specs.map(\.name)), Set(weights.tensors.keys))
        for s in specs { XCTAssertEqual(weights.tensors[s.name]?.shape, s.shape, s.name) }
        let net = try NFNet(config: config, prefix: "", keepAlive: weights) { name in
            guard let t = weights.tensors[name] else { throw FlamingoError.notFound("no tensor named \(name)") }
            return t
        }
        XCTAssertEqual(net.numPatches, 4)
        XCTAssertEqual(net.featureChannels, 256)
        let r = try compareWithTimm(net, ref)
        XCTAssertEqual(Set(r.keys), ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "features"])
        // The same with Winograd on every stride-1 3×3 conv (the default skips groups under 32
        // channels, i.e. all of nfnet_tiny's), and with the direct kernel only.
        for (winograd, minChannels, tile) in [(true, 1, 4), (true, 1, 2), (false, 32, 4)] {
            var c = config
            c.winograd = winograd
            c.winogradMinChannels = minChannels
            c.winogradTile = tile
            let variant = try NFNet(config: c, prefix: "", keepAlive: weights) { try XCTUnwrap(weights.tensors[$0]) }
            XCTAssertEqual(variant.blocks[1].conv2b?.usesWinograd, winograd)
            XCTAssertEqual(variant.stem[1].usesWinograd, winograd)
            _ = try compareWithTimm(variant, ref)
        }

        // The public entry points agree with the tapped forward.
        let pixels = try XCTUnwrap(ref.tensors["input.pixels"])
        let all = Buffer(pixels.floats())
        let a = net(all.p), b = try net.features(all.p, height: 48, width: 48)
        XCTAssertEqual(a.array, b.array)
        let feats = try XCTUnwrap(ref.tensors["features"])
        XCTAssertLessThanOrEqual(Self.compare(Plane(a.p, h: 2, w: 2, c: 256), feats, image: 0).ratio, 1e-4)
        assertThrows(FlamingoError.invalidArgument, containing: "outside") { _ = try net.features(all.p, height: 0, width: 4) }

        // Last-stage features: the stage-3 output itself.
        var stageConfig = config
        stageConfig.features = .lastStage
        let stageNet = try NFNet(config: stageConfig, prefix: "", keepAlive: weights) { try XCTUnwrap(weights.tensors[$0]) }
        XCTAssertEqual(stageNet.featureChannels, 128)
        let s = stageNet(all.p)
        XCTAssertLessThanOrEqual(Self.compare(Plane(s.p, h: 2, w: 2, c: 128), try XCTUnwrap(ref.tensors["stages.3"]), image: 0).ratio, 1e-4)
    }

    func testLoadErrors() throws {
        let dir = fixturesDir + "/nfnet_tiny"
        let weights = try SafetensorsFile(path: dir + "/model.safetensors")
        var wrong = Self.tinyConfig
        wrong.groupSize = 16
        assertThrows(FlamingoError.invalidFormat, containing: "stages.0.0.conv2.weight has shape") {
            _ = try NFNet(config: wrong, prefix: "", keepAlive: weights) { try XCTUnwrap(weights.tensors[$0]) }
        }
        assertThrows(FlamingoError.notFound, containing: "vision.stem.conv1.weight") {
            _ = try NFNet(config: Self.tinyConfig, prefix: "vision", keepAlive: weights) { name in
                guard let t = weights.tensors[name] else { throw FlamingoError.notFound("no tensor named \(name)") }
                return t
            }
        }
    }

    /// Repository root (Tests/Fixtures/..).
    static var repoRoot: String { String(fixturesDir.dropLast("/Tests/Fixtures".count)) }

    static func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    /// A directory with config.json ({"vision": {...}} or the vision object itself) and model.safetensors.
    static func load(_ dir: String) throws -> NFNet {
        let bytes = try readWholeFile(dir + "/config.json")
        let json = try bytes.withUnsafeBytes { try JSON.parse($0) }
        let config = try NFNetConfig(json: json["vision"] ?? json)
        let weights = try SafetensorsFile(path: dir + "/model.safetensors")
        return try NFNet(config: config, prefix: "", keepAlive: weights) { name in
            guard let t = weights.tensors[name] else { throw FlamingoError.notFound("no tensor named \(name)") }
            return t
        }
    }

    /// NFNet-F0 geometry with random weights against timm dm_nfnet_f0
    /// (tools/reference/make_nfnet_f0_reference.py writes build/nfnet_f0; not committed: 140 MB).
    func testF0MatchesTimm() throws {
        let dir = Self.env("FLAMINGO_NFNET_F0_DIR") ?? Self.repoRoot + "/build/nfnet_f0"
        guard access(dir + "/reference.safetensors", R_OK) == 0 else {
            throw XCTSkip("\(dir) missing: run /work/refenv/bin/python tools/reference/make_nfnet_f0_reference.py")
        }
        let net = try Self.load(dir)
        let ref = try SafetensorsFile(path: dir + "/reference.safetensors")
        _ = try compareWithTimm(net, ref)
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func cpuTime() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6
    }

    /// Benchmark entry for tools/bench/bench_nfnet.py (not a test): with
    /// FLAMINGO_NFNET_BENCH=1 it loads FLAMINGO_NFNET_BENCH_DIR (config.json,
    /// model.safetensors, input.safetensors), runs the forward
    /// FLAMINGO_NFNET_BENCH_ITERS times, prints the times and writes the
    /// features to engine_features.f32 there.
    func testBenchmark() throws {
        guard Self.env("FLAMINGO_NFNET_BENCH") == "1", let dir = Self.env("FLAMINGO_NFNET_BENCH_DIR") else {
            throw XCTSkip("set FLAMINGO_NFNET_BENCH=1 and FLAMINGO_NFNET_BENCH_DIR (tools/bench/bench_nfnet.py)")
        }
        let iters = Self.env("FLAMINGO_NFNET_BENCH_ITERS").flatMap { Int($0) } ?? 5
        if let n = Self.env("FLAMINGO_NFNET_BENCH_THREADS").flatMap({ Int($0) }) { Threads.set(n) }
        defer { Threads.set(Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
        let t0 = Self.now()
        let net = try Self.load(dir)
        let load = Self.now() - t0
        let input = try SafetensorsFile(path: dir + "/input.safetensors")
        let pixels = try XCTUnwrap(input.tensors["input.pixels"])
        let h = pixels.shape[2], w = pixels.shape[3]
        let pix = Buffer(pixels.floats())
        var times: [Double] = [], cpu: [Double] = []
        var out = Buffer(0)
        for _ in 0..<(iters + 1) {
            let t = Self.now(), c = Self.cpuTime()
            out = try net.features(pix.p, height: h, width: w)
            times.append((Self.now() - t) * 1000)
            cpu.append((Self.cpuTime() - c) * 1000)
        }
        let measured = times.dropFirst().sorted()
        let median = measured[measured.count / 2]
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        print("NFNET_BENCH threads=\(Threads.count) max_rss_mb=\(u.ru_maxrss / 1024) load_s=\(load) first_ms=\(times[0]) median_ms=\(median) min_ms=\(measured.first ?? 0) all_ms=\(times) cpu_ms=\(cpu)")
        let f = fopen(dir + "/engine_features.f32", "wb")
        if let f {
            _ = fwrite(out.p, 4, out.count, f)
            fclose(f)
        }
    }
}
