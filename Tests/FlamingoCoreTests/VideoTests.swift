import XCTest
@testable import FlamingoCore

/// The resampler with frame and media-time embeddings against open_flamingo's
/// PerceiverResampler(max_num_media:, max_num_frames:) (tools/reference/make_video_reference.py).
final class VideoTests: XCTestCase {
    func testResamplerWithTimeEmbeddingsMatchesReference() throws {
        let dir = fixturesDir + "/video_resampler"
        let weights = try SafetensorsFile(path: dir + "/model.safetensors")
        let ref = try SafetensorsFile(path: dir + "/reference.safetensors")
        var r = try ConfigReader(try JSON.parse(String(decoding: try readWholeFile(dir + "/config.json"), as: UTF8.self))["resampler"],
                                 path: "resampler")
        let config = try PerceiverResamplerConfig(&r)
        let resampler = try PerceiverResampler(weights, config: config, prefix: "perceiver")
        let x = try ref.tensor("input.features"), want = try ref.tensor("output")
        let (items, frames, tokens, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let input = Buffer(x.floats())
        let per = config.numLatents * d
        for t in 0..<items {
            let out = try resampler.resample(input.p + t * frames * tokens * d, frames: frames, tokensPerFrame: tokens, mediaIndex: t)
            var maxDiff: Float = 0, maxRef: Float = 0
            for i in 0..<per {
                maxDiff = max(maxDiff, abs(out[i] - want.float(at: t * per + i)))
                maxRef = max(maxRef, abs(want.float(at: t * per + i)))
            }
            XCTAssertLessThanOrEqual(maxDiff / maxRef, ReferenceTests.tolerance, "media item \(t)")
        }
        XCTAssertThrowsError(try resampler.resample(input.p, frames: 9, tokensPerFrame: 1, mediaIndex: 0))
        XCTAssertThrowsError(try resampler.resample(input.p, frames: 1, tokensPerFrame: tokens, mediaIndex: 4))
    }
}
