/// A 64-byte aligned, zero-initialised f32 activation buffer. Kernels take
/// raw pointers; this owns the memory.
public final class Buffer: @unchecked Sendable {
    public let count: Int
    public let p: UnsafeMutablePointer<Float>

    public init(_ count: Int) {
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        p = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
    }

    public convenience init(_ values: [Float]) {
        self.init(values.count)
        for (i, v) in values.enumerated() { p[i] = v }
    }

    deinit { UnsafeMutableRawPointer(p).deallocate() }

    public var array: [Float] { Array(UnsafeBufferPointer(start: p, count: count)) }
    public subscript(i: Int) -> Float {
        get { p[i] }
        set { p[i] = newValue }
    }
}
