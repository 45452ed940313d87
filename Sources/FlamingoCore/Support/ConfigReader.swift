/// Reads one JSON object of config.json strictly: typed getters with
/// defaults, range checks, and `finish()` rejects keys nobody asked for, so a
/// misspelt option is an error instead of a silent default.
struct ConfigReader {
    let path: String
    private let object: [JSONKey: JSON]
    private var used: Set<String> = []

    init(_ value: JSON?, path: String) throws {
        guard let o = value?.object else { throw FlamingoError.invalidFormat("config.json: \(path) must be an object") }
        self.object = o
        self.path = path
    }

    private func fail(_ key: String, _ m: String) -> FlamingoError {
        .invalidFormat("config.json: \(path).\(key) \(m)")
    }

    func has(_ key: String) -> Bool { object[JSONKey(key)] != nil && object[JSONKey(key)] != .null }

    mutating func raw(_ key: String) -> JSON? {
        used.insert(key)
        return object[JSONKey(key)]
    }

    mutating func int(_ key: String, default d: Int? = nil, min: Int = 1, max: Int = 1 << 30) throws -> Int {
        guard let v = raw(key), v != .null else {
            if let d { return d }
            throw fail(key, "is missing")
        }
        guard let i = v.int else { throw fail(key, "must be an integer") }
        guard i >= min && i <= max else { throw fail(key, "= \(i) is outside [\(min), \(max)]") }
        return i
    }

    mutating func optionalInt(_ key: String, min: Int = 0, max: Int = 1 << 30) throws -> Int? {
        guard let v = raw(key), v != .null else { return nil }
        guard let i = v.int else { throw fail(key, "must be an integer or null") }
        guard i >= min && i <= max else { throw fail(key, "= \(i) is outside [\(min), \(max)]") }
        return i
    }

    mutating func double(_ key: String, default d: Double? = nil, min: Double = -.infinity,
                         max: Double = .infinity) throws -> Double {
        guard let v = raw(key), v != .null else {
            if let d { return d }
            throw fail(key, "is missing")
        }
        guard let x = v.double, x.isFinite else { throw fail(key, "must be a number") }
        guard x >= min && x <= max else { throw fail(key, "= \(x) is outside [\(min), \(max)]") }
        return x
    }

    mutating func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let v = raw(key), v != .null else { return d }
        guard let b = v.bool else { throw fail(key, "must be true or false") }
        return b
    }

    mutating func string(_ key: String, default d: String? = nil, oneOf allowed: [String]? = nil) throws -> String {
        guard let v = raw(key), v != .null else {
            if let d { return d }
            throw fail(key, "is missing")
        }
        guard let s = v.string else { throw fail(key, "must be a string") }
        if let allowed, !allowed.contains(s) {
            throw FlamingoError.unsupported("config.json: \(path).\(key) = \"\(s)\" is not one of \(allowed.joined(separator: ", "))")
        }
        return s
    }

    mutating func floats(_ key: String, count: Int) throws -> [Float] {
        guard let a = raw(key)?.array, a.count == count else { throw fail(key, "must be an array of \(count) numbers") }
        return try a.map {
            guard let x = $0.double, x.isFinite else { throw fail(key, "must contain only numbers") }
            return Float(x)
        }
    }

    mutating func child(_ key: String) throws -> ConfigReader {
        try ConfigReader(raw(key), path: path.isEmpty ? key : "\(path).\(key)")
    }

    func finish() throws {
        let extra = Set(object.keys.map(\.string)).subtracting(used).sorted()
        if !extra.isEmpty {
            let where_ = path.isEmpty ? "top level" : path
            throw FlamingoError.invalidFormat("config.json: unknown key(s) at \(where_): \(extra.joined(separator: ", "))")
        }
    }
}
