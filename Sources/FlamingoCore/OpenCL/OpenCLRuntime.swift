import CFlamingoSupport
import Glibc

/// One OpenCL device with its context and in-order command queue, the
/// programs built for it, and the op wrappers (extensions in Ops*.swift).
///
/// Every op only enqueues work: it takes device buffers with offsets and row
/// strides (`CLView`, `CLWeight`), so a whole forward pass stays on the
/// device and the host waits only in `download` or `finish`. The queue is in
/// order, so ops see the results of the ops enqueued before them.
///
/// Thread safety: calls are serialised by a lock (kernel arguments are
/// per-kernel-object state in OpenCL), so a runtime may be shared, but
/// threads that need independent streams should use one runtime each.
public final class OpenCLRuntime: @unchecked Sendable {
    public let device: OpenCLDevice
    /// Largest single buffer and total memory of the device, in bytes.
    public let maxAllocationBytes: Int
    public let globalMemoryBytes: Int
    public let computeUnits: Int
    /// Where program binaries are cached (nil: no disk cache).
    public let cacheDirectory: String?

    /// How each op family's program was obtained in this runtime (for tests and logs).
    public enum ProgramOrigin: Equatable, Sendable { case source, cache }
    public private(set) var programOrigins: [String: ProgramOrigin] = [:]

    /// OpenCL C 1.2 everywhere; on NVIDIA also the inline-PTX tensor-core
    /// path of kernels/opencl/mma.cl (emulated on other devices).
    let buildOptions: String
    /// Whether the platform is NVIDIA's (inline PTX available).
    public let isNVIDIA: Bool

    let context: UnsafeMutableRawPointer
    let queue: UnsafeMutableRawPointer
    let lock = CLLock()
    private var programs: [String: UnsafeMutableRawPointer] = [:]
    private var kernels: [String: UnsafeMutableRawPointer] = [:]
    /// Bound to optional buffer arguments that are absent: some drivers
    /// reject a NULL cl_mem argument.
    private(set) var placeholder: CLBuffer?
    /// Scratch for the split decode attention, grown on demand; reused
    /// safely because the queue runs in order.
    var decodeScratch: CLBuffer?
    /// Kernels enqueued so far (what a forward step costs in launches).
    public var launchCount: Int { lock.locked { launches } }
    private var launches = 0
    /// nil until `tensorCoresVerified` has run.
    var tensorCoreState: Bool?
    /// Rotary inverse-frequency tables by (dims, theta bits).
    var rotaryTables: [UInt64: CLBuffer] = [:]

    /// Opens `device` (default: `OpenCLDevice.select()`, which honours
    /// FLAMINGO_DEVICE) and caches program binaries under `cacheDirectory`
    /// (default: `OpenCLRuntime.defaultCacheDirectory()`; nil disables it).
    public init(device: OpenCLDevice? = nil, cacheDirectory: String? = OpenCLRuntime.defaultCacheDirectory()) throws {
        let device = try device ?? OpenCLDevice.select()
        self.device = device
        self.cacheDirectory = cacheDirectory
        maxAllocationBytes = Int(clamping: device.property(CLDeviceParam.maxMemAllocSize, UInt64.self, default: 1 << 28))
        globalMemoryBytes = Int(clamping: device.property(CLDeviceParam.globalMemSize, UInt64.self, default: 1 << 30))
        computeUnits = Int(device.info.computeUnits)
        isNVIDIA = (device.info.platformName + " " + device.info.vendor).lowercased().contains("nvidia")
        buildOptions = "-cl-std=CL1.2" + (isNVIDIA ? " -DFLAMINGO_MMA_PTX" : "")
        var err: Int32 = 0
        guard let ctx = fsup_cl_context_create(device.handle, &err) else {
            throw CLStatus.error(err, "creating a context on \(device.info.name)")
        }
        guard let q = fsup_cl_queue_create(ctx, device.handle, &err) else {
            fsup_cl_context_release(ctx)
            throw CLStatus.error(err, "creating a command queue on \(device.info.name)")
        }
        context = ctx
        queue = q
        placeholder = try buffer(bytes: 16)
    }

    deinit {
        // Queued work finishes before its objects go (OpenCL reference counts).
        fsup_cl_finish(queue)
        placeholder = nil
        decodeScratch = nil
        rotaryTables = [:]
        for k in kernels.values { fsup_cl_kernel_release(k) }
        for p in programs.values { fsup_cl_program_release(p) }
        fsup_cl_queue_release(queue)
        fsup_cl_context_release(context)
    }

