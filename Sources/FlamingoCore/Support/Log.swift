import Glibc

/// Log levels, numerically equal to flamingo_log_level in the C header.
public enum LogLevel: Int32, Comparable, Sendable {
    case debug = 0, info = 1, warn = 2, error = 3, none = 4
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

public typealias LogCallback = @convention(c) (Int32, UnsafePointer<CChar>?, UnsafeMutableRawPointer?) -> Void

/// Process-wide log sink. Setting and logging are thread-safe: the sink is
/// swapped under a lock and a message is delivered with the sink current at
/// the time of the call.
public enum Log {
    private struct Sink: @unchecked Sendable {
        var callback: LogCallback?
        var user: UnsafeMutableRawPointer?
        var minLevel: LogLevel
    }
    private static let sink = Locked(Sink(callback: nil, user: nil, minLevel: .warn))

    public static func setCallback(_ cb: LogCallback?, user: UnsafeMutableRawPointer?) {
        sink.withLock { $0.callback = cb; $0.user = user }
    }

    public static func setLevel(_ level: LogLevel) {
        sink.withLock { $0.minLevel = level }
    }

    public static var level: LogLevel { sink.withLock { $0.minLevel } }

    public static func message(_ level: LogLevel, _ text: @autoclosure () -> String) {
        let s = sink.withLock { $0 }
        guard level != .none, level >= s.minLevel else { return }
        let line = text()
        if let cb = s.callback {
            line.withCString { cb(level.rawValue, $0, s.user) }
        } else {
            let tag = ["debug", "info", "warn", "error"][Int(level.rawValue)]
            fputs("flamingo [\(tag)] \(line)\n", stderr)
        }
    }

    public static func debug(_ t: @autoclosure () -> String) { message(.debug, t()) }
    public static func info(_ t: @autoclosure () -> String) { message(.info, t()) }
    public static func warn(_ t: @autoclosure () -> String) { message(.warn, t()) }
}
