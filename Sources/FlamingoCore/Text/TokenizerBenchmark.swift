import Glibc

extension Tokenizer {
    /// Encoding throughput on the calling thread, in MB/s (10^6 bytes of
    /// UTF-8 input per second): `text` is encoded repeatedly (without special
    /// tokens) for at least `minimumSeconds`. With `coldCache` the word cache
    /// is emptied before every pass, which measures the BPE merges themselves;
    /// otherwise the first pass warms the cache and is not timed.
    public func measureEncodeThroughput(_ text: String, minimumSeconds: Double = 1.0,
                                        coldCache: Bool = false) throws -> Double {
        let bytes = Double(text.utf8.count)
        guard bytes > 0 else { return 0 }
        func now() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        }
        if !coldCache { _ = try encode(text, addSpecialTokens: false) }
        var passes = 0
        var elapsed = 0.0
        while elapsed < minimumSeconds || passes == 0 {
            if coldCache { clearCache() }
            let t0 = now()
            _ = try encode(text, addSpecialTokens: false)
            elapsed += now() - t0
            passes += 1
        }
        return bytes * Double(passes) / elapsed / 1e6
    }
}
