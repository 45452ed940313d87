import Foundation

/// The server's counters and gauges, exposed at GET /metrics in Prometheus' text format.
final class Metrics: @unchecked Sendable {
    struct Values {
        var requests = 0.0
        var failedRequests = 0.0
        var promptTokens = 0.0
        var generatedTokens = 0.0
        var promptSeconds = 0.0
        var generateSeconds = 0.0
        var encodeSeconds = 0.0
        var imageCacheHits = 0.0
        var imageCacheMisses = 0.0
        var imageCacheBytes = 0.0
        var queueDepth = 0.0
        var busySessions = 0.0
    }

    private let lock = NSLock()
    private var values = Values()

    func add(_ key: WritableKeyPath<Values, Double>, _ amount: Double) { lock.withLock { values[keyPath: key] += amount } }
    func add(_ key: WritableKeyPath<Values, Double>, _ amount: Int) { add(key, Double(amount)) }
    func set(_ key: WritableKeyPath<Values, Double>, _ value: Int) { lock.withLock { values[keyPath: key] = Double(value) } }

    var text: String {
        let v = lock.withLock { values }
        let rows: [(String, String, String, Double)] = [
            ("flamingo_requests_total", "counter", "Completion requests received.", v.requests),
            ("flamingo_requests_failed_total", "counter", "Completion requests answered with an error.", v.failedRequests),
            ("flamingo_prompt_tokens_total", "counter", "Prompt tokens evaluated.", v.promptTokens),
            ("flamingo_generated_tokens_total", "counter", "Tokens generated.", v.generatedTokens),
            ("flamingo_prompt_seconds_total", "counter", "Seconds spent on prompts (prefill, image encoding included).", v.promptSeconds),
            ("flamingo_generate_seconds_total", "counter", "Seconds from the end of prefill to the last token, summed over requests.", v.generateSeconds),
            ("flamingo_encode_seconds_total", "counter", "Seconds spent encoding images (cache misses).", v.encodeSeconds),
            ("flamingo_image_cache_hits_total", "counter", "Images whose visual tokens came from the cache.", v.imageCacheHits),
            ("flamingo_image_cache_misses_total", "counter", "Images encoded.", v.imageCacheMisses),
            ("flamingo_image_cache_bytes", "gauge", "Bytes held by the visual-token cache (images and tokens).", v.imageCacheBytes),
            ("flamingo_queue_depth", "gauge", "Jobs waiting for a session.", v.queueDepth),
            ("flamingo_busy_sessions", "gauge", "Sessions advanced in the latest step.", v.busySessions),
        ]
        return rows.map { name, type, help, value in
            "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value == value.rounded() ? String(Int(value)) : String(value))\n"
        }.joined()
    }
}
