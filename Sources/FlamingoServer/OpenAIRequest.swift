import FlamingoCore
import Foundation

/// A request's fields, parsed and checked: what the engine needs and how to answer.
struct CompletionRequest {
    var prompt = ""
    var images: [[UInt8]] = []
    var config = GenerationConfig()
    var maxTokens: Int?
    var stop: [String] = []
    var stream = false
    var includeUsage = false
    var n = 1
    var model = ""
}

/// An error answered in OpenAI's shape `{"error": {"message", "type", "code", ...extra}}`.
struct RequestError: Error {
    var message: String
    var status = 400
    var type = "invalid_request_error"
    var extra: [String: Int] = [:]

    init(message: String, status: Int = 400, type: String = "invalid_request_error", extra: [String: Int] = [:]) {
        self.message = message
        self.status = status
        self.type = type
        self.extra = extra
    }

    /// An engine error: bad input is the client's (400), the rest the server's.
    init(_ error: Error) {
        switch error {
        case let e as RequestError: self = e
        case let e as FlamingoError:
            switch e {
            case .invalidArgument, .invalidFormat, .unsupported, .notFound, .bufferTooSmall:
                self.init(message: e.message)
            case .outOfMemory, .cancelled:
                self.init(message: e.message, status: 503, type: "server_error")
            default:
                self.init(message: e.message, status: 500, type: "server_error")
            }
        default: self.init(message: "\(error)", status: 500, type: "server_error")
        }
    }
}

struct RequestLimits {
    var maxImages: Int
    /// Directory under which `file://` image URLs are allowed; nil: none are.
    var mediaPath: String?
}

enum OpenAIRequest {
    /// POST /v1/chat/completions: `messages` rendered to a Flamingo prompt
    /// (see `renderChat`), `image_url` parts as its images.
    static func chat(_ body: [UInt8], limits: RequestLimits) throws -> CompletionRequest {
        let o = try object(body)
        guard let messages = o["messages"] as? [[String: Any]], !messages.isEmpty else {
            throw RequestError(message: "messages must be a non-empty array of objects")
        }
        var r = try common(o)
        (r.prompt, r.images) = try renderChat(messages, limits: limits)
        return r
    }

    /// POST /v1/completions: a raw Flamingo prompt (one `<image>` per image) and
    /// `images`, a list of base64 strings or data: URIs.
    static func completion(_ body: [UInt8], limits: RequestLimits) throws -> CompletionRequest {
        let o = try object(body)
        var r = try common(o)
        if let p = o["prompt"] as? String {
            r.prompt = p
        } else if let list = o["prompt"] as? [String], list.count == 1 {
            r.prompt = list[0]
        } else {
            throw RequestError(message: "prompt must be a string")
        }
        let list = o["images"] ?? []
        guard let images = list as? [String] else { throw RequestError(message: "images must be a list of base64 strings") }
        guard images.count <= limits.maxImages else {
            throw RequestError(message: "\(images.count) images; this server accepts at most \(limits.maxImages) per request")
        }
        r.images = try images.map { try imageBytes($0.hasPrefix("data:") ? $0 : "data:;base64," + $0, limits: limits) }
        return r
    }

    /// The chat template for Flamingo models, which are not chat-tuned: messages are
    /// concatenated in order, each `image_url` part becoming `<image>`, and every assistant
    /// message is closed by `<|endofchunk|>` and a newline, as OpenFlamingo's few-shot
    /// prompts end each example; earlier turns read as demonstrations and the model
    /// continues the last one. (user: [image, "Output:"], assistant: "A cat.", user: [image,
    /// "Output:"] is exactly `flamingo caption`'s one-shot prompt.)
    static func renderChat(_ messages: [[String: Any]], limits: RequestLimits) throws -> (String, [[UInt8]]) {
        var prompt = "", images: [[UInt8]] = []
        for (i, m) in messages.enumerated() {
            guard let role = m["role"] as? String, ["system", "user", "assistant"].contains(role) else {
                throw RequestError(message: "messages[\(i)].role must be system, user or assistant")
            }
            if let text = m["content"] as? String {
                prompt += text
            } else if let parts = m["content"] as? [[String: Any]] {
                for (j, part) in parts.enumerated() {
                    switch part["type"] as? String {
                    case "text":
                        guard let t = part["text"] as? String else { throw RequestError(message: "messages[\(i)].content[\(j)].text must be a string") }
                        prompt += t
                    case "image_url":
                        let url = (part["image_url"] as? [String: Any])?["url"] as? String ?? part["image_url"] as? String
                        guard let url else { throw RequestError(message: "messages[\(i)].content[\(j)].image_url.url must be a string") }
                        images.append(try imageBytes(url, limits: limits))
                        guard images.count <= limits.maxImages else {
                            throw RequestError(message: "more than \(limits.maxImages) images; this server accepts at most \(limits.maxImages) per request")
                        }
                        prompt += "<image>"
                    default:
                        throw RequestError(message: "messages[\(i)].content[\(j)].type must be text or image_url")
                    }
                }
            } else {
                throw RequestError(message: "messages[\(i)].content must be a string or a list of parts")
            }
            if role == "assistant" { prompt += "<|endofchunk|>\n" }
        }
        return (prompt, images)
    }

