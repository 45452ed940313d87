import Glibc

/// A loaded model directory: config, memory-mapped weights (validated
/// against the config), and the tokenizer file path. Immutable after load,
/// so one instance may be shared across threads.
public final class Model: @unchecked Sendable {
    public let directory: String
    public let config: ModelConfig
    public let weights: [String: TensorView]
    /// Keeps the mappings alive as long as the model.
    private let files: [SafetensorsFile]

    public init(directory: String) throws {
        self.directory = directory
        var isDir = stat()
        guard stat(directory, &isDir) == 0 else {
            throw FlamingoError.io("model directory \(directory): \(errnoString())")
        }
        guard (isDir.st_mode & S_IFMT) == S_IFDIR else {
            throw FlamingoError.io("\(directory) is not a directory")
        }

        let configBytes = try readWholeFile(directory + "/config.json")
        let json = try withContext("config.json") { try configBytes.withUnsafeBytes { try JSON.parse($0) } }
        config = try ModelConfig(json: json)

        let names = try config.weightFiles ?? Self.safetensorsFiles(in: directory)
        guard !names.isEmpty else { throw FlamingoError.io("\(directory) contains no .safetensors weight file") }
        var files: [SafetensorsFile] = []
        var all: [String: TensorView] = [:]
        for name in names {
            let f = try SafetensorsFile(path: directory + "/" + name)
            for (key, t) in f.tensors {
                if all.updateValue(t, forKey: key) != nil {
                    throw FlamingoError.invalidFormat("tensor \(key) appears in more than one weight file (second: \(name))")
                }
            }
            files.append(f)
        }
        try Self.validate(all, against: config.expectedWeights, quantization: config.quantization)
        self.files = files
        self.weights = all
        Log.info("loaded \(directory): \(config.architecture), \(config.languageModel.family.rawValue) LM, \(all.count) tensors, \(weightBytes) bytes of weights")
    }

    /// Every expected tensor present with its shape (or, for a quantized
    /// matrix, its packed words, scales and biases as the config implies);
    /// nothing unexpected.
    static func validate(_ found: [String: TensorView], against expected: [WeightSpec],
                         quantization: QuantizationConfig?) throws {
        var missing: [String] = []
        var expectedNames = Set(expected.map(\.name))
        for spec in expected {
            guard let t = found[spec.name] else { missing.append(spec.name); continue }
            let module = module(ofWeight: spec.name)
            if found[module + ".scales"] != nil || found[module + ".biases"] != nil {
                guard spec.quantizable, spec.name.hasSuffix(".weight") else {
                    throw FlamingoError.invalidFormat("tensor \(spec.name) (shape \(spec.shape)) has a quantization block (\(module).scales/.biases), but only Linear and embedding matrices may be quantized")
                }
                try validateQuantized(spec, found, config: quantization)
                expectedNames.insert(module + ".scales")
                expectedNames.insert(module + ".biases")
                continue
            }
            guard t.dtype.isFloat else {
                throw FlamingoError.unsupported("tensor \(spec.name) has dtype \(t.dtype.rawValue); weights must be F32, F16 or BF16 (or U32 with scales and biases)")
            }
            guard t.shape == spec.shape else {
                throw FlamingoError.invalidFormat("tensor \(spec.name) has shape \(t.shape), config implies \(spec.shape)")
            }
        }
        let unexpected = found.keys.filter { !expectedNames.contains($0) }.sorted()
        if !missing.isEmpty {
            throw FlamingoError.invalidFormat("\(missing.count) tensor(s) missing from the weights: \(list(missing))")
        }
        if !unexpected.isEmpty {
            throw FlamingoError.invalidFormat("\(unexpected.count) unexpected tensor(s) not implied by config.json: \(list(unexpected))")
        }
    }

    private static func list(_ names: [String]) -> String {
        names.count <= 8 ? names.joined(separator: ", ")
            : names.prefix(8).joined(separator: ", ") + ", … (\(names.count - 8) more)"
    }

    static func safetensorsFiles(in dir: String) throws -> [String] {
        try listDirectory(dir).filter { $0.hasSuffix(".safetensors") }.sorted()
    }

    public func tensor(_ name: String) throws -> TensorView {
        guard let t = weights[name] else { throw FlamingoError.notFound("no tensor named \(name)") }
        return t
    }

    public var parameterCount: Int { config.expectedWeights.reduce(0) { $0 + $1.shape.reduce(1, *) } }

