import Glibc

/// A read-only memory mapping of a whole file. Weights are used in place from
/// the mapping, so loading costs page faults rather than copies.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FlamingoError.io("cannot open \(path): \(errnoString())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FlamingoError.io("cannot stat \(path): \(errnoString())") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FlamingoError.io("\(path) is not a regular file") }
        let size = Int(st.st_size)
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FlamingoError.io("cannot map \(path): \(errnoString())")
        }
        base = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    deinit {
        if let base { munmap(base, bytes.count) }
    }
}

/// Drops this process's pages of a read-only mapped range (they stay in the
/// page cache): a converter that reads each tensor once keeps its resident
/// set at about one tensor instead of growing to the whole input.
func releasePages(_ range: UnsafeRawBufferPointer) {
    guard let start = range.baseAddress, range.count > 0 else { return }
    let page = Int(sysconf(Int32(_SC_PAGESIZE)))
    let lo = (Int(bitPattern: start) + page - 1) / page * page         // whole pages inside the range only
    let hi = (Int(bitPattern: start) + range.count) / page * page
    guard hi > lo, let p = UnsafeMutableRawPointer(bitPattern: lo) else { return }
    _ = madvise(p, hi - lo, MADV_DONTNEED)
}

/// Reads a small file (configs, /proc entries whose size reads as 0) fully
/// into memory.
public func readWholeFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FlamingoError.io("cannot open \(path): \(errnoString())") }
    defer { close(fd) }
    var st = stat()
    if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { throw FlamingoError.io("\(path) is a directory") }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 {
            if errno == EINTR { continue }
            throw FlamingoError.io("cannot read \(path): \(errnoString())")
        }
        if n == 0 { return out }
        out.append(contentsOf: chunk[0..<n])
    }
}

func errnoString() -> String { String(cString: strerror(errno)) }

/// The entries of a directory (without "." and "..").
public func listDirectory(_ dir: String) throws -> [String] {
    guard let d = opendir(dir) else { throw FlamingoError.io("cannot list \(dir): \(errnoString())") }
    defer { closedir(d) }
    var out: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { out.append(name) }
    }
    return out
}

/// Writes `bytes` to `path` (created or truncated).
public func writeWholeFile(_ path: String, _ bytes: [UInt8]) throws {
    let w = try FileWriter(path: path)
    try bytes.withUnsafeBytes { try w.write($0) }
    try w.close()
}

/// A file written sequentially; `close` reports any deferred write error.
final class FileWriter {
    private var file: UnsafeMutablePointer<FILE>?
    let path: String

    init(path: String) throws {
        self.path = path
        guard let f = fopen(path, "wb") else { throw FlamingoError.io("cannot create \(path): \(errnoString())") }
        file = f
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let file else { throw FlamingoError.io("\(path) is closed") }
        guard bytes.isEmpty || fwrite(bytes.baseAddress, 1, bytes.count, file) == bytes.count else {
            throw FlamingoError.io("writing \(path): \(errnoString())")
        }
    }

    func close() throws {
        guard let f = file else { return }
        file = nil
        guard fclose(f) == 0 else { throw FlamingoError.io("writing \(path): \(errnoString())") }
    }

    deinit { if let file { fclose(file) } }
}
