import FlamingoCore
import Foundation
import Hummingbird
import NIOCore

/// `flamingo serve`'s settings.
// @unchecked: `backend` holds an OpenCL device handle, only read once, to load the model.
public struct ServerOptions: @unchecked Sendable {
    public var modelDirectory: String
    public var host = "127.0.0.1"
    public var port = 8080
    public var parallel = 4
    /// Tokens per session; 0: the model's max_seq_len.
    public var contextLength = 0
    public var apiKey: String?
    public var maxBodyBytes = 32 << 20
    public var maxImages = 32
    public var mediaPath: String?
    public var queueLimit = 64
    public var imageCacheBytes = 256 << 20
    public var backend: ComputeBackend = .cpu

    public init(modelDirectory: String) { self.modelDirectory = modelDirectory }
}

/// The OpenAI-compatible HTTP server over one model (docs/server.md).
public enum FlamingoServer {
    /// Serves until SIGINT/SIGTERM. The model loads after the socket is open: /health
    /// answers 503 until it is ready. Prints "listening on HOST:PORT" once bound.
    public static func run(_ options: ServerOptions) async throws {
        let state = ServerState(options: options)
        let router = Router()
        routes(router, state)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "flamingo"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? options.port
                print("flamingo serve: listening on \(options.host):\(port)")
                fflush(stdout)
                Thread.detachNewThread { state.load() }
            })
        try await app.runService()
    }

    static func routes(_ router: Router<BasicRequestContext>, _ state: ServerState) {
        router.get("/health") { _, _ -> Response in
            switch state.status {
            case .ready: return json(["status": "ok"])
            case .loading: return json(["status": "loading"], status: .serviceUnavailable)
            case .failed(let m): return error(m, status: .internalServerError, type: "server_error")
            }
        }
        router.get("/metrics") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: state.metrics.text)))
        }
        router.get("/v1/models") { request, _ -> Response in
            if let denied = state.authorize(request) { return denied }
            return json(["object": "list", "data": [["id": state.modelID, "object": "model", "owned_by": "flamingo",
                                                     "created": state.started]]])
        }
        router.post("/v1/chat/completions") { request, _ -> Response in
            await complete(request, state, chat: true)
        }
        router.post("/v1/completions") { request, _ -> Response in
            await complete(request, state, chat: false)
        }
    }

    static func complete(_ request: Request, _ state: ServerState, chat: Bool) async -> Response {
        if let denied = state.authorize(request) { return denied }
        state.metrics.add(\.requests, 1)
        var request = request
        let engine: Engine
        switch state.status {
        case .ready(let e): engine = e
        case .loading: return error("the model is loading", status: .serviceUnavailable, type: "server_error", retry: true)
        case .failed(let m): return error(m, status: .internalServerError, type: "server_error")
        }
        let parsed: CompletionRequest
        do {
            let body = try await request.collectBody(upTo: state.options.maxBodyBytes)
            let bytes = [UInt8](buffer: body)
            parsed = chat ? try OpenAIRequest.chat(bytes, limits: state.limits) : try OpenAIRequest.completion(bytes, limits: state.limits)
        } catch let e as RequestError {
            state.metrics.add(\.failedRequests, 1)
            return error(e)
        } catch {
            state.metrics.add(\.failedRequests, 1)
            return Self.error("the body is larger than \(state.options.maxBodyBytes) bytes", status: .contentTooLarge)
        }
        var c = parsed.config
        c.stopTokens = [engine.flamingo.config.tokens.endOfChunk] + (engine.flamingo.config.tokens.eos.map { [$0] } ?? [])
        var streams: [AsyncStream<Job.Event>] = [], jobs: [Job] = []
        for i in 0..<parsed.n {
            let (stream, continuation) = AsyncStream<Job.Event>.makeStream()
            let job = Job(prompt: parsed.prompt, images: parsed.images, config: c, choice: i, stop: parsed.stop,
                          maxTokens: parsed.maxTokens, events: continuation)
            continuation.onTermination = { _ in job.cancelled = true }  // the client went away
            streams.append(stream)
            jobs.append(job)
        }
        do { try engine.submit(jobs) } catch {
            state.metrics.add(\.failedRequests, 1)
            return Self.error("the queue is full; retry later", status: .serviceUnavailable, type: "server_error", retry: true)
        }
        let reply = Reply(chat: chat, model: parsed.model.isEmpty ? state.modelID : parsed.model)
        if parsed.stream {
            return streamResponse(streams, reply: reply, includeUsage: parsed.includeUsage, metrics: state.metrics)
        }
        var texts = [String](repeating: "", count: streams.count), outcomes: [Job.Outcome] = []
        for (i, stream) in streams.enumerated() {
            for await event in stream {
                switch event {
                case .text(let t): texts[i] += t
                case .done(let o): outcomes.append(o)
                case .failed(let e):
                    for job in jobs { job.cancelled = true }
                    state.metrics.add(\.failedRequests, 1)
                    return Self.error(e)
                }
            }
        }
        guard outcomes.count == streams.count else { return Self.error("generation ended early", status: .internalServerError) }
        return json(reply.whole(texts, outcomes))
    }

    /// Server-sent events: one chunk per piece of text, then a chunk with the finish reason
    /// (and usage when asked), then `data: [DONE]`.
    static func streamResponse(_ streams: [AsyncStream<Job.Event>], reply: Reply, includeUsage: Bool,
                               metrics: Metrics) -> Response {
        let body = ResponseBody { writer in
            func send(_ object: [String: Any]) async throws {
                try await writer.write(ByteBuffer(string: "data: " + encode(object) + "\n\n"))
            }
            var outcomes: [Job.Outcome] = []
            for (i, stream) in streams.enumerated() {
                if reply.chat { try await send(reply.chunk(index: i, delta: ["role": "assistant", "content": ""], finish: nil)) }
                for await event in stream {
                    switch event {
                    case .text(let t): try await send(reply.chunk(index: i, text: t))
                    case .done(let o):
                        outcomes.append(o)
                        try await send(reply.chunk(index: i, delta: [:], finish: o.finishReason))
                    case .failed(let e):
                        metrics.add(\.failedRequests, 1)
                        try await send(e.body)
                    }
                }
            }
            if includeUsage { try await send(reply.usageChunk(outcomes)) }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok, retry: Bool = false) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if retry { headers[.retryAfter] = "1" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: encode(object))))
    }

    static func error(_ message: String, status: HTTPResponse.Status, type: String = "invalid_request_error",
                      retry: Bool = false) -> Response {
        error(RequestError(message: message, status: status.code, type: type), retry: retry)
    }

    static func error(_ e: RequestError, retry: Bool = false) -> Response {
        json(e.body, status: .init(code: e.status), retry: retry)
    }

    static func encode(_ object: [String: Any]) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }
}

