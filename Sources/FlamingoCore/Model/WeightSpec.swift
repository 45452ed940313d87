/// One tensor a component expects to find in the model directory.
public struct WeightSpec: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    /// A Linear or embedding matrix [out, in] that may be stored as packed
    /// affine integers (`.weight` U32, `.scales`, `.biases`; docs/model-format.md).
    public let quantizable: Bool
    public init(_ name: String, _ shape: [Int], quantizable: Bool = false) {
        self.name = name; self.shape = shape; self.quantizable = quantizable && shape.count == 2
    }
}

extension Array where Element == WeightSpec {
    /// Weight and bias of a LayerNorm (or weight only when `bias` is false).
    mutating func norm(_ prefix: String, _ dim: Int, bias: Bool = true) {
        append(WeightSpec("\(prefix).weight", [dim]))
        if bias { append(WeightSpec("\(prefix).bias", [dim])) }
    }

    /// A Linear layer in PyTorch layout: weight [out, in] (+ bias [out]).
    mutating func linear(_ prefix: String, out: Int, in inDim: Int, bias: Bool) {
        append(WeightSpec("\(prefix).weight", [out, inDim], quantizable: true))
        if bias { append(WeightSpec("\(prefix).bias", [out])) }
    }
}
