/// OpenFlamingo's evaluation prompts and answer post-processing (spec/70
/// §1–2), exact characters: no space after "Output:" / "Short answer:",
/// demonstrations joined with "\n", the query last.
public enum FewShot {
    public static func captionPrompt(shots: [String]) -> String {
        shots.map { "<image>Output:\($0.trimmingWhitespace())<|endofchunk|>\n" }.joined() + "<image>Output:"
    }

    public static func vqaPrompt(shots: [(question: String, answer: String)], question: String) -> String {
        shots.map { "<image>Question:\($0.question) Short answer:\($0.answer)<|endofchunk|>\n" }.joined()
            + "<image>Question:\(question) Short answer:"
    }

    public static func classificationPrompt(shots: [String]) -> String {
        shots.map { "<image>Output:\($0)<|endofchunk|>" }.joined() + "<image>Output:"
    }

    /// Captioning: cut at the first "Output", delete every '"'.
    public static func postprocessCaption(_ s: String) -> String {
        cut(s, at: ["Output"]).replacingAll("\"", with: "").trimmingWhitespace()
    }

    /// VQA: cut at the first of Question / Answer / Short, then at ", ".
    public static func postprocessVQA(_ s: String) -> String {
        cut(cut(s, at: ["Question", "Answer", "Short"]), at: [", "]).trimmingWhitespace()
    }

    static func cut(_ s: String, at markers: [String]) -> String {
        var end = s.endIndex
        for m in markers {
            if let r = s.range(of: m), r.lowerBound < end { end = r.lowerBound }
        }
        return String(s[..<end])
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }

    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var out = "", rest = self[...]
        while let r = rest.range(of: target) {
            out += rest[..<r.lowerBound] + replacement
            rest = rest[r.upperBound...]
        }
        return out + rest
    }

    func range(of target: String) -> Range<String.Index>? { self[...].range(of: target) }
}

extension Substring {
    func range(of target: String) -> Range<String.Index>? {
        guard !target.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(target) { return i..<index(i, offsetBy: target.count) }
            i = index(after: i)
        }
        return nil
    }
}