/// The model's state and what every handler shares.
final class ServerState: @unchecked Sendable {
    enum Status { case loading, ready(Engine), failed(String) }

    let options: ServerOptions
    let metrics = Metrics()
    let limits: RequestLimits
    let modelID: String
    let started = Int(Date().timeIntervalSince1970)
    private let lock = NSLock()
    private var _status = Status.loading

    init(options: ServerOptions) {
        self.options = options
        limits = RequestLimits(maxImages: options.maxImages, mediaPath: options.mediaPath.flatMap { p in
            realpath(p, nil).map { r in defer { free(r) }; return String(cString: r) }
        })
        modelID = options.modelDirectory.split(separator: "/").last.map(String.init) ?? options.modelDirectory
    }

    var status: Status { lock.withLock { _status } }

    /// Loads the model and starts the engine thread (on a thread of its own: loading blocks).
    func load() {
        let result: Status
        do {
            let flamingo = try Flamingo(try Model(directory: options.modelDirectory), backend: options.backend)
            let maxLength = flamingo.config.languageModel.maxSeqLen
            let context = options.contextLength > 0 ? min(options.contextLength, maxLength) : maxLength
            let engine = try Engine(flamingo: flamingo, parallel: options.parallel, contextLength: context,
                                    queueLimit: options.queueLimit, imageCacheBytes: options.imageCacheBytes, metrics: metrics)
            engine.start()
            result = .ready(engine)
            print("flamingo serve: model \(options.modelDirectory) ready (\(options.parallel) sessions of \(context) tokens)")
        } catch {
            result = .failed("the model did not load: \((error as? FlamingoError)?.message ?? "\(error)")")
            print("flamingo serve: \(result)")
        }
        fflush(stdout)
        lock.withLock { _status = result }
    }

