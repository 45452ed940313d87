// The exported C ABI (include/flamingo.h). Every entry point catches every
// Swift error, records the message for flamingo_last_error(), and returns a
// status; out-parameters are written only on success.
import CFlamingoSupport
import FlamingoCore

// MARK: - Errors and status

let statusOK: Int32 = 0

/// Runs `body`, converting a thrown error into its status code and the
/// thread's last-error message.
@inline(__always)
func capi(_ function: StaticString, _ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return statusOK
    } catch let e as FlamingoError {
        let message = "\(function): \(e.message)"
        fsup_set_last_error(message)
        Log.debug(message)
        return e.status
    } catch {
        fsup_set_last_error("\(function): unexpected error \(error)")
        return FlamingoError.internal("").status
    }
}

@c(flamingo_version)
public func capiVersion() -> UnsafePointer<CChar> {
    UnsafeRawPointer(Version.cString.utf8Start).assumingMemoryBound(to: CChar.self)
}

@c(flamingo_abi_version)
public func capiABIVersion() -> UInt32 { Version.abi }

@c(flamingo_status_string)
public func capiStatusString(_ status: Int32) -> UnsafePointer<CChar> {
    let s: StaticString
    switch status {
    case 0: s = "ok"
    case 1: s = "invalid argument"
    case 2: s = "i/o error"
    case 3: s = "invalid format"
    case 4: s = "unsupported"
    case 5: s = "out of memory"
    case 6: s = "backend error"
    case 7: s = "not found"
    case 8: s = "buffer too small"
    case 9: s = "cancelled"
    case 10: s = "internal error"
    default: s = "unknown status"
    }
    return UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

@c(flamingo_last_error)
public func capiLastError() -> UnsafePointer<CChar> { fsup_last_error() }

// MARK: - Logging

@c(flamingo_log_set)
public func capiLogSet(_ callback: LogCallback?, _ userData: UnsafeMutableRawPointer?) {
    Log.setCallback(callback, user: userData)
}

@c(flamingo_log_set_level)
public func capiLogSetLevel(_ level: Int32) {
    Log.setLevel(LogLevel(rawValue: min(max(level, 0), 4)) ?? .none)
}

// MARK: - Structs sized by the caller

/// Copies `value` into a caller struct of `size` bytes, keeping the
/// caller's struct_size (the first field).
func writeSized<T>(_ value: T, to out: UnsafeMutableRawPointer, size: Int) {
    var v = value
    withUnsafeBytes(of: &v) { src in
        let n = min(size, src.count)
        out.advanced(by: 4).copyMemory(from: src.baseAddress!.advanced(by: 4), byteCount: n - 4)
    }
}

/// Reads the caller's struct_size from the first field and checks it
/// covers at least the first published version of the struct.
func checkedSize(_ p: UnsafeRawPointer?, _ minSize: Int, _ what: String) throws -> (UnsafeRawPointer, Int) {
    guard let p else { throw FlamingoError.invalidArgument("\(what) is NULL") }
    let size = Int(p.loadUnaligned(as: UInt32.self))
    guard size >= minSize else {
        throw FlamingoError.invalidArgument("\(what)->struct_size is \(size), expected at least \(minSize) (set it to sizeof(the struct))")
    }
    return (p, size)
}

/// Sizes of the first published version of each struct (ABI 1): callers
/// built against it keep working when a struct grows at the end.
enum V1Size {
    static let deviceInfo = MemoryLayout<flamingo_device_info>.size
    /// Version 1 ended before `visual_dim`.
    static let modelInfo = MemoryLayout<flamingo_model_info>.offset(of: \flamingo_model_info.visual_dim)!
}

/// Copies a Swift string into a fixed C char array, truncating at a UTF-8
/// character boundary and always NUL-terminating.
func fill<T>(_ field: inout T, _ s: String) {
    withUnsafeMutableBytes(of: &field) { dst in
        dst.initializeMemory(as: UInt8.self, repeating: 0)
        var bytes = Array(s.utf8)
        if bytes.count > dst.count - 1 {
            var n = dst.count - 1
            while n > 0 && bytes[n] & 0xC0 == 0x80 { n -= 1 }  // back to a character start
            bytes.removeSubrange(n...)
        }
        dst.copyBytes(from: bytes)
    }
}

// MARK: - Devices

@c(flamingo_device_count)
public func capiDeviceCount(_ out: UnsafeMutablePointer<Int>?) -> Int32 {
    capi("flamingo_device_count") {
        guard let out else { throw FlamingoError.invalidArgument("out_count is NULL") }
        out.pointee = Devices.all().count
    }
}

@c(flamingo_device_get_info)
public func capiDeviceGetInfo(_ index: Int, _ out: UnsafeMutableRawPointer?) -> Int32 {
    capi("flamingo_device_get_info") {
        let (_, size) = try checkedSize(out, V1Size.deviceInfo, "out")
        let devices = Devices.all()
        guard index >= 0 && index < devices.count else {
            throw FlamingoError.notFound("device index \(index) is out of range (\(devices.count) device(s))")
        }
        let d = devices[index]
        var info = flamingo_device_info()
        info.backend = d.backend.rawValue
        info.type = d.kind.rawValue
        info.platform_index = d.platformIndex
        info.device_index = d.deviceIndex
        info.compute_units = d.computeUnits
        info.memory_bytes = d.memoryBytes
        fill(&info.name, d.name)
        fill(&info.platform_name, d.platformName)
        fill(&info.vendor, d.vendor)
        fill(&info.driver_version, d.driverVersion)
        writeSized(info, to: out!, size: size)
    }
}

// MARK: - Models

/// What a flamingo_model* points to: the validated files and the model
/// graph built over them.
final class ModelHandle {
    let model: Model
    let flamingo: Flamingo
    let params: flamingo_model_params
    init(model: Model, params: flamingo_model_params, backend: ComputeBackend) throws {
        self.model = model
        self.flamingo = try Flamingo(model, backend: backend)
        self.params = params
    }
}

/// Live handles of one kind, so that a stale or foreign pointer is rejected
/// instead of dereferenced.
final class HandleRegistry<T: AnyObject>: @unchecked Sendable {
    private let live = Locked(Set<UnsafeMutableRawPointer>())
    let name: String
    init(_ name: String) { self.name = name }

    func register(_ object: T) -> OpaquePointer {
        let raw = Unmanaged.passRetained(object).toOpaque()
        live.withLock { _ = $0.insert(raw) }
        return OpaquePointer(raw)
    }

    func get(_ p: OpaquePointer?) throws -> T {
        guard let p else { throw FlamingoError.invalidArgument("\(name) is NULL") }
        let raw = UnsafeMutableRawPointer(p)
        guard live.withLock({ $0.contains(raw) }) else {
            throw FlamingoError.invalidArgument("\(name) is not a live \(name) handle (already freed?)")
        }
        return Unmanaged<T>.fromOpaque(raw).takeUnretainedValue()
    }

    func release(_ p: OpaquePointer?) {
        guard let p else { return }
        let raw = UnsafeMutableRawPointer(p)
        guard live.withLock({ $0.remove(raw) != nil }) else {
            Log.warn("ignoring free of a pointer that is not a live \(name) (double free?)")
            return
        }
        Unmanaged<T>.fromOpaque(raw).release()
    }
}

let models = HandleRegistry<ModelHandle>("flamingo_model")

func defaultModelParams() -> flamingo_model_params {
    var p = flamingo_model_params()
    p.struct_size = UInt32(MemoryLayout<flamingo_model_params>.size)
    p.backend = Int32(FLAMINGO_BACKEND_CPU)
    p.device_index = -1
    p.n_threads = 0
    return p
}

/// Writes `defaults` into a caller struct of `structSize` bytes and stores
/// that size in its struct_size field.
func fillDefaults<T>(_ params: UnsafeMutableRawPointer?, _ structSize: Int, _ defaults: T, _ name: String) throws {
    guard let params else { throw FlamingoError.invalidArgument("params is NULL") }
    let minSize = MemoryLayout<T>.size
    guard structSize >= minSize && structSize <= Int(UInt32.max) else {
        throw FlamingoError.invalidArgument("struct_size \(structSize) is smaller than \(name) (\(minSize)) or too large")
    }
    params.storeBytes(of: UInt32(structSize), as: UInt32.self)
    writeSized(defaults, to: params, size: structSize)
}

/// Reads a caller struct (or NULL) over the defaults.
func readParams<T>(_ params: UnsafeRawPointer?, _ defaults: T, _ name: String) throws -> T {
    var p = defaults
    guard params != nil else { return p }
    let (src, size) = try checkedSize(params, MemoryLayout<T>.size, name)
    withUnsafeMutableBytes(of: &p) { dst in
        dst.baseAddress!.copyMemory(from: src, byteCount: min(size, dst.count))
    }
    return p
}

@c(flamingo_model_default_params)
public func capiModelDefaultParams(_ params: UnsafeMutableRawPointer?, _ structSize: Int) -> Int32 {
    capi("flamingo_model_default_params") {
        try fillDefaults(params, structSize, defaultModelParams(), "flamingo_model_params")
    }
}

@c(flamingo_model_load)
public func capiModelLoad(_ path: UnsafePointer<CChar>?, _ params: UnsafeRawPointer?,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi("flamingo_model_load") {
        guard let path else { throw FlamingoError.invalidArgument("path is NULL") }
        guard let out else { throw FlamingoError.invalidArgument("out_model is NULL") }
        let p = try readParams(params, defaultModelParams(), "params")
        let backend: ComputeBackend
        switch Int(p.backend) {
        case FLAMINGO_BACKEND_CPU:
            guard p.device_index == -1 || p.device_index == 0 else {
                throw FlamingoError.invalidArgument("device_index \(p.device_index) is not the CPU device (use -1 or 0)")
            }
            backend = .cpu
        case FLAMINGO_BACKEND_OPENCL:
            guard p.device_index >= -1 else { throw FlamingoError.invalidArgument("device_index \(p.device_index) is negative") }
            backend = try .openCL(device: p.device_index == -1 ? nil : String(p.device_index))
        default:
            throw FlamingoError.invalidArgument("unknown backend \(p.backend)")
        }
        guard let dir = String(validatingCString: path) else { throw FlamingoError.invalidArgument("path is not valid UTF-8") }
        if p.n_threads > 0 { Threads.set(Int(p.n_threads)) }
        let handle = try ModelHandle(model: try Model(directory: dir), params: p, backend: backend)
        out.pointee = models.register(handle)
    }
}

@c(flamingo_model_free)
public func capiModelFree(_ model: OpaquePointer?) { models.release(model) }

@c(flamingo_model_get_info)
public func capiModelGetInfo(_ model: OpaquePointer?, _ out: UnsafeMutableRawPointer?) -> Int32 {
    capi("flamingo_model_get_info") {
        let h = try models.get(model)
        let (_, size) = try checkedSize(out, V1Size.modelInfo, "out")
        let c = h.model.config
        let lm = c.languageModel
        var info = flamingo_model_info()
        fill(&info.architecture, c.architecture)
        fill(&info.vision_kind, c.vision.kind)
        fill(&info.lm_family, lm.family.rawValue)
        info.image_size = UInt32(c.vision.imageSize)
        info.patch_size = UInt32(c.vision.patchSize)
        info.vision_width = UInt32(c.vision.width)
        info.vision_layers = UInt32(c.vision.layers)
        info.vision_heads = UInt32(c.vision.heads)
        info.vision_tokens = UInt32(c.vision.numPatches)
        info.resampler_depth = UInt32(c.resampler.depth)
        info.resampler_heads = UInt32(c.resampler.heads)
        info.resampler_dim_head = UInt32(c.resampler.dimHead)
        info.num_latents = UInt32(c.resampler.numLatents)
        info.hidden_size = UInt32(lm.hiddenSize)
        info.num_layers = UInt32(lm.layers)
        info.num_heads = UInt32(lm.heads)
        info.intermediate_size = UInt32(lm.intermediateSize)
        info.max_seq_len = UInt32(lm.maxSeqLen)
        info.vocab_size = UInt32(lm.vocabSize)
        info.cross_attn_every_n_layers = UInt32(c.crossAttention.everyNLayers)
        info.num_cross_attn_layers = UInt32(c.crossAttentionLayers.count)
        info.image_token_id = Int32(c.tokens.image)
        info.endofchunk_token_id = Int32(c.tokens.endOfChunk)
        info.pad_token_id = Int32(c.tokens.pad ?? -1)
        info.bos_token_id = Int32(c.tokens.bos ?? -1)
        info.eos_token_id = Int32(c.tokens.eos ?? -1)
        info.image_mean = (c.preprocess.mean[0], c.preprocess.mean[1], c.preprocess.mean[2])
        info.image_std = (c.preprocess.std[0], c.preprocess.std[1], c.preprocess.std[2])
        info.num_parameters = UInt64(h.model.parameterCount)
        info.weight_bytes = UInt64(h.model.weightBytes)
        info.visual_dim = UInt32(c.resampler.dim)
        let storage = h.model.storageBytes
        fill(&info.weight_type, storage.max { ($0.value, $1.key) < ($1.value, $0.key) }?.key ?? "f32")
        info.quant_bits = UInt32(c.quantization?.defaults.bits ?? 0)
        info.quant_group_size = UInt32(c.quantization?.defaults.group ?? 0)
        writeSized(info, to: out!, size: size)
    }
}

// MARK: - Quantization

func defaultQuantizeParams() -> flamingo_quantize_params {
    var p = flamingo_quantize_params()
    p.struct_size = UInt32(MemoryLayout<flamingo_quantize_params>.size)
    fill(&p.type, "q4")
    p.group_size = 64
    p.search = 1
    p.overwrite = 0
    p.keep = nil
    return p
}

@c(flamingo_quantize_default_params)
public func capiQuantizeDefaultParams(_ params: UnsafeMutableRawPointer?, _ structSize: Int) -> Int32 {
    capi("flamingo_quantize_default_params") {
        try fillDefaults(params, structSize, defaultQuantizeParams(), "flamingo_quantize_params")
    }
}

@c(flamingo_model_quantize)
public func capiModelQuantize(_ input: UnsafePointer<CChar>?, _ output: UnsafePointer<CChar>?,
                              _ params: UnsafeRawPointer?) -> Int32 {
    capi("flamingo_model_quantize") {
        guard let input, let inDir = String(validatingCString: input) else { throw FlamingoError.invalidArgument("input_dir is NULL or not UTF-8") }
        guard let output, let outDir = String(validatingCString: output) else { throw FlamingoError.invalidArgument("output_dir is NULL or not UTF-8") }
        let p = try readParams(params, defaultQuantizeParams(), "params")
        let typeName = withUnsafeBytes(of: p.type) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        guard let type = StorageType(rawValue: typeName) else {
            throw FlamingoError.invalidArgument("type \"\(typeName)\" is not one of q4, q8, bf16, f16, f32")
        }
        var q = ModelQuantizer(type: type)
        q.groupSize = Int(p.group_size)
        q.search = p.search != 0
        q.overwrite = p.overwrite != 0
        if let keep = p.keep {
            guard let text = String(validatingCString: keep) else { throw FlamingoError.invalidArgument("keep is not UTF-8") }
            q.keep = try ModelQuantizer.parseKeep(text.split(whereSeparator: \.isNewline).map(String.init))
        }
        try q.convert(input: inDir, output: outDir)
    }
}
