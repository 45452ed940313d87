import FlamingoCore
@testable import FlamingoServer
import Foundation
import XCTest

/// `flamingo serve`'s request mapping, chat template, stop strings and response shapes
/// (Tests/server runs the server end to end with the openai client).
final class ServerTests: XCTestCase {
    let limits = RequestLimits(maxImages: 2, mediaPath: nil)
    let png = Data([0x89, 0x50, 0x4E, 0x47]).base64EncodedString()

    func body(_ object: [String: Any]) -> [UInt8] { [UInt8](try! JSONSerialization.data(withJSONObject: object)) }

    func assertRequestError(_ message: String, _ f: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) {
        do {
            try f()
            XCTFail("no error; expected \(message)", file: file, line: line)
        } catch let e as RequestError {
            XCTAssertTrue(e.message.contains(message), e.message, file: file, line: line)
            XCTAssertEqual(e.status, 400, file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }

    func testChatTemplate() throws {
        let r = try OpenAIRequest.chat(body(["messages": [
            ["role": "system", "content": "Captions follow. "],
            ["role": "user", "content": [["type": "image_url", "image_url": ["url": "data:image/png;base64," + png]],
                                         ["type": "text", "text": "Output:"]]],
            ["role": "assistant", "content": "A cat."],
            ["role": "user", "content": [["type": "image_url", "image_url": ["url": "data:image/png;base64," + png]],
                                         ["type": "text", "text": "Output:"]]],
        ]]), limits: limits)
        XCTAssertEqual(r.prompt, "Captions follow. <image>Output:A cat.<|endofchunk|>\n<image>Output:")
        XCTAssertEqual(r.images, [[0x89, 0x50, 0x4E, 0x47], [0x89, 0x50, 0x4E, 0x47]])
    }

    func testDecodingDefaults() throws {
        let messages = [["role": "user", "content": "x"]]
        var r = try OpenAIRequest.chat(body(["messages": messages]), limits: limits)
        XCTAssertFalse(r.config.doSample)  // greedy unless sampling is asked for
        XCTAssertEqual(r.config.numBeams, 1)
        XCTAssertNil(r.maxTokens)
        r = try OpenAIRequest.chat(body(["messages": messages, "temperature": 0]), limits: limits)
        XCTAssertFalse(r.config.doSample)
        r = try OpenAIRequest.chat(body(["messages": messages, "temperature": 0.7, "seed": 5, "max_tokens": 9,
                                         "stop": "\n", "n": 2, "stream": true]), limits: limits)
        XCTAssertTrue(r.config.doSample)
        XCTAssertEqual(r.config.temperature, 0.7)
        XCTAssertEqual(r.config.seed, 5)
        XCTAssertEqual(r.maxTokens, 9)
        XCTAssertEqual(r.stop, ["\n"])
        XCTAssertEqual(r.n, 2)
        XCTAssertTrue(r.stream)
        r = try OpenAIRequest.chat(body(["messages": messages, "top_k": 5]), limits: limits)
        XCTAssertTrue(r.config.doSample)
        XCTAssertEqual(r.config.temperature, 1)
        r = try OpenAIRequest.chat(body(["messages": messages, "num_beams": 3, "length_penalty": 0,
                                         "no_repeat_ngram_size": 2, "repetition_penalty": 1.2]), limits: limits)
        XCTAssertEqual(r.config.numBeams, 3)
        XCTAssertEqual(r.config.lengthPenalty, 0)
        XCTAssertEqual(r.config.noRepeatNgramSize, 2)
        XCTAssertEqual(r.config.repetitionPenalty, 1.2)
    }

    func testBadRequests() {
        let m: [[String: Any]] = [["role": "user", "content": "x"]]
        assertRequestError("not a JSON object") { _ = try OpenAIRequest.chat(Array("[1]".utf8), limits: limits) }
        assertRequestError("messages must be") { _ = try OpenAIRequest.chat(body(["messages": "hi"]), limits: limits) }
        assertRequestError("role") { _ = try OpenAIRequest.chat(body(["messages": [["role": "bot", "content": "x"]]]), limits: limits) }
        assertRequestError("type must be") {
            _ = try OpenAIRequest.chat(body(["messages": [["role": "user", "content": [["type": "audio"]]]]]), limits: limits)
        }
        assertRequestError("num_beams > 1") {
            _ = try OpenAIRequest.chat(body(["messages": m, "num_beams": 2, "temperature": 1]), limits: limits)
        }
        assertRequestError("max_tokens must be") { _ = try OpenAIRequest.chat(body(["messages": m, "max_tokens": -1]), limits: limits) }
        assertRequestError("stop must be") { _ = try OpenAIRequest.chat(body(["messages": m, "stop": 3]), limits: limits) }
        assertRequestError("stream must be") { _ = try OpenAIRequest.chat(body(["messages": m, "stream": "yes"]), limits: limits) }
        assertRequestError("prompt must be") { _ = try OpenAIRequest.completion(body(["prompt": 5]), limits: limits) }
        assertRequestError("at most 2") {
            _ = try OpenAIRequest.completion(body(["prompt": "<image><image><image>", "images": [png, png, png]]), limits: limits)
        }
        assertRequestError("base64") { _ = try OpenAIRequest.imageBytes("data:image/png,rawbytes", limits: limits) }
        assertRequestError("does not decode") { _ = try OpenAIRequest.imageBytes("data:image/png;base64,", limits: limits) }
        assertRequestError("remote fetching is disabled") { _ = try OpenAIRequest.imageBytes("http://x/y.png", limits: limits) }
        assertRequestError("--media-path") { _ = try OpenAIRequest.imageBytes("file:///etc/hostname", limits: limits) }
    }

    func testFileURLsOnlyUnderTheMediaPath() throws {
        let images = fixturesDir + "/images"
        let l = RequestLimits(maxImages: 2, mediaPath: images)
        XCTAssertEqual(try OpenAIRequest.imageBytes("file://" + images + "/exif1_40x24.jpg", limits: l).count,
                       try readWholeFile(images + "/exif1_40x24.jpg").count)
        assertRequestError("outside --media-path") { _ = try OpenAIRequest.imageBytes("file://" + images + "/../mpt_tiny/config.json", limits: l) }
        assertRequestError("does not exist") { _ = try OpenAIRequest.imageBytes("file://" + images + "/none.jpg", limits: l) }
    }

    func testStopStrings() {
        var f = StopFilter(["o W"])
        XCTAssertEqual(f.push("Hel").0, "Hel")
        let (out, stopped) = f.push("lo Wo")
        XCTAssertEqual(out, "l")
        XCTAssertTrue(stopped)
        // A possible beginning of a stop string is held back until it is decided.
        var g = StopFilter(["END"])
        XCTAssertEqual(g.push("abcE").0, "abc")
        XCTAssertEqual(g.push("N").0, "")
        XCTAssertEqual(g.push("x").0, "ENx")
        XCTAssertEqual(g.push("E").0, "")
        XCTAssertEqual(g.flush(), "E")
        var none = StopFilter([])
        XCTAssertEqual(none.push("E").0, "E")
    }

    func testResponseShapesAndErrors() throws {
        let outcome = Job.Outcome(finishReason: "stop", promptTokens: 5, completionTokens: 3, cachedImages: 1, images: 2)
        let chat = Reply(chat: true, model: "m")
        let whole = chat.whole(["a\nb"], [outcome])
        XCTAssertEqual(whole["object"] as? String, "chat.completion")
        XCTAssertEqual((whole["usage"] as? [String: Int])?["total_tokens"], 8)
        let choice = (whole["choices"] as? [[String: Any]])?.first
        XCTAssertEqual((choice?["message"] as? [String: String])?["content"], "a\nb")
        // SSE frames are single lines: JSON escapes every newline inside the text.
        let frame = FlamingoServer.encode(chat.chunk(index: 0, text: "line one\nline two\r\n"))
        XCTAssertFalse(frame.contains("\n") || frame.contains("\r"))
        XCTAssertTrue(frame.contains("chat.completion.chunk"))
        let text = Reply(chat: false, model: "m").chunk(index: 1, text: "x")
        XCTAssertEqual(((text["choices"] as? [[String: Any]])?.first?["text"]) as? String, "x")
        let two = chat.usage([outcome, outcome])  // the prompt counts once
        XCTAssertEqual(two["prompt_tokens"] as? Int, 5)
        XCTAssertEqual(two["completion_tokens"] as? Int, 6)
        let e = RequestError(message: "too long", type: "exceed_context_size_error", extra: ["n_prompt_tokens": 9, "n_ctx": 8])
        let fields = e.body["error"] as? [String: Any]
        XCTAssertEqual(fields?["type"] as? String, "exceed_context_size_error")
        XCTAssertEqual(fields?["n_ctx"] as? Int, 8)
        XCTAssertEqual(fields?["code"] as? Int, 400)
        XCTAssertEqual(RequestError(FlamingoError.invalidArgument("bad")).status, 400)
        XCTAssertEqual(RequestError(FlamingoError.outOfMemory("big")).status, 503)
        XCTAssertEqual(RequestError(FlamingoError.internal("bug")).status, 500)
    }

    func testVisualTokenCacheIsBoundedByBytes() throws {
        let f = try Flamingo(try Model(directory: fixturesDir + "/mpt_tiny"))
        let a = try readWholeFile(fixturesDir + "/images/exif1_40x24.jpg"), b = try readWholeFile(fixturesDir + "/images/exif2_40x24.jpg")
        let per = 4 * f.latentsPerMedia * f.visualWidth
        let metrics = Metrics()
        let cache = VisualTokenCache(flamingo: f, capacityBytes: max(a.count, b.count) + per, metrics: metrics)  // one entry
        let (first, hit1) = try cache.visualTokens(a)
        XCTAssertFalse(hit1)
        let (again, hit2) = try cache.visualTokens(a)
        XCTAssertTrue(hit2)
        XCTAssertEqual(again, first)
        XCTAssertEqual(first.count * 4, per)
        XCTAssertFalse(try cache.visualTokens(b).1)  // evicts a
        XCTAssertFalse(try cache.visualTokens(a).1)
        XCTAssertTrue(metrics.text.contains("flamingo_image_cache_hits_total 1\n"))
        XCTAssertTrue(metrics.text.contains("flamingo_image_cache_misses_total 3\n"))
        let none = VisualTokenCache(flamingo: f, capacityBytes: 0, metrics: metrics)
        XCTAssertFalse(try none.visualTokens(a).1)
        XCTAssertFalse(try none.visualTokens(a).1)
    }
}
