/// A JSON value whose objects keep their key order, for readable and
/// byte-for-byte reproducible reports.
public indirect enum OrderedJSON: Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case number(Double)
    case string(String)
    case array([OrderedJSON])
    case object([(String, OrderedJSON)])

    public var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .number(let d): return d.isFinite ? "\(d)" : "null"
        case .string(let s): return Self.quote(s)
        case .array(let a): return "[" + a.map(\.text).joined(separator: ", ") + "]"
        case .object(let o): return "{" + o.map { Self.quote($0.0) + ": " + $0.1.text }.joined(separator: ", ") + "}"
        }
    }

    /// `s` as a JSON string literal (control characters escaped).
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

/// The results of `flamingo eval` as JSON and as a table.
public enum EvalReport {
    /// {task, metric, score_scale, settings, results: [{shots, score, n, predictions?}]}.
    public static func json(task: EvalTask, metric: String, settings: EvalSettings, extra: [(String, OrderedJSON)] = [],
                            results: [EvalResult], predictions: Bool) -> String {
        var s: [(String, OrderedJSON)] = [
            ("demos", .string(settings.demos.rawValue)), ("seed", .int(settings.seed)),
            ("limit", settings.limit.map { .int($0) } ?? .null),
        ]
        if task != .classification {
            s += [("beams", .int(settings.beams)), ("length_penalty", .number(Double(settings.lengthPenalty))),
                  ("max_new_tokens", .int(settings.maxNewTokens(for: task)))]
        }
        let rows: [OrderedJSON] = results.map { r in
            var o: [(String, OrderedJSON)] = [("shots", .int(r.shots)), ("score", .number(r.score)), ("n", .int(r.n))]
            if predictions { o.append(("predictions", .object(r.predictions.map { ($0.id, .string($0.text)) }))) }
            return .object(o)
        }
        return OrderedJSON.object([
            ("task", .string(task.rawValue)), ("metric", .string(metric)), ("score_scale", .int(100)),
            ("settings", .object(extra + s)), ("results", .array(rows)),
        ]).text
    }

    /// One row per shot count: task, shots, score (2 decimals), n.
    public static func table(task: EvalTask, metric: String, results: [EvalResult]) -> String {
        let header = ["task", "shots", metric, "n"]
        let rows = results.map { [task.rawValue, String($0.shots), fixed2($0.score), String($0.n)] }
        let widths = header.indices.map { c in ([header] + rows).map { $0[c].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { c, v in
                let pad = String(repeating: " ", count: widths[c] - v.count)
                return c == 0 ? v + pad : pad + v
            }.joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

    static func fixed2(_ x: Double) -> String {
        guard x.isFinite else { return "nan" }
        let cents = Int((abs(x) * 100).rounded())
        let frac = cents % 100
        return (x < 0 && cents > 0 ? "-" : "") + "\(cents / 100)." + (frac < 10 ? "0" : "") + "\(frac)"
    }
}
