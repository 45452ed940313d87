import XCTest
@testable import FlamingoCore

/// Every fixture model on the OpenCL backend against the CPU backend
/// (issue: logits within 1e-3 relative, identical greedy tokens): visual
/// tokens, all prompt logits, cached greedy decoding, a batch of two
/// sequences of different lengths, beam search (beams share the step and
/// are copied on the device), and errors leaving a sequence unchanged. On
/// PoCL in CI; skipped without an OpenCL device.
final class OpenCLModelTests: XCTestCase {
    static let tolerance: Float = 1e-3
    static let fixtures = FixtureTests.models

    func backends(_ name: String) throws -> (cpu: Flamingo, device: Flamingo, fx: ReferenceTests.Fixture) {
        let rt = try OpenCLOpTests.sharedRuntime()
        let fx = try ReferenceTests.Fixture(name)
        return (try Flamingo(fx.model), try Flamingo(fx.model, backend: .openCL(rt)), fx)
    }

    func assertClose(_ got: Buffer, _ want: Buffer, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        var diff: Float = 0, ref: Float = 0
        for i in 0..<min(got.count, want.count) {
            diff = max(diff, abs(got[i] - want[i]))
            ref = max(ref, abs(want[i]))
        }
        XCTAssertLessThanOrEqual(diff / max(ref, 1e-30), Self.tolerance, "\(what): max|Δ| \(diff), max|ref| \(ref)",
                                 file: file, line: line)
    }

    /// Both backends' sequences with the fixture's images and prompt evaluated.
    func prompted(_ f: Flamingo, _ fx: ReferenceTests.Fixture) throws -> (TokenSequence, Buffer, Buffer) {
        let pixels = try fx.r("input.pixels")
        let pix = Buffer(pixels.floats())
        let visual = try withExtendedLifetime(pix) { try f.encodeImages(pix.p, count: pixels.shape[1]) }
        let seq = try f.makeSequence()
        try seq.setMedia(visual.p, count: pixels.shape[1])
        let logits = try seq.evaluate(try fx.ids("input.input_ids"), allLogits: true)
        return (seq, visual, logits)
    }

    func testEveryFixtureMatchesTheCPU() throws {
        for name in Self.fixtures {
            let (cpu, device, fx) = try backends(name)
            let (a, va, la) = try prompted(cpu, fx)
            let (b, vb, lb) = try prompted(device, fx)
            assertClose(vb, va, "\(name) visual tokens")
            assertClose(lb, la, "\(name) prompt logits")
            var config = GenerationConfig()
            config.maxNewTokens = 12
            let ga = try Generator.generate(a, config: config).tokens
            let gb = try Generator.generate(b, config: config).tokens
            XCTAssertEqual(gb, ga, "\(name) greedy")
        }
    }

    func testBatchAndBeamsMatchTheCPU() throws {
        let (cpu, device, fx) = try backends("llama_tiny")
        let ids = try fx.ids("input.input_ids")
        var results: [[Buffer]] = []
        for f in [cpu, device] {
            let pixels = try fx.r("input.pixels")
            let pix = Buffer(pixels.floats())
            let visual = try withExtendedLifetime(pix) { try f.encodeImages(pix.p, count: pixels.shape[1]) }
            let s1 = try f.makeSequence(), s2 = try f.makeSequence()
            try s1.setMedia(visual.p, count: pixels.shape[1])
            try s2.setMedia(visual.p, count: 1)
            _ = try s2.evaluate(Array(ids.prefix(5)))
            // a batch: a long prompt and a shorter continuation, then a decode step of both
            var out = try f.evaluate([Step(s1, ids, valid: nil), Step(s2, Array(ids[5..<9]))], allLogits: true)
            out += try f.evaluate([Step(s1, [3]), Step(s2, [4])])
            var beams = GenerationConfig()
            beams.maxNewTokens = 6
            beams.numBeams = 3
            let copy = try s1.copy()
            let tokens = try Generator.generate(copy, config: beams).tokens
            out.append(Buffer(tokens.map(Float.init)))
            results.append(out)
        }
        for (i, (a, b)) in zip(results[0], results[1]).enumerated() {
            if i == results[0].count - 1 {
                XCTAssertEqual(Array(UnsafeBufferPointer(start: b.p, count: b.count)),
                               Array(UnsafeBufferPointer(start: a.p, count: a.count)), "beam search tokens")
            } else {
                assertClose(b, a, "batched logits \(i)")
            }
        }
    }

    func testVideoModelOnTheDevice() throws {
        let (cpu, device, _) = try backends("flamingo_paper_tiny")
        let fx = try ReferenceTests.Fixture("flamingo_paper_tiny")
        let media = try PaperModelTests.media(fx)
        let la = try cpu.makeSequence().setPrompt(PaperModelTests.prompt, media: media, allLogits: true)
        let lb = try device.makeSequence().setPrompt(PaperModelTests.prompt, media: media, allLogits: true)
        assertClose(lb, la, "NFNet + video model logits")
    }

    func testBadTokenLeavesTheSequenceUnchanged() throws {
        let (_, device, fx) = try backends("mpt_tiny")
        let seq = try device.makeSequence()
        _ = try seq.evaluate(Array(try fx.ids("input.input_ids").prefix(4)))
        let before = seq.lastLogits
        XCTAssertThrowsError(try seq.evaluate([1, 1_000_000]))
        XCTAssertEqual(seq.length, 4)
        XCTAssertEqual(seq.lastLogits, before)
        _ = try seq.evaluate([2])
        XCTAssertEqual(seq.length, 5)
    }

    /// Kernel launches of one decode step, counted: embedding, per gated
    /// cross-attention block 7 (norm, q, attention, out + gate, norm,
    /// up + GELU, down + gate), per decoder layer 9 (MPT; +2 with QK-norm),
    /// 11 (GPT-NeoX: + 2 rotary) or 15 (LLaMA: separate q/k/v, 2 rotary,
    /// SwiGLU), then gather + final norm + head. Printed for docs/opencl.md.
    func testDecodeStepLaunchCount() throws {
        for name in Self.fixtures {
            let (_, device, fx) = try backends(name)
            let (seq, _, _) = try prompted(device, fx)
            let rt = try OpenCLOpTests.sharedRuntime(), before = rt.launchCount
            _ = try seq.evaluate([1])
            let got = rt.launchCount - before
            let lm = device.config.languageModel
            let perLayer: Int
            switch lm.family {
            case .mpt, .mosaicGPT: perLayer = lm.qkLayerNorm ? 11 : 9
            case .gptNeoX: perLayer = 11
            case .llama: perLayer = 15
            }
            let want = 1 + 7 * device.config.crossAttentionLayers.count + perLayer * lm.layers + 3
            print("\(name): \(got) launches per decode step (\(lm.layers) layers, \(device.config.crossAttentionLayers.count) cross-attention blocks)")
            XCTAssertEqual(got, want, name)
        }
    }
}
