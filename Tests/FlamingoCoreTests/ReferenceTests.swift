import XCTest
@testable import FlamingoCore

/// max|Δ| / max|ref| ≤ ReferenceTests.tolerance over `count` values of
/// `want` from `offset`.
func assertReferenceClose(_ got: UnsafePointer<Float>, _ want: TensorView, offset: Int = 0, count: Int? = nil,
                          _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    let n = count ?? want.count
    var maxDiff: Float = 0, maxRef: Float = 0
    for i in 0..<n {
        let w = want.float(at: offset + i)
        maxDiff = max(maxDiff, abs(got[i] - w))
        maxRef = max(maxRef, abs(w))
    }
    XCTAssertLessThanOrEqual(maxDiff / max(maxRef, 1e-30), ReferenceTests.tolerance,
                             "\(what): max|Δ| \(maxDiff), max|ref| \(maxRef)", file: file, line: line)
}

/// Each component against the PyTorch reference (tools/reference), fp32 vs
/// fp32: max|Δ| / max|ref| ≤ 1e-4 (accumulation-order differences only).
final class ReferenceTests: XCTestCase {
    static let tolerance: Float = 1e-4

    struct Fixture {
        let model: Model
        let ref: SafetensorsFile
        init(_ name: String) throws {
            model = try Model(directory: fixturesDir + "/" + name)
            ref = try SafetensorsFile(path: fixturesDir + "/" + name + "/reference.safetensors")
        }
        func r(_ key: String) throws -> TensorView { try XCTUnwrap(ref.tensors[key], "no \(key) in reference") }

        /// The model with an empty sequence whose media are the reference's
        /// images (`input.pixels`).
        func sequenceWithImages() throws -> (Flamingo, TokenSequence) {
            let flamingo = try Flamingo(model)
            let pixels = try r("input.pixels")
            let pix = Buffer(pixels.floats())
            let visual = try withExtendedLifetime(pix) { try flamingo.encodeImages(pix.p, count: pixels.shape[1]) }
            let seq = try flamingo.makeSequence()
            try seq.setMedia(visual.p, count: pixels.shape[1])
            return (flamingo, seq)
        }

        /// Token ids of a reference tensor.
        func ids(_ key: String) throws -> [Int] {
            let t = try r(key)
            return (0..<t.count).map { t.int(at: $0) }
        }
    }

    func assertClose(_ got: UnsafePointer<Float>, _ want: TensorView, offset: Int = 0, count: Int? = nil,
                     _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        assertReferenceClose(got, want, offset: offset, count: count, what, file: file, line: line)
    }

    func testVisionAndResampler() throws {
        for name in FixtureTests.models {
            let f = try Fixture(name)
            let c = f.model.config
            guard case .clipViT(let vc) = c.vision else { return XCTFail("\(name): not a CLIP ViT model") }
            let vit = try VisionTransformer(f.model, config: vc, prefix: "vision_encoder")
            let resampler = try PerceiverResampler(f.model, config: c.resampler, prefix: "perceiver")
            let pixels = try f.r("input.pixels")
            let images = pixels.shape[0] * pixels.shape[1]
            let imageSize = 3 * c.vision.imageSize * c.vision.imageSize
            let pix = Buffer(pixels.floats())
            let tokens = c.vision.numPatches * c.vision.width
            for t in 0..<images {
                let feats = vit(pix.p + t * imageSize)
                assertClose(feats.p, try f.r("vision.tokens"), offset: t * tokens, count: tokens, "\(name) vision image \(t)")
                let latents = resampler(feats.p, tokens: c.vision.numPatches)
                let n = c.resampler.numLatents * c.resampler.dim
                assertClose(latents.p, try f.r("resampler.out"), offset: t * n, count: n, "\(name) resampler image \(t)")
            }
        }
    }
}

