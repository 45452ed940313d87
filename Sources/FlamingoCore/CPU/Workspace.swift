/// Scratch memory for one forward step, reused across steps so decoding
/// allocates nothing once the first step has sized it. `take` hands out
/// zeroed, 64-byte aligned slices; `reset` makes all of them free again
/// (callers reset only when every slice is dead, e.g. between layers).
/// Slices never move: a request that does not fit the current chunk starts
/// a new chunk, which is kept for the next steps.
public final class Workspace {
    private var chunks: [Buffer] = []
    private var chunk = 0
    private var offset = 0

    public init() {}

    public func reset() {
        chunk = 0
        offset = 0
    }

    public func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        let n = (max(count, 1) + 15) & ~15  // keep every slice 64-byte aligned
        while chunk < chunks.count {
            if offset + n <= chunks[chunk].count {
                let p = chunks[chunk].p + offset
                offset += n
                p.initialize(repeating: 0, count: n)
                return p
            }
            chunk += 1
            offset = 0
        }
        let size = max(n, 1 << 16, (chunks.last?.count ?? 0) * 2)
        chunks.append(Buffer(size))
        offset = n
        return chunks[chunk].p
    }
}
