import XCTest
@testable import FlamingoCore

/// Every fixture model converted by `ModelQuantizer` to each storage type,
/// against the same model in its stored (f32/16-bit) form: prompt logits
/// (max|Δ|/max|ref| over all positions, top-1 agreement per position) and
/// the first greedy tokens, on the CPU and, where an OpenCL device exists,
/// on the device against the CPU running the same quantized directory.
///
/// Bounds (relative to the logits' largest magnitude). The fixtures are
/// random tiny models (widths 32–64), so their logits are flat and a
/// quantization error moves them further than in a trained model:
///  - f16/bf16: weight rounding 2^-11 / 2^-8 per weight → 1e-2 / 5e-2;
///  - q8 (g32): step/2 = range/510 per weight, plus the activations' int8
///    rounding in decode → 5e-2;
///  - q4 (g32): step/2 = range/30 per weight → 0.35, and top-1 agreement
///    is only reported (flat random logits flip).
/// Measured values are printed; docs/quantization.md lists them.
final class QuantizedModelTests: XCTestCase {
    static let fixtures = FixtureTests.models + ["flamingo_paper_tiny"]
    static let bound: [StorageType: Float] = [.f16: 1e-2, .bf16: 5e-2, .q8: 5e-2, .q4: 0.35]

    func quantized(_ name: String, _ type: StorageType, into dir: TempDir) throws -> Model {
        var q = ModelQuantizer(type: type)
        q.groupSize = 32
        q.overwrite = true
        try q.convert(input: fixturesDir + "/" + name, output: dir.path)
        return try Model(directory: dir.path)
    }

    func logits(_ f: Flamingo, _ fx: ReferenceTests.Fixture) throws -> (seq: TokenSequence, logits: Buffer) {
        let pixels = try fx.r("input.pixels")
        let pix = Buffer(pixels.floats())
        let visual = try withExtendedLifetime(pix) { try f.encodeImages(pix.p, count: pixels.shape[1]) }
        let seq = try f.makeSequence()
        try seq.setMedia(visual.p, count: pixels.shape[1])
        return (seq, try seq.evaluate(try fx.ids("input.input_ids"), allLogits: true))
    }

    static func compare(_ got: Buffer, _ want: Buffer, vocab: Int) -> (relative: Float, top1: Double) {
        var diff: Float = 0, ref: Float = 0, agree = 0
        let rows = want.count / vocab
        for r in 0..<rows {
            var ga = 0, wa = 0
            for j in 0..<vocab {
                let i = r * vocab + j
                diff = max(diff, abs(got[i] - want[i])); ref = max(ref, abs(want[i]))
                if got[i] > got[r * vocab + ga] { ga = j }
                if want[i] > want[r * vocab + wa] { wa = j }
            }
            agree += ga == wa ? 1 : 0
        }
        return (diff / max(ref, 1e-30), Double(agree) / Double(max(rows, 1)))
    }

    func testEveryFixtureQuantizedOnTheCPU() throws {
        for name in Self.fixtures {
            let fx = try ReferenceTests.Fixture(name)
            let vocab = fx.model.config.languageModel.vocabSize
            let base = try logits(try Flamingo(fx.model), fx)
            for type in [StorageType.bf16, .f16, .q8, .q4] {
                let dir = TempDir()
                let model = try quantized(name, type, into: dir)
                if let bits = type.bits {
                    XCTAssertEqual(model.storageBytes["q\(bits)"] != nil, true, "\(name) \(type): no quantized matrices")
                }
                let f = try Flamingo(model)
                let got = try logits(f, fx)
                let (rel, top1) = Self.compare(got.logits, base.logits, vocab: vocab)
                print("quantized \(name) \(type.rawValue): logits max|Δ|/max|ref| \(rel), top-1 agreement \(top1)")
                XCTAssertLessThanOrEqual(rel, Self.bound[type] ?? 0, "\(name) \(type.rawValue) prompt logits")
                if type != .q4 { XCTAssertGreaterThanOrEqual(top1, 0.9, "\(name) \(type.rawValue) top-1 agreement") }
                // Decode over the cache (the integer matrix-vector path for q8/q4) stays finite and in range.
                var config = GenerationConfig()
                config.maxNewTokens = 4
                let tokens = try Generator.generate(got.seq, config: config).tokens
                XCTAssertEqual(tokens.count, 4, "\(name) \(type.rawValue) greedy")
                XCTAssertTrue(tokens.allSatisfy { (0..<vocab).contains($0) })
            }
        }
    }

    /// The device runs the quantized directory (packed weights, gemv_affine /
    /// gemm_affine) like the CPU's prompt path (dequantized blocks through sgemm).
    func testEveryFixtureQuantizedOnTheDevice() throws {
        let rt = try OpenCLOpTests.sharedRuntime()
        for name in Self.fixtures {
            let fx = try ReferenceTests.Fixture(name)
            for type in [StorageType.bf16, .q8, .q4] {
                let dir = TempDir()
                let model = try quantized(name, type, into: dir)
                let vocab = fx.model.config.languageModel.vocabSize
                let cpu = try logits(try Flamingo(model), fx)
                let device = try logits(try Flamingo(model, backend: .openCL(rt)), fx)
                let (rel, _) = Self.compare(device.logits, cpu.logits, vocab: vocab)
                XCTAssertLessThanOrEqual(rel, OpenCLModelTests.tolerance, "\(name) \(type.rawValue): device vs CPU")
                // One decode step on the device (its packed GEMV) against the CPU's prompt path
                // (dequantized f32) over the same tokens: the CPU's own decode rounds activations to int8.
                let ids = try fx.ids("input.input_ids"), next = ids.last ?? 1
                let step = try device.seq.evaluate([next])
                let whole = try logits(try Flamingo(model), fx).seq
                let all = try whole.evaluate([next, next, next, next, next], allLogits: true)   // 5 rows: sgemm; row 0 is the step
                let last = Buffer(Array(UnsafeBufferPointer(start: all.p, count: vocab)))
                XCTAssertLessThanOrEqual(Self.compare(step, last, vocab: vocab).relative, OpenCLModelTests.tolerance,
                                         "\(name) \(type.rawValue): device decode step vs CPU")
            }
        }
    }
}
