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
        try Self.validate(all, against: config.expectedWeights)
        self.files = files
        self.weights = all
        Log.info("loaded \(directory): \(config.architecture), \(config.languageModel.family.rawValue) LM, \(all.count) tensors, \(weightBytes) bytes of weights")
    }

    /// Every expected tensor present with its shape; nothing unexpected.
    static func validate(_ found: [String: TensorView], against expected: [WeightSpec]) throws {
        var missing: [String] = []
        for spec in expected {
            guard let t = found[spec.name] else { missing.append(spec.name); continue }
            guard t.dtype.isFloat else {
                throw FlamingoError.unsupported("tensor \(spec.name) has dtype \(t.dtype.rawValue); weights must be F32, F16 or BF16")
            }
            guard t.shape == spec.shape else {
                throw FlamingoError.invalidFormat("tensor \(spec.name) has shape \(t.shape), config implies \(spec.shape)")
            }
        }
        let expectedNames = Set(expected.map(\.name))
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

    public var parameterCount: Int { weights.values.reduce(0) { $0 + $1.count } }
    public var weightBytes: Int { weights.values.reduce(0) { $0 + $1.data.count } }
    public var tokenizerPath: String { directory + "/" + config.tokenizerFile }
}

/// Where components find their weights: a loaded model directory, or one
/// safetensors file (tests and tools). Matrices of f32 tensors point into
/// the source's memory map, so the source must outlive them.
public protocol WeightSource: AnyObject {
    func tensor(_ name: String) throws -> TensorView
    func contains(_ name: String) -> Bool
}

extension WeightSource {
    /// A weight as a 2-D f32 matrix ([out, in]; 1-D tensors are one row;
    /// higher ranks are flattened after the first dimension).
    func matrix(_ name: String) throws -> Matrix {
        let t = try tensor(name)
        let rows = t.shape.count <= 1 ? 1 : t.shape[0]
        return Matrix(t, rows: rows, cols: rows == 0 ? 0 : t.count / rows)
    }

    /// Weight and optional bias of a Linear or LayerNorm under `prefix`.
    func layer(_ prefix: String) throws -> (weight: Matrix, bias: Matrix?) {
        (try matrix(prefix + ".weight"), contains(prefix + ".bias") ? try matrix(prefix + ".bias") : nil)
    }
}

extension Model: WeightSource {
    public func contains(_ name: String) -> Bool { weights[name] != nil }
}

extension SafetensorsFile: WeightSource {
    public func tensor(_ name: String) throws -> TensorView {
        guard let t = tensors[name] else { throw FlamingoError.notFound("no tensor named \(name)") }
        return t
    }
    public func contains(_ name: String) -> Bool { tensors[name] != nil }
}
