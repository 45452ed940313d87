import ArgumentParser
import FlamingoCore
import FlamingoServer
import Foundation

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over HTTP: OpenAI-compatible chat and completions with continuous batching (docs/server.md).")
    @Option(name: .shortAndLong, help: "Model directory (or FLAMINGO_MODEL).") var model: String?
    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port (0: any free port; the chosen one is printed).") var port = 8080
    @Option(help: "Sessions advanced together in each batched step.") var parallel = 4
    @Option(help: "Tokens per session (0: the model's max_seq_len).") var ctx = 0
    @Option(help: "Require `Authorization: Bearer KEY` on /v1/ requests.") var apiKey: String?
    @Option(help: "Read the API key from a file (first line).") var apiKeyFile: String?
    @Option(help: "Largest request body in MiB.") var maxBodyMb = 32
    @Option(help: "Most images per request.") var maxImages = 32
    @Option(help: "Allow file:// image URLs under this directory.") var mediaPath: String?
    @Option(help: "Requests that may wait for a session before 503.") var queue = 64
    @Option(help: "MiB for the visual tokens of recent images, LRU (0: no cache).") var imageCacheMb = 256
    @Option(help: "Compute backend: cpu or opencl.") var backend = "cpu"
    @Option(help: "OpenCL device (index or name substring).") var device = "-1"
    @Option(help: "CPU threads (default: one per core).") var threads: Int?

    func run() throws {
        guard let dir = model ?? ProcessInfo.processInfo.environment["FLAMINGO_MODEL"] else {
            throw ValidationError("no model: pass --model DIR or set FLAMINGO_MODEL")
        }
        guard (0...65535).contains(port), parallel >= 1, ctx >= 0, maxBodyMb >= 1, maxImages >= 0, queue >= 1, (0...(1 << 20)).contains(imageCacheMb) else {
            throw ValidationError("--port, --parallel, --ctx, --max-body-mb, --max-images, --queue or --image-cache-mb is out of range")
        }
        var o = ServerOptions(modelDirectory: dir)
        o.host = host
        o.port = port
        o.parallel = parallel
        o.contextLength = ctx
        o.maxBodyBytes = maxBodyMb << 20
        o.maxImages = maxImages
        o.mediaPath = mediaPath
        o.queueLimit = queue
        o.imageCacheBytes = imageCacheMb << 20
        if let apiKeyFile {
            guard let text = try? String(contentsOfFile: apiKeyFile, encoding: .utf8),
                  let first = text.split(separator: "\n").first, !first.isEmpty else {
                throw ValidationError("--api-key-file \(apiKeyFile): unreadable or empty")
            }
            o.apiKey = String(first)
        } else {
            o.apiKey = apiKey
        }
        switch backend {
        case "cpu": o.backend = .cpu
        case "opencl": o.backend = try .openCL(device: device == "-1" ? nil : device)
        default: throw ValidationError("unknown backend \(backend) (cpu or opencl)")
        }
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be positive") }
            Threads.set(threads)
        }
        let options = o
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var failure: Error?
        Task.detached {
            do { try await FlamingoServer.run(options) } catch { failure = error }
            done.signal()
        }
        done.wait()
        if let failure { throw failure }
    }
}
