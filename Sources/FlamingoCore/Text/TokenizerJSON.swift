// Typed access to one object of tokenizer.json, with the dotted path in every
// error message ("tokenizer.json: pre_tokenizer.add_prefix_space must be ...").
// Unlike config.json, unknown keys are ignored: tokenizer.json files carry
// fields (offsets settings, version stamps) that do not change the ids.

struct TokenizerJSON {
    let value: JSON
    let path: String

    init(_ value: JSON, path: String) {
        self.value = value
        self.path = path
    }

    private func fail(_ key: String, _ what: String) -> FlamingoError {
        .invalidFormat("tokenizer.json: \(path.isEmpty ? key : path + "." + key) \(what)")
    }

    /// The member `key`, nil when absent or null.
    func field(_ key: String) -> TokenizerJSON? {
        guard let v = value[key], v != .null else { return nil }
        return TokenizerJSON(v, path: path.isEmpty ? key : path + "." + key)
    }

    func require(_ key: String) throws -> TokenizerJSON {
        guard let f = field(key) else { throw fail(key, "is missing") }
        return f
    }

    func optionalString(_ key: String) throws -> String? {
        guard let f = field(key) else { return nil }
        guard let s = f.value.string else { throw fail(key, "must be a string") }
        return s
    }

    func string(_ key: String) throws -> String {
        guard let s = try optionalString(key) else { throw fail(key, "is missing") }
        return s
    }

    func bool(_ key: String, default d: Bool) throws -> Bool {
        guard let f = field(key) else { return d }
        guard let b = f.value.bool else { throw fail(key, "must be true or false") }
        return b
    }

    func int(_ key: String, default d: Int? = nil) throws -> Int {
        guard let f = field(key) else {
            if let d { return d }
            throw fail(key, "is missing")
        }
        guard let i = f.value.int, i >= 0 else { throw fail(key, "must be a non-negative integer") }
        return i
    }

    /// A single character (a Rust `char` field such as Metaspace.replacement).
    func character(_ key: String) throws -> UInt32 {
        let s = try string(key)
        let u = Array(s.unicodeScalars)
        guard u.count == 1 else { throw fail(key, "must be exactly one character") }
        return u[0].value
    }

    func array(_ key: String) throws -> [TokenizerJSON] {
        guard let f = field(key) else { throw fail(key, "is missing") }
        guard let a = f.value.array else { throw fail(key, "must be an array") }
        return a.enumerated().map { TokenizerJSON($0.element, path: "\(f.path)[\($0.offset)]") }
    }

    /// The "type" tag of a component; `kind` names the component in errors.
    func type(_ kind: String) throws -> String {
        guard value.object != nil else {
            throw FlamingoError.invalidFormat("tokenizer.json: \(path) must be an object or null")
        }
        guard let t = value["type"]?.string else {
            throw FlamingoError.invalidFormat("tokenizer.json: \(path) has no \"type\" naming the \(kind)")
        }
        return t
    }
}