extension ReferenceTests {
    /// Prompt logits, every intermediate hidden state, and the greedy
    /// continuation with the KV cache (cached-media decode).
    func testFullModelAgainstReference() throws {
        for name in FixtureTests.models {
            let f = try Fixture(name)
            let (_, seq) = try f.sequenceWithImages()
            let tokens = try f.ids("input.input_ids")
            let d = f.model.config.languageModel.hiddenSize, vocab = f.model.config.languageModel.vocabSize
            var observed: [String: [Float]] = [:]
            let logits = try seq.evaluate(tokens, allLogits: true) { key, p, rows in
                observed[key] = Array(UnsafeBufferPointer(start: p, count: rows * d))
            }
            for (key, values) in observed.sorted(by: { $0.key < $1.key }) where key != "hidden.final" {
                if let ref = f.ref.tensors[key] { assertClose(values, ref, "\(name) \(key)") }
            }
            assertClose(logits.p, try f.r("logits"), "\(name) logits")

            // Greedy decode, one token at a time over the cache.
            let greedy = try f.r("greedy.ids"), steps = try f.r("greedy.step_logits")
            var last = Array(UnsafeBufferPointer(start: logits.p + (tokens.count - 1) * vocab, count: vocab))
            for step in 0..<greedy.count {
                assertClose(last, steps, offset: step * vocab, count: vocab, "\(name) greedy step \(step)")
                let next = last.indices.max { last[$0] < last[$1] }!
                XCTAssertEqual(next, greedy.int(at: step), "\(name) greedy token \(step)")
                last = try seq.evaluate([greedy.int(at: step)]).array
            }
        }
    }

    func assertClose(_ got: [Float], _ want: TensorView, offset: Int = 0, count: Int? = nil, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        got.withUnsafeBufferPointer { assertClose($0.baseAddress!, want, offset: offset, count: count ?? got.count, what, file: file, line: line) }
    }
}


extension ReferenceTests {
    /// Decoding token by token over the KV cache gives the logits of
    /// evaluating the whole sequence at once.
    func testCachedDecodingEqualsFullEvaluation() throws {
        for name in FixtureTests.models {
            let f = try Fixture(name)
            let (_, full) = try f.sequenceWithImages()
            let stepwise = try full.copy()
            let prompt = try f.ids("input.input_ids"), all = prompt + (try f.ids("greedy.ids"))
            let vocab = f.model.config.languageModel.vocabSize
            let fullLogits = try full.evaluate(all, allLogits: true)
            _ = try stepwise.evaluate(prompt)
            for (i, t) in all.enumerated().dropFirst(prompt.count) {
                let step = try stepwise.evaluate([t])
                let want = Array(UnsafeBufferPointer(start: fullLogits.p + i * vocab, count: vocab))
                var maxDiff: Float = 0, maxRef: Float = 0
                for j in 0..<vocab { maxDiff = max(maxDiff, abs(step[j] - want[j])); maxRef = max(maxRef, abs(want[j])) }
                XCTAssertLessThanOrEqual(maxDiff / maxRef, Self.tolerance, "\(name) position \(i)")
            }
        }
    }
}

extension ReferenceTests {
    /// A prompt with more <image> markers than images: rows past the last
    /// image attend uniformly to every visual token, as the reference.
    func testMoreMarkersThanImages() throws {
        for name in FixtureTests.models {
            let f = try Fixture(name)
            let (_, seq) = try f.sequenceWithImages()
            let logits = try seq.evaluate(try f.ids("extra_markers.input_ids"), allLogits: true)
            assertClose(logits.p, try f.r("extra_markers.logits"), "\(name) extra markers")
        }
    }

    /// The 32-token greedy continuation is identical.
    func testGreedy32() throws {
        for name in FixtureTests.models {
            let f = try Fixture(name)
            let (_, seq) = try f.sequenceWithImages()
            _ = try seq.evaluate(try f.ids("input.input_ids"))
            var c = GenerationConfig()
            c.maxNewTokens = 32
            XCTAssertEqual(try Generator.generate(seq, config: c).tokens, try f.ids("greedy32.ids"), name)
        }
    }
}
