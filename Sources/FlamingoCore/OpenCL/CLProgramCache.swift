import Glibc

/// On-disk cache of built program binaries (clGetProgramInfo
/// CL_PROGRAM_BINARIES), one file per (device, driver, op family, source):
/// a cold build costs from ~0.1 s (PoCL) to seconds (large sources on GPU
/// drivers), a cached load a few ms.
///
/// The key hashes the device name, driver version, platform, build options
/// and the full source text, so a driver update or an edited kernel simply
/// misses. A file is trusted only if its header, length and checksum match;
/// anything else (truncated, corrupt, another key) reads as a miss, and the
/// caller rebuilds from source and rewrites it. Writes go to a temporary
/// file renamed into place, so concurrent processes never see a partial
/// file. Cache I/O failures are logged, never thrown: the cache is an
/// optimisation only.
struct CLProgramCache {
    let directory: String

    /// FLAMINGO_CL_CACHE (a directory; "off" or "0" disables the cache), else
    /// $XDG_CACHE_HOME/flamingo/opencl, else ~/.cache/flamingo/opencl; nil
    /// when none can be derived or caching is off.
    static func defaultDirectory() -> String? {
        func env(_ name: String) -> String? {
            guard let p = getenv(name) else { return nil }
            let s = String(cString: p)
            return s.isEmpty ? nil : s
        }
        if let d = env("FLAMINGO_CL_CACHE") {
            return d == "off" || d == "0" ? nil : d
        }
        if let x = env("XDG_CACHE_HOME") { return x + "/flamingo/opencl" }
        if let h = env("HOME") { return h + "/.cache/flamingo/opencl" }
        return nil
    }

    static let magic: [UInt8] = Array("FLMCLBN1".utf8)
    static let headerSize = 8 + 8 + 8 + 8   // magic, key hash, payload length, payload checksum

    /// The cache file of a key: readable names help when clearing a device's entries by hand.
    func path(deviceName: String, family: String, keyHash: UInt64) -> String {
        let safe = String(deviceName.unicodeScalars.prefix(48).map { s -> Character in
            s.isASCII && (s.properties.isAlphabetic || (48...57).contains(s.value)) ? Character(s) : "_"
        })
        return "\(directory)/\(safe)-\(family)-\(hex(keyHash)).clbin"
    }

    /// The cached binary of `keyHash`, or nil (missing or invalid).
    func load(_ path: String, keyHash: UInt64) -> [UInt8]? {
        guard let bytes = try? readWholeFile(path) else { return nil }
        guard bytes.count >= Self.headerSize, Array(bytes[0..<8]) == Self.magic else {
            Log.info("OpenCL cache: ignoring \(path) (not a program binary file)")
            return nil
        }
        let storedKey = readU64(bytes, 8), length = readU64(bytes, 16), checksum = readU64(bytes, 24)
        guard storedKey == keyHash, length == UInt64(bytes.count - Self.headerSize) else {
            Log.info("OpenCL cache: ignoring \(path) (key or length mismatch)")
            return nil
        }
        let payload = Array(bytes[Self.headerSize...])
        guard fnv1a(payload) == checksum, !payload.isEmpty else {
            Log.info("OpenCL cache: ignoring \(path) (checksum mismatch)")
            return nil
        }
        return payload
    }

    /// Writes `binary` for `keyHash` atomically; failures are logged.
    func store(_ path: String, keyHash: UInt64, binary: [UInt8]) {
        guard makeDirectories(directory) else {
            Log.info("OpenCL cache: cannot create \(directory): \(String(cString: strerror(errno)))")
            return
        }
        var data = Self.magic
        appendU64(&data, keyHash)
        appendU64(&data, UInt64(binary.count))
        appendU64(&data, fnv1a(binary))
        data += binary
        let tmp = "\(path).tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            Log.info("OpenCL cache: cannot write \(tmp): \(String(cString: strerror(errno)))")
            return
        }
        var ok = true
        data.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var done = 0
            while done < raw.count {
                let n = write(fd, base + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { ok = false; return }
                done += n
            }
        }
        if close(fd) != 0 { ok = false }
        if !ok || rename(tmp, path) != 0 {
            Log.info("OpenCL cache: cannot write \(path): \(String(cString: strerror(errno)))")
            unlink(tmp)
        }
    }

    /// mkdir -p.
    private func makeDirectories(_ dir: String) -> Bool {
        var prefix = dir.hasPrefix("/") ? "" : "."
        for part in dir.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST { return false }
        }
        return true
    }
}

/// 64-bit FNV-1a: cheap, stable across processes and Swift versions (unlike
/// Hasher, which is seeded per process).
func fnv1a<S: Swift.Sequence>(_ bytes: S, seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 where S.Element == UInt8 {
    var h = seed
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
}

private func readU64(_ b: [UInt8], _ at: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<8 { v |= UInt64(b[at + i]) << (8 * UInt64(i)) }
    return v
}

private func appendU64(_ b: inout [UInt8], _ v: UInt64) {
    for i in 0..<8 { b.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
}

private func hex(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
