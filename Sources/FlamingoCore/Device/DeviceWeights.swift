import Glibc

/// Uploads a model's weights to an OpenCL device once, at load: matrices in
/// their stored type (f16/bf16 stay 16-bit and are widened in the kernels),
/// norm weights and biases as f32 vectors.
struct DeviceWeights {
    let rt: OpenCLRuntime
    let model: WeightSource

    /// A Linear weight [out, in] (higher ranks flattened after the first
    /// dimension); affine-quantized ones stay packed (scales and biases as f32).
    func matrix(_ name: String) throws -> CLWeight {
        if isQuantized(name) { return try packed(name, rowOrder: nil) }
        let t = try model.tensor(name)
        let rows = t.shape.count <= 1 ? 1 : t.shape[0]
        return try rt.weight(t, rows: rows, cols: rows == 0 ? 0 : t.count / rows)
    }

    /// A Linear weight whose output rows are reordered: row i of the result
    /// is row `order[i]` of the stored one (GPT-NeoX's per-head interleaved
    /// q/k/v become [Q | K | V], so one view per part addresses them).
    func matrix(_ name: String, rowOrder order: [Int]) throws -> CLWeight {
        if isQuantized(name) { return try packed(name, rowOrder: order) }
        let t = try model.tensor(name)
        guard t.shape.count == 2, order.count == t.shape[0] else {
            throw FlamingoError.internal("row order of \(order.count) for \(name) \(t.shape)")
        }
        let size = t.dtype.byteSize, rowBytes = t.shape[1] * size
        let type = try CLWeightType(t)
        guard let src = t.data.baseAddress, t.data.count >= order.count * rowBytes else {
            throw FlamingoError.internal("tensor \(name) has no data")
        }
        var bytes = [UInt8](repeating: 0, count: order.count * rowBytes)
        bytes.withUnsafeMutableBytes { dst in
            guard let base = dst.baseAddress else { return }
            for (i, r) in order.enumerated() { memcpy(base + i * rowBytes, src + r * rowBytes, rowBytes) }
        }
        let buffer = try rt.buffer(bytes: bytes.count, zeroed: false)
        try bytes.withUnsafeBytes { try rt.upload($0, to: buffer) }
        return CLWeight(buffer, type: type, rows: t.shape[0], cols: t.shape[1])
    }

    /// An embedding table for row gathers: as stored, or f32 when quantized.
    func table(_ name: String) throws -> CLWeight {
        guard isQuantized(name) else { return try matrix(name) }
        let w = try model.weight(name).widened()
        return try rt.weight(Array(UnsafeBufferPointer(start: w.data, count: w.rows * w.cols)), rows: w.rows, cols: w.cols)
    }

    func isQuantized(_ name: String) -> Bool {
        name.hasSuffix(".weight") && model.contains(Model.module(ofWeight: name) + ".scales")
    }

    /// A packed weight (validated by the CPU `Weight`), its rows optionally
    /// reordered as `matrix(_:rowOrder:)` does.
    private func packed(_ name: String, rowOrder order: [Int]?) throws -> CLWeight {
        let w = try model.weight(name)
        guard case .affine(let bits, let group) = w.format, let parts = w.packedParts() else {
            throw FlamingoError.internal("\(name) is not an affine weight")
        }
        let rows = w.rows, groups = w.cols / group, rowBytes = w.cols * bits / 8
        let order = order ?? Array(0..<rows)
        guard order.count == rows else { throw FlamingoError.internal("row order of \(order.count) for \(name)") }
        var bytes = [UInt8](repeating: 0, count: rows * rowBytes)
        var scales = [Float](repeating: 0, count: rows * groups), biases = scales
        for (i, r) in order.enumerated() {
            for b in 0..<rowBytes { bytes[i * rowBytes + b] = parts.words[r * rowBytes + b] }
            for g in 0..<groups { scales[i * groups + g] = parts.scale(r * groups + g); biases[i * groups + g] = parts.bias(r * groups + g) }
        }
        return try bytes.withUnsafeBytes {
            try rt.weight(packed: $0, scales: scales, biases: biases, bits: bits, group: group, rows: rows, cols: w.cols)
        }
    }

    /// A vector (norm weight, bias, gate, embedding row table) as f32.
    func vector(_ name: String, rowOrder order: [Int]? = nil) throws -> CLView {
        let m = try model.matrix(name)
        let all = Array(UnsafeBufferPointer(start: m.data, count: m.rows * m.cols))
        return CLView(try rt.buffer(order.map { o in o.map { all[$0] } } ?? all))
    }

    /// Weight and optional bias of a LayerNorm or Linear under `prefix`.
    func norm(_ prefix: String) throws -> (weight: CLView, bias: CLView?) {
        (try vector(prefix + ".weight"), model.contains(prefix + ".bias") ? try vector(prefix + ".bias") : nil)
    }
}

/// Activation buffers of one forward pass, by name, grown on demand and
/// reused across layers and steps (the device queue runs in order, so a
/// later op never overtakes an earlier reader).
final class DeviceScratch {
    private let rt: OpenCLRuntime
    private var buffers: [String: CLBuffer] = [:]

    init(_ rt: OpenCLRuntime) { self.rt = rt }

    /// A view of at least `floats` f32 elements (contents undefined).
    func take(_ name: String, _ floats: Int) throws -> CLView {
        if let b = buffers[name], b.byteCount >= floats * 4 { return CLView(b) }
        let b = try rt.buffer(bytes: max(floats, 1) * 4, zeroed: false)
        buffers[name] = b
        return CLView(b)
    }
}
