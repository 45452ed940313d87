import XCTest
@testable import FlamingoCore

/// Text prompts with <image> markers and media in every form reach the same
/// logits as the reference's token ids and pixels.
final class PromptTests: XCTestCase {
    func testPromptTextGivesReferenceLogits() throws {
        for name in FixtureTests.models {
            let f = try ReferenceTests.Fixture(name)
            let json = try JSON.parse(String(decoding: try readWholeFile(fixturesDir + "/\(name)/reference.json"), as: UTF8.self))
            let prompt = try XCTUnwrap(json["prompt"]?.string)
            let flamingo = try Flamingo(f.model)
            let pixels = try f.r("input.pixels").floats()
            let per = pixels.count / 2
            let media: [MediaInput] = [.pixels(Array(pixels[..<per])), .pixels(Array(pixels[per...]))]
            let ids = try f.r("input.input_ids")
            XCTAssertEqual(try flamingo.tokenize(prompt: prompt, mediaCount: 2), (0..<ids.count).map { ids.int(at: $0) }, name)

            let seq = try flamingo.makeSequence()
            let logits = try seq.setPrompt(prompt, media: media, allLogits: true)
            let want = try f.r("logits")
            var maxDiff: Float = 0, maxRef: Float = 0
            for i in 0..<want.count { maxDiff = max(maxDiff, abs(logits[i] - want.float(at: i))); maxRef = max(maxRef, abs(want.float(at: i))) }
            XCTAssertLessThanOrEqual(maxDiff / maxRef, ReferenceTests.tolerance, name)

            // Visual tokens from an earlier encoding give the same result.
            let visual = try flamingo.visualTokens(for: media)
            let vper = flamingo.latentsPerMedia * flamingo.visualWidth
            let again = try flamingo.makeSequence().setPrompt(prompt, media: [.visualTokens(Array(visual.array[..<vper])),
                                                                              .visualTokens(Array(visual.array[vper...]))])
            let last = Array(logits.array.suffix(f.model.config.languageModel.vocabSize))
            let diff = zip(again.array, last).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(diff / (last.map(abs).max() ?? 1), ReferenceTests.tolerance, name)
        }
    }

    func testMarkerCountMismatchAndBadMediaAreErrors() throws {
        let flamingo = try Flamingo(try Model(directory: fixturesDir + "/mpt_tiny"))
        let seq = try flamingo.makeSequence()
        XCTAssertThrowsError(try seq.setPrompt("<image>A cat", media: [])) { e in
            XCTAssertTrue("\(e)".contains("1 <image> marker(s) but 0 media"), "\(e)")
        }
        XCTAssertThrowsError(try seq.setPrompt("A cat", media: [.pixels([1, 2, 3])]))
        XCTAssertThrowsError(try seq.setPrompt("<image>A cat", media: [.pixels([1, 2, 3])])) { e in
            XCTAssertTrue("\(e)".contains("media 0"), "\(e)")
        }
        XCTAssertThrowsError(try seq.setPrompt("<image>A cat", media: [.encoded([0xFF, 0xD8, 0xFF, 0x00])]))
        XCTAssertThrowsError(try seq.setPrompt("<image>A cat", media: [.file("/nonexistent.jpg")]))
        XCTAssertThrowsError(try seq.setPrompt("<image>A cat", media: [.raw([1, 2, 3], width: 2, height: 2, channels: 3)]))
        XCTAssertEqual(seq.length, 0, "failed prompts leave the session empty")
    }

    /// Streaming pieces plus the final flush equal the full decode, also
    /// across runs of byte-fallback tokens that are not valid UTF-8.
    func testStreamingDecodeEqualsFullDecode() throws {
        for name in FixtureTests.models {
            let f = try ReferenceTests.Fixture(name)
            let tokenizer = try XCTUnwrap(try Flamingo(f.model).tokenizer)
            for key in ["greedy32.ids", "input.input_ids"] {
                let ids = try f.ids(key)
                let stream = tokenizer.makeStreamDecoder()
                var text = ""
                for id in ids { text += try stream.push(id) }
                text += try stream.flush()
                XCTAssertEqual(text, try tokenizer.decode(ids), "\(name) \(key)")
            }
        }
        let llama = try XCTUnwrap(try Flamingo(try Model(directory: fixturesDir + "/llama_tiny")).tokenizer)
        let ids = [92, 408, 53, 165, 134, 100, 308, 220, 419]
        let stream = llama.makeStreamDecoder()
        var pieces = ids.map { (try? stream.push($0)) ?? "?" }
        pieces.append(try stream.flush())
        XCTAssertEqual(pieces.joined(), try llama.decode(ids))
    }
}
