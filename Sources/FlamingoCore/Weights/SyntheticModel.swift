/// A model directory with random weights for a config, in any storage type:
/// what the speed benchmarks run (tools/bench/bench_quant.py) at real
/// geometries without a checkpoint or an f32 copy on disk. Values are
/// small and finite (norm weights 1), so every kernel runs its normal path.
/// Matrices get the types `flamingo quantize --type TYPE` would give them
/// (its default q4 policy included).
public enum SyntheticModel {
    /// `plain`: every matrix in `type` (no default policy), for comparisons at equal bits.
    public static func write(config json: JSON, output: String, type: StorageType, group: Int = 64, plain: Bool = false) throws {
        let config = try ModelConfig(json: json)
        var policy = ModelQuantizer(type: type)
        policy.groupSize = group
        if plain { policy.keep = [] }
        var plan: [(spec: WeightSpec, dtype: DType, bits: Int?)] = []
        var modules: [String: QuantizationConfig.Params?] = [:]
        for spec in config.expectedWeights {
            let module = Model.module(ofWeight: spec.name)
            let target = spec.quantizable ? policy.target(module: module, cols: spec.shape[1]) : type
            if spec.quantizable, let bits = target.bits {
                plan.append((spec, .u32, bits))
                modules[module] = .some(QuantizationConfig.Params(bits: bits, group: group))
            } else {
                plan.append((spec, target.floatType ?? type.floatType ?? .f32, nil))
                if spec.quantizable { modules[module] = .some(nil) }
            }
        }
        var tensors: [(name: String, dtype: DType, shape: [Int])] = []
        for p in plan {
            if let bits = p.bits {
                let module = Model.module(ofWeight: p.spec.name), rows = p.spec.shape[0], cols = p.spec.shape[1]
                tensors += [(p.spec.name, .u32, [rows, cols * bits / 32]), (module + ".scales", .f16, [rows, cols / group]),
                            (module + ".biases", .f16, [rows, cols / group])]
            } else {
                tensors.append((p.spec.name, p.dtype, p.spec.shape))
            }
        }
        let writer = try SafetensorsWriterStream(path: output + "/model.safetensors", tensors: tensors)
        var state: UInt64 = 0x9E3779B97F4A7C15
        func next() -> UInt32 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt32(truncatingIfNeeded: state >> 33)
        }
        for p in plan {
            let n = p.spec.shape.reduce(1, *)
            let isNorm = p.spec.shape.count == 1 && p.spec.name.contains("norm") && p.spec.name.hasSuffix(".weight")
            if let bits = p.bits {
                let words = (0..<(n * bits / 32)).map { _ in next() }
                let groups = n / group
                try words.withUnsafeBytes { try writer.append($0) }
                let scales = [UInt16](repeating: Float16(0.02 / Float((1 << bits) - 1) * 2).bitPattern, count: groups)
                let biases = [UInt16](repeating: Float16(-0.02).bitPattern, count: groups)
                try scales.withUnsafeBytes { try writer.append($0) }
                try biases.withUnsafeBytes { try writer.append($0) }
                continue
            }
            let values = (0..<n).map { _ -> Float in isNorm ? 1 : (Float(next() >> 8) / Float(1 << 24) - 0.5) * 0.04 }
            switch p.dtype {
            case .f16: try values.map { Float16($0).bitPattern }.withUnsafeBytes { try writer.append($0) }
            case .bf16: try values.map { bf16Bits($0) }.withUnsafeBytes { try writer.append($0) }
            default: try values.withUnsafeBytes { try writer.append($0) }
            }
        }
        try writer.close()
        try ModelQuantizer.writeConfig(json, output: output, type: type, group: group, modules: modules)
    }
}
