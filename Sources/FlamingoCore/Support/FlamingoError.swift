// Every failure the engine can report. Each case maps to one status code of
// the C ABI (flamingo_status in include/flamingo.h) and carries the message a
// caller sees through flamingo_last_error().

public enum FlamingoError: Error, Equatable, CustomStringConvertible {
    case invalidArgument(String)
    case io(String)
    case invalidFormat(String)
    case unsupported(String)
    case outOfMemory(String)
    case backend(String)
    case notFound(String)
    case bufferTooSmall(String)
    case cancelled(String)
    case `internal`(String)

    /// The C ABI status code (keep in sync with include/flamingo.h).
    public var status: Int32 {
        switch self {
        case .invalidArgument: return 1
        case .io: return 2
        case .invalidFormat: return 3
        case .unsupported: return 4
        case .outOfMemory: return 5
        case .backend: return 6
        case .notFound: return 7
        case .bufferTooSmall: return 8
        case .cancelled: return 9
        case .internal: return 10
        }
    }

    public var message: String {
        switch self {
        case .invalidArgument(let m), .io(let m), .invalidFormat(let m), .unsupported(let m),
             .outOfMemory(let m), .backend(let m), .notFound(let m), .bufferTooSmall(let m),
             .cancelled(let m), .internal(let m):
            return m
        }
    }

    public var description: String { message }

    /// Prefixes the message with context ("config.json: ...") keeping the kind.
    public func context(_ prefix: String) -> FlamingoError {
        let m = prefix + ": " + message
        switch self {
        case .invalidArgument: return .invalidArgument(m)
        case .io: return .io(m)
        case .invalidFormat: return .invalidFormat(m)
        case .unsupported: return .unsupported(m)
        case .outOfMemory: return .outOfMemory(m)
        case .backend: return .backend(m)
        case .notFound: return .notFound(m)
        case .bufferTooSmall: return .bufferTooSmall(m)
        case .cancelled: return .cancelled(m)
        case .internal: return .internal(m)
        }
    }
}

/// Runs `body`, adding `prefix` to any FlamingoError it throws.
@inline(__always)
func withContext<T>(_ prefix: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as FlamingoError { throw e.context(prefix()) }
}