    /// The storage formats of the weight matrices and how many bytes each takes
    /// (scales and biases included), e.g. ["q4": …, "bf16": …, "f32": …].
    public var storageBytes: [String: Int] {
        var out: [String: Int] = [:]
        for spec in config.expectedWeights {
            guard let t = weights[spec.name] else { continue }
            let module = Self.module(ofWeight: spec.name)
            if let s = weights[module + ".scales"], let b = weights[module + ".biases"] {
                let bits = t.shape.count == 2 && spec.shape.count == 2 && spec.shape[1] > 0 ? t.shape[1] * 32 / spec.shape[1] : 0
                out["q\(bits)", default: 0] += t.data.count + s.data.count + b.data.count
            } else {
                out[t.dtype.rawValue.lowercased(), default: 0] += t.data.count
            }
        }
        return out
    }
    public var weightBytes: Int { weights.values.reduce(0) { $0 + $1.data.count } }
    public var tokenizerPath: String { directory + "/" + config.tokenizerFile }
}

/// Where components find their weights: a loaded model directory, or one
/// safetensors file (tests and tools). Matrices of f32 tensors point into
/// the source's memory map, so the source must outlive them.
public protocol WeightSource: AnyObject {
    func tensor(_ name: String) throws -> TensorView
    func contains(_ name: String) -> Bool
    /// Bits and group size of a quantized module (nil: not known here).
    func quantization(module: String) -> QuantizationConfig.Params?
}

extension WeightSource {
    /// A weight as a 2-D f32 matrix ([out, in]; 1-D tensors are one row;
    /// higher ranks are flattened after the first dimension); 16-bit and
    /// quantized weights are widened.
    func matrix(_ name: String) throws -> Matrix {
        let module = Model.module(ofWeight: name)
        if name.hasSuffix(".weight"), contains(module + ".scales") { return try weight(name).widened() }
        let t = try tensor(name)
        let rows = t.shape.count <= 1 ? 1 : t.shape[0]
        return Matrix(t, rows: rows, cols: rows == 0 ? 0 : t.count / rows)
    }

    /// A Linear or embedding weight [out, in] in its stored format (f32, f16,
    /// bf16, or affine integers with `<module>.scales` and `.biases`).
    func weight(_ name: String) throws -> Weight {
        let module = Model.module(ofWeight: name)
        if name.hasSuffix(".weight"), contains(module + ".scales") {
            guard let p = quantization(module: module) else {
                throw FlamingoError.invalidFormat("tensor \(name) is quantized, but no quantization parameters are known for \(module)")
            }
            return try Weight(name: name, bits: p.bits, group: p.group, packed: try tensor(name),
                              scales: try tensor(module + ".scales"), biases: try tensor(module + ".biases"))
        }
        let t = try tensor(name)
        let rows = t.shape.count <= 1 ? 1 : t.shape[0]
        return Weight(t, rows: rows, cols: rows == 0 ? 0 : t.count / rows)
    }

    /// Weight and optional bias of a LayerNorm under `prefix`.
    func layer(_ prefix: String) throws -> (weight: Matrix, bias: Matrix?) {
        (try matrix(prefix + ".weight"), contains(prefix + ".bias") ? try matrix(prefix + ".bias") : nil)
    }

    /// Weight (in its stored format) and optional bias of a Linear under `prefix`.
    func linearLayer(_ prefix: String) throws -> (weight: Weight, bias: Matrix?) {
        (try weight(prefix + ".weight"), contains(prefix + ".bias") ? try matrix(prefix + ".bias") : nil)
    }
}

extension Model: WeightSource {
    public func contains(_ name: String) -> Bool { weights[name] != nil }
    public func quantization(module: String) -> QuantizationConfig.Params? { config.quantization?.params(module: module) }
}

extension SafetensorsFile: WeightSource {
    public func tensor(_ name: String) throws -> TensorView {
        guard let t = tensors[name] else { throw FlamingoError.notFound("no tensor named \(name)") }
        return t
    }
    public func contains(_ name: String) -> Bool { tensors[name] != nil }
    /// A lone file carries no config: its quantized matrices (if any) are
    /// described by a `quantization` JSON entry in the header's metadata.
    public func quantization(module: String) -> QuantizationConfig.Params? {
        guard let text = metadata["quantization"], let json = try? JSON.parse(text),
              let q = try? QuantizationConfig(json) else { return nil }
        return q.params(module: module)
    }
}
