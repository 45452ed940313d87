/// Self-attention keys and values of one sequence, per decoder layer, plus
/// what attention needs to know about each cached position: whether it is a
/// real token (left padding is not) and its rotary position id.
///
/// Storage grows with the sequence (doubling, up to `capacity`), so a short
/// sequence — or a beam's copy — costs memory for its length, not for the
/// whole context.
public final class KVCache {
    public let capacity: Int
    public let width: Int                  // kvHeads · headDim
    public private(set) var length = 0
    private(set) var keys: [Buffer]
    private(set) var values: [Buffer]
    var valid: [Bool]
    var positions: [Int]

    public init(layers: Int, capacity: Int, width: Int, reserve: Int = 64) {
        self.capacity = capacity
        self.width = width
        let rows = min(max(reserve, 1), max(capacity, 1))
        keys = (0..<layers).map { _ in Buffer(rows * width) }
        values = (0..<layers).map { _ in Buffer(rows * width) }
        valid = []
        positions = []
    }

    /// Rows the buffers can hold now.
    var reserved: Int { width == 0 ? capacity : (keys.first?.count ?? 0) / width }

    /// Grows the buffers to hold at least `rows` positions, keeping content.
    private func reserve(_ rows: Int) {
        guard rows > reserved else { return }
        let newRows = min(capacity, max(rows, reserved * 2))
        func grow(_ b: Buffer) -> Buffer {
            let n = Buffer(newRows * width)
            n.p.update(from: b.p, count: length * width)
            return n
        }
        keys = keys.map(grow)
        values = values.map(grow)
    }

    /// Reserves `n` new positions; returns the first one.
    func append(valid v: [Bool]) throws -> Int {
        guard length + v.count <= capacity else {
            throw FlamingoError.invalidArgument("sequence of \(length + v.count) tokens exceeds the context of \(capacity)")
        }
        reserve(length + v.count)
        let start = length
        // Rotary position ids count real tokens only, as HF generate derives
        // them from the attention mask (cumsum − 1; pads get 1).
        var next = positions.indices.reversed().first { valid[$0] }.map { positions[$0] + 1 } ?? 0
        for ok in v {
            valid.append(ok)
            positions.append(ok ? next : 1)
            if ok { next += 1 }
        }
        length += v.count
        return start
    }

    /// An independent copy of the first `length` positions (for beams).
    public func copy() -> KVCache {
        let c = KVCache(layers: keys.count, capacity: capacity, width: width, reserve: length + 16)
        for l in keys.indices {
            c.keys[l].p.update(from: keys[l].p, count: length * width)
            c.values[l].p.update(from: values[l].p, count: length * width)
        }
        c.length = length
        c.valid = valid
        c.positions = positions
        return c
    }

    /// Forgets every position from `n` on.
    public func truncate(to n: Int) {
        guard n < length else { return }
        length = max(n, 0)
        valid.removeSubrange(length...)
        positions.removeSubrange(length...)
    }
}