    /// nil when the request may proceed; else the 401 response.
    func authorize(_ request: Request) -> Response? {
        guard let key = options.apiKey else { return nil }
        if request.headers[.authorization] == "Bearer \(key)" { return nil }
        return FlamingoServer.error("a valid API key is required (Authorization: Bearer KEY)", status: .unauthorized,
                                    type: "authentication_error")
    }
}

/// The response objects of both endpoints.
struct Reply {
    let chat: Bool
    let model: String
    let id: String
    let created = Int(Date().timeIntervalSince1970)

    init(chat: Bool, model: String) {
        self.chat = chat
        self.model = model
        id = (chat ? "chatcmpl-" : "cmpl-") + String(UInt64.random(in: 0...UInt64.max), radix: 36)
    }

    var object: String { chat ? "chat.completion" : "text_completion" }

    func whole(_ texts: [String], _ outcomes: [Job.Outcome]) -> [String: Any] {
        let choices: [[String: Any]] = zip(texts, outcomes).enumerated().map { i, pair in
            var c: [String: Any] = ["index": i, "finish_reason": pair.1.finishReason]
            if chat { c["message"] = ["role": "assistant", "content": pair.0] } else { c["text"] = pair.0; c["logprobs"] = NSNull() }
            return c
        }
        return ["id": id, "object": object, "created": created, "model": model, "choices": choices,
                "usage": usage(outcomes), "timings": timings(outcomes)]
    }

    func chunk(index: Int, text: String) -> [String: Any] {
        chat ? chunk(index: index, delta: ["content": text], finish: nil)
            : ["id": id, "object": "text_completion", "created": created, "model": model,
               "choices": [["index": index, "text": text, "finish_reason": NSNull(), "logprobs": NSNull()]]]
    }

    func chunk(index: Int, delta: [String: Any], finish: String?) -> [String: Any] {
        let reason: Any = finish ?? NSNull()
        if !chat { return ["id": id, "object": "text_completion", "created": created, "model": model,
                           "choices": [["index": index, "text": "", "finish_reason": reason, "logprobs": NSNull()]]] }
        return ["id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [["index": index, "delta": delta, "finish_reason": reason]]]
    }

    func usageChunk(_ outcomes: [Job.Outcome]) -> [String: Any] {
        ["id": id, "object": chat ? "chat.completion.chunk" : "text_completion", "created": created, "model": model,
         "choices": [] as [Any], "usage": usage(outcomes), "timings": timings(outcomes)]
    }

    /// Prompt tokens count once (every choice shares the prompt), as OpenAI counts them.
    func usage(_ outcomes: [Job.Outcome]) -> [String: Any] {
        let prompt = outcomes.first?.promptTokens ?? 0, completion = outcomes.reduce(0) { $0 + $1.completionTokens }
        return ["prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion]
    }

    func timings(_ outcomes: [Job.Outcome]) -> [String: Any] {
        let generated = outcomes.reduce(0) { $0 + $1.completionTokens }
        let genSeconds = outcomes.map(\.generateSeconds).max() ?? 0
        return ["prompt_ms": (outcomes.map(\.promptSeconds).max() ?? 0) * 1000, "predicted_ms": genSeconds * 1000,
                "predicted_per_second": genSeconds > 0 ? Double(generated) / genSeconds : 0,
                "images": outcomes.first?.images ?? 0, "cached_images": outcomes.reduce(0) { $0 + $1.cachedImages }]
    }
}

extension RequestError {
    var body: [String: Any] {
        var fields: [String: Any] = ["message": message, "type": type, "code": status]
        for (k, v) in extra { fields[k] = v }
        return ["error": fields]
    }
}
