import CFlamingoKernels
import COpenBLAS
import Dispatch
import Glibc

// Element-wise kernels. Explicit SIMD16 lanes with a scalar tail: Swift
// neither vectorises float reductions nor contracts a*b+c to FMA by itself.

typealias V16 = SIMD16<Float>

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> V16 {
    UnsafeRawPointer(p).loadUnaligned(as: V16.self)
}

@inline(__always) func store16(_ v: V16, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self)
}

/// y += x
public func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    while i + 16 <= n { store16(load16(y + i) + load16(x + i), y + i); i += 16 }
    while i < n { y[i] += x[i]; i += 1 }
}

/// y += a·x
public func axpy(_ a: Float, _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
    var i = 0
    let va = V16(repeating: a)
    while i + 16 <= n { store16(load16(y + i).addingProduct(va, load16(x + i)), y + i); i += 16 }
    while i < n { y[i] += a * x[i]; i += 1 }
}

/// Σ x·y
public func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) -> Float {
    var a0 = V16(), a1 = V16()
    var i = 0
    while i + 32 <= n {
        a0 = a0.addingProduct(load16(x + i), load16(y + i))
        a1 = a1.addingProduct(load16(x + i + 16), load16(y + i + 16))
        i += 32
    }
    if i + 16 <= n { a0 = a0.addingProduct(load16(x + i), load16(y + i)); i += 16 }
    var s = (a0 + a1).sum()
    while i < n { s += x[i] * y[i]; i += 1 }
    return s
}

public func scaleInPlace(_ x: UnsafeMutablePointer<Float>, by a: Float, count n: Int) {
    for i in 0..<n { x[i] *= a }
}

/// Exact GELU, 0.5·x·(1 + erf(x/√2)), as PyTorch's default nn.GELU.
public func gelu(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    parallelChunks(n) { fk_gelu(x + $0.lowerBound, $0.count) }
}

/// QuickGELU of the OpenAI CLIP weights: x·σ(1.702·x).
public func quickGELU(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    parallelChunks(n) { fk_quick_gelu(x + $0.lowerBound, $0.count) }
}

/// SwiGLU: gate ← silu(gate)·up.
public func swiGLU(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
    parallelChunks(n) { fk_swiglu(gate + $0.lowerBound, up + $0.lowerBound, $0.count) }
}

/// In-place softmax of one row after subtracting its maximum; -inf entries
/// get 0, an all -inf row becomes uniform.
public func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    fk_softmax(x, n)
}

/// Splits [0, n) into chunks run on all cores when the work is large enough
/// to pay for waking threads (≥ 64K elements per chunk); else inline.
func parallelChunks(_ n: Int, _ body: (Range<Int>) -> Void) {
    let grain = 1 << 16
    let chunks = min(Threads.count, (n + grain - 1) / grain)
    if chunks <= 1 { body(0..<n); return }
    let per = (n + chunks - 1) / chunks
    Threads.run(chunks) { c in
        let lo = c * per
        body(lo..<min(n, lo + per))
    }
}

/// CPU thread count, per process: OpenBLAS's pool for the matrix products
/// and the chunking of the element-wise kernels.
public enum Threads {
    nonisolated(unsafe) public private(set) static var count: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    public static func set(_ n: Int) {
        count = max(1, n)
        openblas_set_num_threads(Int32(count))
    }

    /// FLAMINGO_THREAD_POOL=0 runs every job on libdispatch instead of the pool (read once).
    static let poolEnabled = getenv("FLAMINGO_THREAD_POOL").map { String(cString: $0) != "0" } ?? true

    /// Calls body(i) for every i in 0..<n on up to `count` threads and returns when all have
    /// returned: on the kernels' own pool (kernels/cpu/pool.c), or on libdispatch when that
    /// pool is taken (a nested call, another thread's job).
    static func run(_ n: Int, _ body: (Int) -> Void) {
        if !poolEnabled { DispatchQueue.concurrentPerform(iterations: n, execute: body); return }
        withoutActuallyEscaping(body) { escaping in
            let job = PoolJob(escaping)
            let ran = fk_pool_run(n, { ctx, i in
                guard let ctx else { return }
                Unmanaged<PoolJob>.fromOpaque(ctx).takeUnretainedValue().body(i)
            }, Unmanaged.passUnretained(job).toOpaque(), Int32(clamping: count))
            if ran != 0 { DispatchQueue.concurrentPerform(iterations: n, execute: escaping) }
            withExtendedLifetime(job) {}
        }
    }
}

/// The closure of a pool job, passed to C as its context.
private final class PoolJob {
    let body: (Int) -> Void
    init(_ body: @escaping (Int) -> Void) { self.body = body }
}

/// The streaming read rate of this machine in bytes per second, on every
/// CPU thread (the decode floor of the benchmarks: weight bytes per token
/// over this rate). Reads a 1 GiB buffer `passes` times with the kernels'
/// software prefetch; the best pass counts.
public func measureReadBandwidth(passes: Int = 5) -> Double {
    let n = 1 << 28
    let buffer = Buffer(n)
    for i in stride(from: 0, to: n, by: 1024) { buffer[i] = 1 }
    var best = 0.0
    let chunks = Threads.count * 4, per = n / chunks
    for _ in 0..<passes {
        var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t)
        let t0 = Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
        var sink = [Float](repeating: 0, count: chunks)
        sink.withUnsafeMutableBufferPointer { s in
            Threads.run(chunks) { c in s[c] = fk_stream_sum(buffer.p + c * per, per) }
        }
        clock_gettime(CLOCK_MONOTONIC, &t)
        let dt = Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 - t0
        if sink.reduce(0, +) >= 0 { best = max(best, Double(n * 4) / dt) }  // (uses the sums)
    }
    return best
}
