import Glibc

/// Storage types a model directory can be converted to (`flamingo quantize`).
public enum StorageType: String, Sendable, CaseIterable {
    case f32, f16, bf16, q8, q4

    var bits: Int? { self == .q8 ? 8 : self == .q4 ? 4 : nil }
    var floatType: DType? { self == .f32 ? .f32 : self == .f16 ? .f16 : self == .bf16 ? .bf16 : nil }
}

/// Converts a model directory into another storage type, tensor by tensor:
/// each output tensor is computed from the memory-mapped input and written
/// before the next is read, so peak memory is about one tensor (in f32), not
/// the model.
public struct ModelQuantizer {
    public var type: StorageType
    public var groupSize = 64
    /// `pattern=type` rules (fnmatch globs over module paths, e.g.
    /// `vision_encoder.*`), the last matching one wins; nil: the type's
    /// default policy (`defaultKeep` for q4, none otherwise).
    public var keep: [(pattern: String, type: StorageType)]? = nil
    /// Search the clipping range per group (else plain min/max).
    public var search = true
    public var overwrite = false

    /// The q4 policy measured on flamingo-mini (docs/quantization.md): the
    /// output head and the embedding table (one tensor in the tied families)
    /// stay at 8 bits — 80 % of q4's caption NLL loss back for 2 % more bytes.
    public static let defaultKeep: [(pattern: String, type: StorageType)] = [
        "lang_encoder.lm_head", "lang_encoder.embed_out", "lang_encoder.transformer.wte",
        "lang_encoder.model.embed_tokens", "lang_encoder.gpt_neox.embed_in",
    ].map { ($0, .q8) }

    public init(type: StorageType) { self.type = type }

    /// `PATTERN=TYPE` strings as keep rules.
    public static func parseKeep(_ rules: [String]) throws -> [(pattern: String, type: StorageType)] {
        try rules.map { rule in
            guard let eq = rule.lastIndex(of: "="), eq != rule.startIndex,
                  let t = StorageType(rawValue: String(rule[rule.index(after: eq)...])) else {
                throw FlamingoError.invalidArgument("keep rule \"\(rule)\": expected PATTERN=TYPE with TYPE one of q4, q8, bf16, f16, f32")
            }
            return (String(rule[..<eq]), t)
        }
    }

    /// The type a matrix module is stored as.
    func target(module: String, cols: Int) -> StorageType {
        var t = type
        for rule in keep ?? (type == .q4 ? Self.defaultKeep : []) where fnmatch(rule.pattern, module, 0) == 0 { t = rule.type }
        if let _ = t.bits, cols % groupSize != 0 { return .f32 }
        return t
    }

    /// Converts `input` into the new directory `output`; `progress(done, total)`
    /// is called in bytes of input.
    public func convert(input: String, output: String, progress: (Int, Int) -> Void = { _, _ in }) throws {
        guard QuantizationConfig.supportedGroups.contains(groupSize) else {
            throw FlamingoError.invalidArgument("group size \(groupSize) is not supported (32, 64 or 128)")
        }
        let model = try Model(directory: input)
        if let a = realpath(input, nil) {
            defer { free(a) }
            if let b = realpath(output, nil) {
                defer { free(b) }
                guard strcmp(a, b) != 0 else {
                    throw FlamingoError.invalidArgument("the output directory is the input directory; write to a new one")
                }
            }
        }
        try prepare(output)
        var modules: [String: QuantizationConfig.Params?] = [:]
        var counts: [StorageType: Int] = [:]

        // Plan every output tensor first: the header precedes the data.
        var plan: [Planned] = []
        for spec in model.config.expectedWeights {
            let t = try model.tensor(spec.name)
            let module = Model.module(ofWeight: spec.name)
            if spec.quantizable, spec.name.hasSuffix(".weight") {
                let target = target(module: module, cols: spec.shape[1])
                if let bits = target.bits {
                    plan.append(Planned(spec: spec, source: t, kind: .affine(bits: bits), group: groupSize))
                    modules[module] = .some(QuantizationConfig.Params(bits: bits, group: groupSize))
                } else {
                    plan.append(Planned(spec: spec, source: t, kind: .float(target.floatType ?? .f32), group: groupSize))
                    modules[module] = .some(nil)
                }
                counts[target, default: 0] += 1
            } else {
                // Norms, biases, convolutions: 16-bit only when the whole model is.
                let dtype = type.floatType ?? (t.dtype.isFloat ? t.dtype : .f32)
                plan.append(Planned(spec: spec, source: t, kind: .float(dtype), group: groupSize))
            }
        }
        let total = plan.reduce(0) { $0 + $1.source.data.count }
        var done = 0
        let writer = try SafetensorsWriterStream(path: output + "/model.safetensors", tensors: plan.flatMap(\.outputs))
        for p in plan {
            try p.write(model, search: search, to: writer)
            for name in [p.spec.name, p.module + ".scales", p.module + ".biases"] {
                if let t = model.weights[name] { releasePages(t.data) }
            }
            done += p.source.data.count
            progress(done, total)
        }
        try writer.close()

        try Self.writeConfig(model.directory, output: output, type: type, group: groupSize, modules: modules)
        let summary = counts.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.value) \($0.key.rawValue)" }
        Log.info("quantize: matrices stored as \(summary.joined(separator: ", "))")
        for name in try listDirectory(input) where name != "config.json" && !name.hasSuffix(".safetensors") {
            var st = stat()
            guard stat(input + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            try writeWholeFile(output + "/" + name, try readWholeFile(input + "/" + name))
        }
    }

