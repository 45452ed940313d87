/// config.json's `quantization` (docs/model-format.md), MLX's convention:
/// the default bits and group size of every quantized matrix, and per-module
/// entries (keyed by module path, e.g. `lang_encoder.lm_head`) that override
/// them or, as `false`, say the module is stored as floats.
public struct QuantizationConfig: Equatable, Sendable {
    public struct Params: Equatable, Hashable, Sendable {
        public var bits: Int
        public var group: Int
        public init(bits: Int, group: Int) { self.bits = bits; self.group = group }
    }

    public static let supportedBits = [4, 8]
    public static let supportedGroups = [32, 64, 128]

    public var defaults: Params
    /// Module path → its parameters, or nil for a module kept in floats.
    public var modules: [String: Params?]

    public init(defaults: Params, modules: [String: Params?] = [:]) {
        self.defaults = defaults
        self.modules = modules
    }

    init(_ json: JSON) throws {
        guard let o = json.object else { throw FlamingoError.invalidFormat("config.json: quantization must be an object") }
        var r = try ConfigReader(json, path: "quantization")
        defaults = try Self.params(&r)
        _ = try r.string("mode", default: "affine", oneOf: ["affine"])
        var modules: [String: Params?] = [:]
        for (jsonKey, value) in o where !["bits", "group_size", "mode"].contains(jsonKey) {
            let key = jsonKey.string
            _ = r.raw(key)
            if value == .bool(false) { modules[key] = .some(nil); continue }
            var m = try ConfigReader(value, path: "quantization.\(key)")
            modules[key] = try Self.params(&m)
            try m.finish()
        }
        self.modules = modules
        try r.finish()
    }

    private static func params(_ r: inout ConfigReader) throws -> Params {
        let bits = try r.int("bits", max: 64)
        let group = try r.int("group_size", max: 1 << 20)
        guard supportedBits.contains(bits) else {
            throw FlamingoError.unsupported("config.json: \(r.path).bits is \(bits); supported: 4, 8")
        }
        guard supportedGroups.contains(group) else {
            throw FlamingoError.unsupported("config.json: \(r.path).group_size is \(group); supported: 32, 64, 128")
        }
        return Params(bits: bits, group: group)
    }

    /// The parameters of a module, nil when it is stored as floats.
    public func params(module: String) -> Params? {
        if let entry = modules[module] { return entry }
        return defaults
    }

    var json: JSON {
        var o: [JSONKey: JSON] = ["bits": .number(Double(defaults.bits)), "group_size": .number(Double(defaults.group)),
                                 "mode": .string("affine")]
        for (k, v) in modules {
            o[JSONKey(k)] = v.map { .object(["bits": .number(Double($0.bits)), "group_size": .number(Double($0.group))]) } ?? .bool(false)
        }
        return .object(o)
    }
}

extension Model {
    /// The module path of a quantizable weight tensor (`x.weight` → `x`).
    static func module(ofWeight name: String) -> String {
        name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
    }

    /// Checks a quantizable spec stored as packed integers against the
    /// config: the module's bits and group, U32 words [out, in·bits/32],
    /// float scales and biases [out, in/group] of one type.
    static func validateQuantized(_ spec: WeightSpec, _ found: [String: TensorView], config: QuantizationConfig?) throws {
        let module = module(ofWeight: spec.name)
        func bad(_ m: String) -> FlamingoError { .invalidFormat("tensor \(spec.name): \(m)") }
        guard let config else { throw bad("\(module).scales is present but config.json has no quantization section") }
        guard let p = config.params(module: module) else {
            throw bad("stored quantized, but config.json's quantization.\(module) says it is not quantized")
        }
        guard let w = found[spec.name] else { return }  // reported as missing by the caller
        guard let s = found[module + ".scales"] else { throw bad("\(module).biases is present but \(module).scales is missing") }
        guard let b = found[module + ".biases"] else { throw bad("\(module).scales is present but \(module).biases is missing") }
        let out = spec.shape[0], inDim = spec.shape[1]
        guard inDim % p.group == 0 else {
            throw bad("group size \(p.group) does not divide the row length \(inDim)")
        }
        let words = inDim * p.bits / 32
        guard w.dtype == .u32, w.shape == [out, words] else {
            throw bad("\(p.bits)-bit packed weight must be U32 [\(out), \(words)], found \(w.dtype.rawValue) \(w.shape)")
        }
        guard s.dtype.isFloat, s.shape == [out, inDim / p.group] else {
            throw bad("\(module).scales must be a float tensor [\(out), \(inDim / p.group)], found \(s.dtype.rawValue) \(s.shape)")
        }
        guard b.dtype == s.dtype, b.shape == s.shape else {
            throw bad("\(module).biases (\(b.dtype.rawValue) \(b.shape)) must match \(module).scales (\(s.dtype.rawValue) \(s.shape))")
        }
    }
}
