/// One tensor a component expects to find in the model directory.
public struct WeightSpec: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public init(_ name: String, _ shape: [Int]) { self.name = name; self.shape = shape }
}

extension Array where Element == WeightSpec {
    /// Weight and bias of a LayerNorm (or weight only when `bias` is false).
    mutating func norm(_ prefix: String, _ dim: Int, bias: Bool = true) {
        append(WeightSpec("\(prefix).weight", [dim]))
        if bias { append(WeightSpec("\(prefix).bias", [dim])) }
    }

    /// A Linear layer in PyTorch layout: weight [out, in] (+ bias [out]).
    mutating func linear(_ prefix: String, out: Int, in inDim: Int, bias: Bool) {
        append(WeightSpec("\(prefix).weight", [out, inDim]))
        if bias { append(WeightSpec("\(prefix).bias", [out])) }
    }
}
