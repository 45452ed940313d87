/// Token embedding and rotary positions on the device
/// (kernels/opencl/embedding.cl, rotary.cl).
extension OpenCLRuntime {
    /// Row r of y = row ids[r] of `table` ([vocab, dim], f32/f16/bf16), for
    /// `count` ids (Int32) already on the device. An id outside the table
    /// gives a zero row (the kernel never reads outside it); validate ids
    /// on the host, as `embedding(tokens:...)` does.
    public func embedding(ids: CLView, count: Int, table: CLWeight, into y: CLView) throws {
        let op = "embedding"
        try table.check(op)
        try ids.check(rows: 1, cols: count, elementSize: 4, "ids", op)
        try y.check(rows: count, cols: table.cols, "y", op)
        guard table.affine == nil else { throw FlamingoError.unsupported("OpenCL embedding: quantized tables are gathered as f32 (DeviceWeights.table)") }
        try launch("embedding_" + table.type.suffix, family: "embedding",
                   global: [clRoundUp(table.cols, 64), count], local: [64, 1]) { a in
            try a.buffer(ids.buffer); try a.offset(ids.offset)
            try a.buffer(table.buffer); try a.offset(table.offset); try a.int(table.stride); try a.int(table.rows)
            try a.buffer(y.buffer); try a.offset(y.offset); try a.int(max(y.stride, table.cols)); try a.int(table.cols)
        }
    }

    /// Embeds host token ids, each checked against the table's size.
    public func embedding(tokens: [Int], table: CLWeight, into y: CLView) throws {
        var ids = [Int32]()
        ids.reserveCapacity(tokens.count)
        for t in tokens {
            guard t >= 0, t < table.rows, let i = Int32(exactly: t) else {
                throw FlamingoError.invalidArgument("token id \(t) is outside the vocabulary of \(table.rows)")
            }
            ids.append(i)
        }
        guard !ids.isEmpty else { return }
        try embedding(ids: CLView(try temporaryBuffer(ids)), count: ids.count, table: table, into: y)
    }

    /// Rotary embedding, rotate-half convention, in place on the first
    /// `dims` channels of each of `heads` heads (head h at column h·headDim)
    /// of `rows` rows of x, at `positions` (Int32 per row, on the device).
    public func rotary(_ x: CLView, rows: Int, heads: Int, headDim: Int, dims: Int, theta: Float,
                       positions: CLView) throws {
        let op = "rotary"
        guard dims >= 0, dims <= headDim, heads >= 0 else {
            throw FlamingoError.invalidArgument("OpenCL rotary: \(dims) rotary dims for heads of \(headDim)")
        }
        try x.check(rows: rows, cols: heads * headDim, "x", op)
        try positions.check(rows: 1, cols: rows, elementSize: 4, "positions", op)
        let half = dims / 2
        guard half > 0, heads > 0 else { return }
        let table = try rotaryTable(dims: dims, theta: theta)
        try launch("rotary", family: "rotary", global: [clRoundUp(half, 64), rows], local: [64, 1]) { a in
            try a.buffer(x.buffer); try a.offset(x.offset); try a.int(max(x.stride, heads * headDim))
            try a.buffer(positions.buffer); try a.offset(positions.offset)
            try a.buffer(table)
            try a.int(heads); try a.int(headDim); try a.int(half)
        }
    }

    /// Rotary with host positions.
    public func rotary(_ x: CLView, rows: Int, heads: Int, headDim: Int, dims: Int, theta: Float,
                       positions: [Int]) throws {
        guard positions.count >= rows else {
            throw FlamingoError.invalidArgument("OpenCL rotary: \(positions.count) positions for \(rows) rows")
        }
        guard rows > 0 else { return }
        let p = try positions.prefix(rows).map { v -> Int32 in
            guard let i = Int32(exactly: v) else { throw FlamingoError.invalidArgument("position \(v) does not fit 32 bits") }
            return i
        }
        try rotary(x, rows: rows, heads: heads, headDim: headDim, dims: dims, theta: theta,
                   positions: CLView(try temporaryBuffer(p)))
    }

    /// inv_freq[i] = 1/theta^(2i/dims) in f32 exactly as `applyRotary`
    /// computes it (glibc powf), uploaded once per (dims, theta).
    private func rotaryTable(dims: Int, theta: Float) throws -> CLBuffer {
        try lock.locked {
            let key = UInt64(dims) << 32 | UInt64(theta.bitPattern)
            if let t = rotaryTables[key] { return t }
            let half = dims / 2
            let inv = (0..<half).map { 1 / powf(theta, Float(2 * $0) / Float(dims)) }
            let t = try buffer(inv)
            rotaryTables[key] = t
            return t
        }
    }
}

import Glibc
