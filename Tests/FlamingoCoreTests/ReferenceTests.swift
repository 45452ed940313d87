import XCTest
@testable import FlamingoCore

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
    }

    func assertClose(_ got: UnsafePointer<Float>, _ want: TensorView, offset: Int = 0, count: Int? = nil,
                     _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let n = count ?? want.count
        var maxDiff: Float = 0, maxRef: Float = 0
        for i in 0..<n {
            let w = want.float(at: offset + i)
            maxDiff = max(maxDiff, abs(got[i] - w))
            maxRef = max(maxRef, abs(w))
        }
        XCTAssertLessThanOrEqual(maxDiff / max(maxRef, 1e-30), Self.tolerance,
                                 "\(what): max|Δ| \(maxDiff), max|ref| \(maxRef)", file: file, line: line)
    }

    func testVisionAndResampler() throws {
        for name in FixtureTests.models {
            let f = try Fixture(name)
            let c = f.model.config
            let vit = try VisionTransformer(f.model, config: c.vision, prefix: "vision_encoder")
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