    private func prepare(_ output: String) throws {
        var st = stat()
        if stat(output, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else { throw FlamingoError.io("\(output) exists and is not a directory") }
            let existing = try listDirectory(output)
            guard existing.isEmpty || overwrite else {
                throw FlamingoError.io("\(output) is not empty; pass --overwrite to replace its model files")
            }
            for name in existing where name == "config.json" || name.hasSuffix(".safetensors") { unlink(output + "/" + name) }
        } else if mkdir(output, 0o755) != 0 {
            throw FlamingoError.io("cannot create \(output): \(errnoString())")
        }
    }

    /// `config` (a config.json object) with `weights` dropped (one output
    /// file) and the quantization section replaced: the requested type as the
    /// default and every module that differs listed.
    static func writeConfig(_ config: JSON, output: String, type: StorageType, group: Int,
                            modules: [String: QuantizationConfig.Params?]) throws {
        guard case .object(var o) = config else { throw FlamingoError.invalidFormat("config.json is not an object") }
        o["weights"] = nil
        o["quantization"] = nil
        if let bits = type.bits ?? modules.values.compactMap({ $0?.bits }).max() {
            let defaults = QuantizationConfig.Params(bits: bits, group: group)
            o["quantization"] = QuantizationConfig(defaults: defaults, modules: modules.filter { $0.value != defaults }).json
        }
        try writeWholeFile(output + "/config.json", Array((OrderedJSON(sortedKeys: .object(o)).text + "\n").utf8))
    }

    static func writeConfig(_ directory: String, output: String, type: StorageType, group: Int,
                            modules: [String: QuantizationConfig.Params?]) throws {
        let text = try readWholeFile(directory + "/config.json")
        try writeConfig(try text.withUnsafeBytes { try JSON.parse($0) }, output: output, type: type, group: group, modules: modules)
    }
}

/// One tensor of the input and what it becomes.
private struct Planned {
    enum Kind { case float(DType), affine(bits: Int) }
    let spec: WeightSpec
    let source: TensorView
    let kind: Kind
    let group: Int

    var module: String { Model.module(ofWeight: spec.name) }

    var outputs: [(name: String, dtype: DType, shape: [Int])] {
        switch kind {
        case .float(let d): return [(spec.name, d, spec.shape)]
        case .affine(let bits):
            let rows = spec.shape[0], cols = spec.shape[1]
            return [(spec.name, .u32, [rows, cols * bits / 32]),
                    (module + ".scales", .f16, [rows, cols / group]),
                    (module + ".biases", .f16, [rows, cols / group])]
        }
    }

    func write(_ model: Model, search: Bool, to w: SafetensorsWriterStream) throws {
        let values = try model.matrix(spec.name)   // f32, dequantized if the input was quantized
        let n = values.rows * values.cols
        switch kind {
        case .float(let dtype):
            var bytes = [UInt8](repeating: 0, count: n * dtype.byteSize)
            try bytes.withUnsafeMutableBytes { out in
                for i in 0..<n {
                    let v = values.data[i]
                    switch dtype {
                    case .f16:
                        guard v.isFinite == Float(Float16(v)).isFinite else {
                            throw FlamingoError.invalidArgument("tensor \(spec.name): value \(v) does not fit f16; keep it in bf16 or f32 with --keep")
                        }
                        out.storeBytes(of: Float16(v).bitPattern, toByteOffset: 2 * i, as: UInt16.self)
                    case .bf16: out.storeBytes(of: bf16Bits(v), toByteOffset: 2 * i, as: UInt16.self)
                    default: out.storeBytes(of: v, toByteOffset: 4 * i, as: Float.self)
                    }
                }
            }
            try w.append(bytes)
        case .affine(let bits):
            let p = AffineQuantizer.quantize(values.data, rows: values.rows, cols: values.cols, bits: bits, group: group,
                                             search: search)
            guard p.scales.allSatisfy({ Float16(bitPattern: $0).isFinite }), p.biases.allSatisfy({ Float16(bitPattern: $0).isFinite }) else {
                throw FlamingoError.invalidArgument("tensor \(spec.name): a group holds non-finite values or a range beyond f16 scales; keep it in float with --keep")
            }
            try p.words.withUnsafeBytes { try w.append($0) }
            try p.scales.withUnsafeBytes { try w.append($0) }
            try p.biases.withUnsafeBytes { try w.append($0) }
        }
    }
}

/// f32 → bf16, round to nearest even (NaN stays NaN).
func bf16Bits(_ v: Float) -> UInt16 {
    let u = v.bitPattern
    if v.isNaN { return UInt16(u >> 16) | 0x40 }
    return UInt16((u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
}
