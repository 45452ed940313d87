/// An approximation, without Java, of what pycocoevalcap does to captions
/// before CIDEr: Stanford PTBTokenizer (-lowerCase) followed by removal of
/// its punctuation tokens. It reproduces the common cases (split-off
/// punctuation, clitics "'s" / "n't", "can not", numbers like 3.5 and 1,000,
/// abbreviations like "u.s." and "st.", hyphenated words, brackets as
/// "-lrb-" which pycocoevalcap fails to remove after lower-casing);
/// docs/evaluation.md lists what it does not.
public enum CaptionTokenizer {
    /// pycocoevalcap's PUNCTUATIONS after PTB's quote and dash rewriting.
    static let removed: Set<String> = ["''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
    static let brackets: [Character: String] = ["(": "-lrb-", ")": "-rrb-", "[": "-lsb-", "]": "-rsb-", "{": "-lcb-", "}": "-rcb-"]
    static let leading: Set<Character> = ["\"", "'", "`", "(", "[", "{", "$"]
    static let trailing: Set<Character> = [".", ",", ";", ":", "?", "!", "\"", "'", "`", ")", "]", "}", "%"]
    static let clitics = ["n't", "'s", "'re", "'ll", "'m", "'ve", "'d"]
    static let abbreviations: Set<String> = ["mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "inc", "ltd", "mt", "ave", "prof"]
    static let compounds: [String: [String]] = ["cannot": ["can", "not"], "gonna": ["gon", "na"], "wanna": ["wan", "na"],
                                                "gotta": ["got", "ta"], "gimme": ["gim", "me"], "lemme": ["lem", "me"],
                                                "y'all": ["y'", "all"]]

    public static func tokenize(_ text: String) -> [String] {
        var s = text.lowercased()
        for dash in ["\u{2014}", "\u{2013}"] { s = s.replacingAll(dash, with: " -- ") }
        s = s.replacingAll("\u{2019}", with: "'").replacingAll("\u{2018}", with: "`")
        s = s.replacingAll("\"", with: " '' ")
        return s.split(whereSeparator: { $0.isWhitespace }).flatMap { chunk(String($0)) }.filter { !removed.contains($0) }
    }

    /// One whitespace-separated chunk: peel punctuation off both ends,
    /// then split what remains inside.
    static func chunk(_ c: String) -> [String] {
        var w = Substring(c), lead: [String] = [], trail: [String] = []
        while let f = w.first, leading.contains(f), w.count > 1, !clitics.contains(String(w)) {
            lead.append(symbol(f))
            w = w.dropFirst()
        }
        while w.count > 1, let l = w.last {
            if w.hasSuffix("...") { trail.insert("...", at: 0); w = w.dropLast(3); continue }
            guard trailing.contains(l), !(l == "." && isAbbreviation(w.dropLast())) else { break }
            trail.insert(symbol(l), at: 0)
            w = w.dropLast()
        }
        return lead + inner(String(w)) + trail
    }

    static func symbol(_ c: Character) -> String { brackets[c] ?? String(c) }

    /// "u.s", "p.m", "a" (single letters joined by periods) or a known title.
    static func isAbbreviation(_ w: Substring) -> Bool {
        if abbreviations.contains(String(w)) || (w.count == 1 && w.first?.isLetter == true) { return true }
        let parts = w.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count > 1 && parts.allSatisfy { $0.count == 1 && $0.first?.isLetter == true }
    }

    /// Splits inside a chunk: "...", separators that are not between digits,
    /// brackets, clitics and PTB's compound words.
    static func inner(_ w: String) -> [String] {
        guard !w.isEmpty else { return [] }
        if w == "..." || removed.contains(w) { return [w] }
        let chars = Array(w)
        var out: [String] = [], cur = ""
        var i = 0
        func flush() { if !cur.isEmpty { out += word(cur) }; cur = "" }
        while i < chars.count {
            let c = chars[i]
            if c == ".", i + 2 < chars.count, chars[i + 1] == ".", chars[i + 2] == "." {
                flush(); out.append("..."); i += 3; continue
            }
            let betweenDigits = i > 0 && i + 1 < chars.count && chars[i - 1].isNumber && chars[i + 1].isNumber
            if (c == "," || c == ":") && !betweenDigits || c == ";" || c == "?" || c == "!" || brackets[c] != nil {
                flush(); out.append(symbol(c)); i += 1; continue
            }
            cur.append(c)
            i += 1
        }
        flush()
        return out
    }

    static func word(_ w: String) -> [String] {
        if let parts = compounds[w] { return parts }
        for c in clitics where w.hasSuffix(c) && w.count > c.count {
            return [String(w.dropLast(c.count)), c]
        }
        return [w]
    }
}
