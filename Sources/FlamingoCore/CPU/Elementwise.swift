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
    for i in 0..<n { x[i] = 0.5 * x[i] * (1 + erff(x[i] * 0.70710678118654752)) }
}

/// QuickGELU of the OpenAI CLIP weights: x·σ(1.702·x).
public func quickGELU(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    for i in 0..<n { x[i] = x[i] / (1 + expf(-1.702 * x[i])) }
}

/// SwiGLU: gate ← silu(gate)·up.
public func swiGLU(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
    for i in 0..<n { gate[i] = gate[i] / (1 + expf(-gate[i])) * up[i] }
}

/// In-place softmax of one row after subtracting its maximum.
public func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
    guard n > 0 else { return }
    var m = -Float.infinity
    for i in 0..<n { m = max(m, x[i]) }
    var s: Float = 0
    for i in 0..<n { let e = expf(x[i] - m); x[i] = e; s += e }
    let inv = 1 / s
    for i in 0..<n { x[i] *= inv }
}
