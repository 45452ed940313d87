/// One token sequence's state on the device: its self-attention keys and
/// values per decoder layer, which cached positions are real tokens (one
/// byte each, for the attention kernels' key mask), and the keys/values of
/// its media per cross-attention block. The host `KVCache` keeps the
/// bookkeeping (length, validity, rotary positions) without storage.
final class DeviceSequence {
    let rt: OpenCLRuntime
    let width: Int                       // kvHeads · headDim
    let capacity: Int
    private(set) var keys: [CLBuffer]
    private(set) var values: [CLBuffer]
    private(set) var valid: CLBuffer
    private(set) var reserved: Int
    /// Per decoder layer: K|V rows of the media tokens [tokens, 2·inner] (nil: no block or no media).
    var mediaKV: [CLBuffer?]
    var mediaTokens = 0

    init(_ rt: OpenCLRuntime, layers: Int, width: Int, capacity: Int, reserve: Int = 64) throws {
        self.rt = rt
        self.width = width
        self.capacity = capacity
        let rows = min(max(reserve, 1), max(capacity, 1))
        reserved = rows
        keys = try (0..<layers).map { _ in try rt.buffer(bytes: max(rows * width, 1) * 4, zeroed: false) }
        values = try (0..<layers).map { _ in try rt.buffer(bytes: max(rows * width, 1) * 4, zeroed: false) }
        valid = try rt.buffer(bytes: rows)
        mediaKV = Array(repeating: nil, count: layers)
    }

    /// Makes room for `rows` positions (doubling), keeping the first `length`.
    func reserve(_ rows: Int, length: Int) throws {
        guard rows > reserved else { return }
        let n = min(capacity, max(rows, reserved * 2))
        func grow(_ b: CLBuffer, _ rowBytes: Int) throws -> CLBuffer {
            let g = try rt.buffer(bytes: n * rowBytes, zeroed: rowBytes == 1)
            try rt.copy(b, to: g, bytes: length * rowBytes)
            return g
        }
        keys = try keys.map { try grow($0, width * 4) }
        values = try values.map { try grow($0, width * 4) }
        valid = try grow(valid, 1)
        reserved = n
    }

    /// Records which of the new positions from `start` are real tokens.
    func setValid(_ v: [Bool], from start: Int) throws {
        try rt.upload(v.map { UInt8($0 ? 1 : 0) }, to: valid, at: start)
    }

    /// An independent copy of the first `length` positions (beams); the
    /// media keys/values are immutable and shared.
    func copy(length: Int) throws -> DeviceSequence {
        let c = try DeviceSequence(rt, layers: keys.count, width: width, capacity: capacity, reserve: max(length + 16, 1))
        for l in keys.indices {
            try rt.copy(keys[l], to: c.keys[l], bytes: length * width * 4)
            try rt.copy(values[l], to: c.values[l], bytes: length * width * 4)
        }
        try rt.copy(valid, to: c.valid, bytes: length)
        c.mediaKV = mediaKV
        c.mediaTokens = mediaTokens
        return c
    }
}

/// A segment of a batched device step: its rows in the step's activations,
/// its first cache position, and its sequence's device state.
struct DeviceSegment {
    let rows: Range<Int>
    let start: Int
    let state: DeviceSequence
    let positions: CLView                // rotary position ids of its rows (Int32, uploaded once per step)
}
