import XCTest
@testable import FlamingoCore

/// The Flamingo-paper configuration end to end: NFNet encoder → resampler
/// with frame and media-time embeddings → gated cross-attention, on a prompt
/// with two images and one 8-frame video, against timm + open_flamingo
/// (tools/reference/make_paper_fixture.py). fp32 vs fp32, max|Δ|/max|ref| ≤ 1e-4.
final class PaperModelTests: XCTestCase {
    static let framesPerMedia = [1, 1, 8]
    static let prompt = "<image>a red ball<|endofchunk|><image>two cats<|endofchunk|><image>a video of"

    /// The reference's frames as media items: two images, then the video.
    static func media(_ fx: ReferenceTests.Fixture) throws -> [MediaInput] {
        let pixels = try fx.r("input.pixels").floats()
        let per = pixels.count / Self.framesPerMedia.reduce(0, +)
        var items: [MediaInput] = [], at = 0
        for f in Self.framesPerMedia {
            let frames = (0..<f).map { MediaInput.pixels(Array(pixels[(at + $0) * per..<(at + $0 + 1) * per])) }
            items.append(f == 1 ? frames[0] : .frames(frames))
            at += f
        }
        return items
    }

    func testNFNetVideoModelMatchesReference() throws {
        let fx = try ReferenceTests.Fixture("flamingo_paper_tiny")
        guard case .nfnet = fx.model.config.vision else { return XCTFail("vision.kind is not nfnet") }
        let flamingo = try Flamingo(fx.model)
        let media = try Self.media(fx)
        let visual = try flamingo.visualTokens(for: media)
        assertReferenceClose(visual.p, try fx.r("resampler.out"), "visual tokens")

        let seq = try flamingo.makeSequence()
        XCTAssertEqual(try flamingo.tokenize(prompt: Self.prompt, mediaCount: 3), try fx.ids("input.input_ids"))
        let logits = try seq.setPrompt(Self.prompt, media: media, allLogits: true)
        assertReferenceClose(logits.p, try fx.r("logits"), "logits")

        var greedy: [Int] = []
        var last = seq.lastLogits
        for _ in try fx.ids("greedy.ids") {
            let next = last.indices.max { last[$0] < last[$1] } ?? 0
            greedy.append(next)
            let b = try seq.evaluate([next])
            last = Array(UnsafeBufferPointer(start: b.p, count: b.count))
        }
        XCTAssertEqual(greedy, try fx.ids("greedy.ids"))
    }

    func testVideoLongerThanTheFrameEmbeddingsIsAnError() throws {
        let fx = try ReferenceTests.Fixture("flamingo_paper_tiny")
        let flamingo = try Flamingo(fx.model)
        let frame = MediaInput.pixels([Float](repeating: 0, count: 3 * 64 * 64))
        XCTAssertThrowsError(try flamingo.visualTokens(for: [.frames([MediaInput](repeating: frame, count: 9))]))
        XCTAssertThrowsError(try flamingo.visualTokens(for: [MediaInput](repeating: frame, count: 5)))  // max_num_media 4
    }
}
