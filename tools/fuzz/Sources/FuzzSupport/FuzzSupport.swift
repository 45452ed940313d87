// What every fuzz target shares: a scratch directory of its own (on tmpfs when there
// is one) for inputs that the engine reads from files, the split of one input into
// parts, and the rule that decides what counts as a defect.
import FlamingoCore
import Glibc

/// Only errors reach the caller: FlamingoError is the engine's clear-error contract, so any
/// other outcome (a crash, a sanitizer report, a hang, a leak) is what libFuzzer reports.
/// An `internal` error is a bug too: it says the engine reached a state it thought impossible.
public func expectCleanError(_ body: () throws -> Void) {
    do { try body() } catch let e as FlamingoError {
        if case .internal(let m) = e {
            fputs("fuzz: internal error: \(m)\n", stderr)
            abort()
        }
    } catch {
        fputs("fuzz: unexpected error type: \(error)\n", stderr)
        abort()
    }
}

/// A directory private to this process, removed at exit.
public let scratch: String = {
    let base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp"
    var template = Array("\(base)/flamingo-fuzz-XXXXXX".utf8CString)
    guard let p = mkdtemp(&template) else { fputs("fuzz: mkdtemp failed\n", stderr); exit(2) }
    let dir = String(cString: p)
    atexit_dir = dir
    atexit { if let d = atexit_dir { removeTree(d) } }
    return dir
}()

nonisolated(unsafe) private var atexit_dir: String?

private func removeTree(_ dir: String) {
    guard let d = opendir(dir) else { return }
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if name != "." && name != ".." { unlink(dir + "/" + name) }
    }
    closedir(d)
    rmdir(dir)
}

/// Writes `bytes` to `path` (truncating).
public func write(_ bytes: UnsafeRawBufferPointer, to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { fputs("fuzz: cannot write \(path)\n", stderr); exit(2) }
    var off = 0
    while off < bytes.count {
        let n = Glibc.write(fd, bytes.baseAddress! + off, bytes.count - off)
        guard n > 0 else { break }
        off += n
    }
    close(fd)
}

/// Splits an input at the first occurrence of `separator` (the corpora use "\n#----#\n"):
/// (before, after); no separator: (all, empty).
public func split(_ data: UnsafeRawBufferPointer, separator: String = "\n#----#\n")
    -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer) {
    let sep = Array(separator.utf8)
    if data.count >= sep.count {
        for i in 0...(data.count - sep.count) where data[i] == sep[0] {
            if (0..<sep.count).allSatisfy({ data[i + $0] == sep[$0] }) {
                return (UnsafeRawBufferPointer(rebasing: data[0..<i]),
                        UnsafeRawBufferPointer(rebasing: data[(i + sep.count)...]))
            }
        }
    }
    return (data, UnsafeRawBufferPointer(rebasing: data[data.count...]))
}

/// The raw input of a libFuzzer call.
public func input(_ data: UnsafePointer<UInt8>?, _ size: Int) -> UnsafeRawBufferPointer {
    guard let data, size > 0 else { return UnsafeRawBufferPointer(start: nil, count: 0) }
    return UnsafeRawBufferPointer(start: data, count: size)
}

/// The repository's fixture directory (the fuzz package lives in tools/fuzz).
public let fixtures: String = {
    if let env = getenv("FLAMINGO_FIXTURES") { return String(cString: env) }
    let here = #filePath  // tools/fuzz/Sources/FuzzSupport/FuzzSupport.swift
    var parts = here.split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(5)
    return parts.joined(separator: "/") + "/Tests/Fixtures"
}()