    /// FLAMINGO_CL_CACHE, else $XDG_CACHE_HOME/flamingo/opencl, else
    /// ~/.cache/flamingo/opencl ("off" disables the cache).
    public static func defaultCacheDirectory() -> String? { CLProgramCache.defaultDirectory() }

    nonisolated(unsafe) private static var runtimes: [Int: OpenCLRuntime] = [:]
    private static let runtimesLock = CLLock()

    /// The process's runtime for `device` (created on first use, then kept):
    /// models on the same device share its queue and compiled programs.
    public static func shared(_ device: OpenCLDevice) throws -> OpenCLRuntime {
        try runtimesLock.locked {
            if let rt = runtimes[device.index] { return rt }
            let rt = try OpenCLRuntime(device: device)
            runtimes[device.index] = rt
            return rt
        }
    }

    /// Waits until every enqueued op has run; reports errors of asynchronous
    /// execution (e.g. an allocation that failed when first touched).
    public func finish() throws {
        try lock.locked { try CLStatus.check(fsup_cl_finish(queue), "waiting for the queue") }
    }

    /// Submits enqueued work to the device without waiting.
    public func flush() throws {
        try lock.locked { try CLStatus.check(fsup_cl_flush(queue), "flushing the queue") }
    }

    /// Builds (or loads from the cache) every op family now rather than on
    /// first use, so the first forward pass is not slowed by compilation.
    public func prepare() throws {
        try lock.locked {
            for f in EmbeddedKernels.files where f.name != "common" { _ = try program(f.name) }
        }
    }

    // MARK: programs and kernels

    /// The program of one op family (kernels/opencl/<family>.cl after
    /// common.cl), built once per runtime: from the disk cache when a valid
    /// binary for this device, driver and source exists, else from source.
    func program(_ family: String) throws -> UnsafeMutableRawPointer {
        if let p = programs[family] { return p }
        guard let common = EmbeddedKernels.files.first(where: { $0.name == "common" })?.source,
              let body = EmbeddedKernels.files.first(where: { $0.name == family })?.source else {
            throw FlamingoError.internal("OpenCL: no embedded kernel source \(family).cl")
        }
        let source = common + "\n" + body
        let options = buildOptions
        let info = device.info
        let key = [info.name, info.driverVersion, info.platformName, info.vendor, options, source].joined(separator: "\u{0}")
        let keyHash = fnv1a(key.utf8)
        let cache = cacheDirectory.map { CLProgramCache(directory: $0) }
        let path = cache?.path(deviceName: info.name, family: family, keyHash: keyHash)

        if let cache, let path, let binary = cache.load(path, keyHash: keyHash) {
            var err: Int32 = 0
            let p = binary.withUnsafeBufferPointer { b in
                fsup_cl_program_from_binary(context, device.handle, b.baseAddress, b.count, &err)
            }
            if let p {
                if fsup_cl_program_build(p, device.handle, options) == CLStatus.success {
                    programs[family] = p
                    programOrigins[family] = .cache
                    return p
                }
                fsup_cl_program_release(p)
            }
            Log.info("OpenCL cache: \(path) was rejected by the driver; rebuilding from source")
        }

        let p = try compile(source: source, family: family)
        programs[family] = p
        programOrigins[family] = .source
        if let cache, let path, let binary = programBinary(p) {
            cache.store(path, keyHash: keyHash, binary: binary)
        }
        return p
    }

    /// Builds `source` for the device; a failure carries the build log.
    func compile(source: String, family: String) throws -> UnsafeMutableRawPointer {
        var err: Int32 = 0
        let maybe = source.withCString { fsup_cl_program_from_source(context, $0, strlen($0), &err) }
        guard let p = maybe else { throw CLStatus.error(err, "creating the program \(family).cl") }
        let rc = fsup_cl_program_build(p, device.handle, buildOptions)
        if rc != CLStatus.success {
            let log = buildLog(p)
            fsup_cl_program_release(p)
            let m = "OpenCL: building kernels/opencl/\(family).cl for \(device.info.name) failed: \(CLStatus.name(rc)) (\(rc))"
                + (log.isEmpty ? "" : "\nbuild log:\n" + log)
            throw CLStatus.isAllocationFailure(rc) ? FlamingoError.outOfMemory(m) : FlamingoError.backend(m)
        }
        return p
    }