    /// `data:[type];base64,...` or, under --media-path, `file://...`. Nothing is fetched.
    static func imageBytes(_ url: String, limits: RequestLimits) throws -> [UInt8] {
        if url.hasPrefix("data:") {
            guard let comma = url.firstIndex(of: ","), url[..<comma].hasSuffix(";base64") else {
                throw RequestError(message: "image data URIs must be base64 (data:image/...;base64,...)")
            }
            guard let data = Data(base64Encoded: String(url[url.index(after: comma)...]), options: .ignoreUnknownCharacters),
                  !data.isEmpty else {
                throw RequestError(message: "an image's base64 data does not decode")
            }
            return [UInt8](data)
        }
        if url.hasPrefix("file://") {
            guard let root = limits.mediaPath else {
                throw RequestError(message: "file:// image URLs are disabled (start the server with --media-path DIR)")
            }
            let path = String(url.dropFirst("file://".count))
            guard let real = realpath(path, nil) else { throw RequestError(message: "image \(path) does not exist") }
            defer { free(real) }
            let resolved = String(cString: real)
            guard resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
                throw RequestError(message: "image \(path) is outside --media-path")
            }
            do { return try readWholeFile(resolved) } catch { throw RequestError(message: "image \(path): \(error)") }
        }
        throw RequestError(message: "image URLs must be data: URIs (or file:// under --media-path); remote fetching is disabled")
    }

    private static func object(_ body: [UInt8]) throws -> [String: Any] {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw RequestError(message: "the body is not a JSON object")
        }
        return o
    }

    /// The sampling and engine fields shared by both endpoints. Greedy unless the request
    /// asks for sampling (temperature > 0, top_p < 1 or top_k > 0); beams only when asked.
    private static func common(_ o: [String: Any]) throws -> CompletionRequest {
        var r = CompletionRequest()
        r.model = o["model"] as? String ?? ""
        func number(_ k: String) throws -> Double? {
            guard let v = o[k], !(v is NSNull) else { return nil }
            guard let n = v as? NSNumber, n.doubleValue.isFinite else {
                throw RequestError(message: "\(k) must be a number")
            }
            return n.doubleValue
        }
        func integer(_ k: String, _ range: ClosedRange<Int>) throws -> Int? {
            guard let d = try number(k) else { return nil }
            guard d == d.rounded(), d >= Double(range.lowerBound), d <= Double(range.upperBound) else {
                throw RequestError(message: "\(k) must be an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return Int(d)
        }
        r.maxTokens = try integer("max_completion_tokens", 0...1_000_000) ?? integer("max_tokens", 0...1_000_000)
        r.n = try integer("n", 1...16) ?? 1
        var c = GenerationConfig()
        c.minNewTokens = try integer("min_tokens", 0...1_000_000) ?? 0  // vLLM's name
        let temperature = try number("temperature"), topP = try number("top_p"), topK = try integer("top_k", 0...1_000_000)
        c.doSample = (temperature ?? 0) > 0 || (topP ?? 1) < 1 || (topK ?? 0) > 0
        if c.doSample { c.temperature = Float(temperature.flatMap { $0 > 0 ? $0 : nil } ?? 1) }
        c.topP = Float(topP ?? 1)
        c.topK = topK ?? 0
        if let seed = try integer("seed", Int.min...Int.max) { c.seed = UInt64(bitPattern: Int64(seed)) }
        c.numBeams = try integer("num_beams", 1...16) ?? 1
        c.lengthPenalty = Float(try number("length_penalty") ?? 1)
        c.noRepeatNgramSize = try integer("no_repeat_ngram_size", 0...64) ?? 0
        c.repetitionPenalty = Float(try number("repetition_penalty") ?? 1)
        guard c.repetitionPenalty > 0 else { throw RequestError(message: "repetition_penalty must be > 0") }
        guard c.topP > 0 && c.topP <= 1 else { throw RequestError(message: "top_p must be in (0, 1]") }
        guard c.numBeams == 1 || !c.doSample else { throw RequestError(message: "num_beams > 1 is beam search; it cannot be combined with sampling") }
        r.config = c
        switch o["stop"] {
        case nil, is NSNull: break
        case let s as String: r.stop = [s]
        case let list as [String] where list.count <= 8: r.stop = list
        default: throw RequestError(message: "stop must be a string or a list of at most 8 strings")
        }
        switch o["stream"] {
        case nil, is NSNull: break
        case let b as Bool: r.stream = b
        default: throw RequestError(message: "stream must be a boolean")
        }
        r.includeUsage = ((o["stream_options"] as? [String: Any])?["include_usage"] as? Bool) ?? false
        return r
    }
}
