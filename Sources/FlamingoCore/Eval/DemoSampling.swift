/// How demonstrations are chosen for each test example.
public enum DemoMode: String, Sendable {
    /// A seeded partial Fisher–Yates shuffle of the pool, per test example.
    case random
    /// The example's "demonstrations" ids, else the first k of the pool.
    case fixed
}

/// SplitMix64 (Steele et al.), chosen because it is trivial to replicate
/// bit for bit in Python: the PyTorch evaluator draws the same demos.
public struct SplitMix64: Sendable {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state = state &+ 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public enum DemoSampler {
    /// Demonstration count: zero-shot still takes 2 demos' text (spec/70 §1).
    public static func effectiveShots(_ shots: Int) -> Int { shots == 0 ? 2 : shots }

    /// k distinct pool indices for test example `query` (0-based, test file
    /// order): the first k of a partial Fisher–Yates shuffle driven by
    /// SplitMix64 seeded with seed · 1000003 + query.
    public static func randomIndices(poolSize n: Int, count k: Int, seed: Int, query: Int) throws -> [Int] {
        guard k <= n else { throw FlamingoError.invalidArgument("\(k) demonstrations requested from a pool of \(n)") }
        var rng = SplitMix64(state: UInt64(bitPattern: Int64(seed)) &* 1_000_003 &+ UInt64(query))
        // The shuffle of idx = 0..<n, storing only the moved entries: VQAv2's
        // pool has 443k questions and is sampled for every test question.
        var moved: [Int: Int] = [:]
        for j in 0..<k {
            let r = j + Int(rng.next() % UInt64(n - j))
            (moved[j], moved[r]) = (moved[r] ?? r, moved[j] ?? j)
        }
        return (0..<k).map { moved[$0] ?? $0 }
    }

    /// Pool indices of the demonstrations for test example `query`.
    public static func indices(for example: EvalExample, query: Int, pool: [EvalExample], poolIndex: [String: Int],
                               count k: Int, mode: DemoMode, seed: Int) throws -> [Int] {
        switch mode {
        case .random:
            return try randomIndices(poolSize: pool.count, count: k, seed: seed, query: query)
        case .fixed:
            guard let ids = example.demonstrations else {
                guard k <= pool.count else { throw FlamingoError.invalidArgument("\(k) demonstrations requested from a pool of \(pool.count)") }
                return Array(0..<k)
            }
            guard ids.count >= k else {
                throw FlamingoError.invalidFormat("example \(example.id) lists \(ids.count) demonstrations, fewer than \(k)")
            }
            return try ids.prefix(k).map { id in
                guard let i = poolIndex[id] else { throw FlamingoError.invalidFormat("demonstration \(id) of example \(example.id) is not in the train pool") }
                return i
            }
        }
    }
}