    private func buildLog(_ p: UnsafeMutableRawPointer) -> String {
        var size = 0
        guard fsup_cl_program_build_log(p, device.handle, nil, 0, &size) == CLStatus.success, size > 0 else { return "" }
        var buf = [CChar](repeating: 0, count: size + 1)
        guard fsup_cl_program_build_log(p, device.handle, &buf, size, nil) == CLStatus.success else { return "" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func programBinary(_ p: UnsafeMutableRawPointer) -> [UInt8]? {
        var size = 0
        guard fsup_cl_program_binary(p, nil, 0, &size) == CLStatus.success, size > 0 else { return nil }
        var bin = [UInt8](repeating: 0, count: size)
        let rc = bin.withUnsafeMutableBufferPointer { fsup_cl_program_binary(p, $0.baseAddress, size, nil) }
        return rc == CLStatus.success ? bin : nil
    }

    /// Kernel `name` of `family`, created once; checks that the device can
    /// run it with the work-group size the kernel requires.
    func kernel(_ name: String, family: String, localSize: Int) throws -> UnsafeMutableRawPointer {
        if let k = kernels[name] { return k }
        let p = try program(family)
        var err: Int32 = 0
        guard let k = fsup_cl_kernel_create(p, name, &err) else {
            throw CLStatus.error(err, "creating kernel \(name) of \(family).cl")
        }
        var wg = 0
        if fsup_cl_kernel_work_group_size(k, device.handle, &wg) == CLStatus.success, wg > 0, wg < localSize {
            fsup_cl_kernel_release(k)
            throw FlamingoError.unsupported("OpenCL: \(device.info.name) runs \(name) with at most \(wg) work-items per group; it needs \(localSize)")
        }
        kernels[name] = k
        return k
    }

    /// Sets the arguments of kernel `name` and enqueues it over `global`
    /// (already a multiple of `local`, which the kernel requires). An empty
    /// range enqueues nothing.
    func launch(_ name: String, family: String, global: [Int], local: [Int],
                _ arguments: (inout CLArguments) throws -> Void) throws {
        guard !global.contains(0) else { return }
        try lock.locked {
            let k = try kernel(name, family: family, localSize: local.reduce(1, *))
            guard let placeholder else { throw FlamingoError.internal("OpenCL: runtime without placeholder buffer") }
            var args = CLArguments(kernel: k, name: name, placeholder: placeholder)
            try arguments(&args)
            let rc = global.withUnsafeBufferPointer { g in
                local.withUnsafeBufferPointer { l in
                    fsup_cl_enqueue(queue, k, UInt32(g.count), g.baseAddress, l.baseAddress)
                }
            }
            try CLStatus.check(rc, "running \(name) on \(device.info.name)")
            launches += 1
        }
    }
}

/// Kernel arguments in order; each setter checks the value fits the
/// kernel's C type (ints are 32-bit there) and the OpenCL status.
struct CLArguments {
    let kernel: UnsafeMutableRawPointer
    let name: String
    let placeholder: CLBuffer
    private(set) var index: UInt32 = 0

    init(kernel: UnsafeMutableRawPointer, name: String, placeholder: CLBuffer) {
        self.kernel = kernel
        self.name = name
        self.placeholder = placeholder
    }

    private mutating func set<T>(_ value: T) throws {
        var v = value
        let rc = withUnsafeBytes(of: &v) { fsup_cl_kernel_arg(kernel, index, $0.count, $0.baseAddress) }
        try CLStatus.check(rc, "setting argument \(index) of \(name)")
        index += 1
    }

    /// A buffer, or the placeholder for an absent optional one.
    mutating func buffer(_ b: CLBuffer?) throws {
        let rc = fsup_cl_kernel_arg_mem(kernel, index, (b ?? placeholder).mem)
        try CLStatus.check(rc, "setting argument \(index) of \(name)")
        index += 1
    }

    mutating func int(_ v: Int) throws {
        guard let x = Int32(exactly: v) else {
            throw FlamingoError.invalidArgument("OpenCL \(name): argument \(index) = \(v) does not fit 32 bits")
        }
        try set(x)
    }

    mutating func flag(_ b: Bool) throws { try set(Int32(b ? 1 : 0)) }

    /// An element offset (ulong in the kernel).
    mutating func offset(_ v: Int) throws {
        guard v >= 0 else { throw FlamingoError.invalidArgument("OpenCL \(name): negative offset \(v)") }
        try set(UInt64(v))
    }

    mutating func float(_ v: Float) throws { try set(v) }
}

/// A recursive mutex: public ops may call other public ops.
final class CLLock: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>

    init() {
        m = .allocate(capacity: 1)
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(m, &attr)
        pthread_mutexattr_destroy(&attr)
    }

    deinit {
        pthread_mutex_destroy(m)
        m.deallocate()
    }

    func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}
