/// The VQAv2 accuracy of open_flamingo's eval/vqa_metric.py (the official
/// VQA evaluation with normalisation applied to every answer): answers are
/// normalised (punctuation, number words, articles, contractions); a
/// prediction scores the mean over the ground truths i of
/// min(1, #{other answers equal to it} / 3).
public enum VQAAccuracy {
    /// Accuracy in [0, 1] of one prediction against the human answers.
    public static func score(prediction: String, answers: [String]) -> Double {
        guard !answers.isEmpty else { return 0 }
        let pred = normalize(prediction), gts = answers.map(normalize)
        // Leave-one-out by position: vqa_metric.py removes the answer dict
        // itself, which is the same when answers carry distinct answer_ids.
        let total = gts.indices.reduce(0.0) { acc, i in
            let matches = gts.indices.filter { $0 != i && gts[$0] == pred }.count
            return acc + min(1, Double(matches) / 3)
        }
        return total / Double(gts.count)
    }

    /// clean → processPunctuation → processDigitArticle.
    public static func normalize(_ answer: String) -> String {
        let cleaned = answer.replacingAll("\n", with: " ").replacingAll("\t", with: " ")
        return processDigitArticle(processPunctuation(pyStrip(cleaned)))
    }

    static let punct: [Unicode.Scalar] = [";", "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]

    /// Each punctuation mark is deleted when it touches a space anywhere in
    /// the input (or the input has a digit,digit comma), else replaced by a
    /// space; then periods not followed by a digit are deleted — at most 32,
    /// because the original passes re.UNICODE (32) as `sub`'s count.
    public static func processPunctuation(_ text: String) -> String {
        let input = Array(text.unicodeScalars)
        let digitComma = input.indices.contains { i in
            i > 0 && i + 1 < input.count && input[i] == "," && isDigit(input[i - 1]) && isDigit(input[i + 1])
        }
        var out = input
        for p in punct {
            let touches = input.indices.contains { i in
                input[i] == p && ((i + 1 < input.count && input[i + 1] == " ") || (i > 0 && input[i - 1] == " "))
            }
            out = (touches || digitComma) ? out.filter { $0 != p } : out.map { $0 == p ? " " : $0 }
        }
        var kept: [Unicode.Scalar] = [], removed = 0
        for (i, c) in out.enumerated() {
            if c == ".", removed < 32, !(i + 1 < out.count && isDigit(out[i + 1])) { removed += 1; continue }
            kept.append(c)
        }
        var s = ""
        s.unicodeScalars.append(contentsOf: kept)
        return s
    }

    static let manualMap = ["none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"]
    static let articles: Set<String> = ["a", "an", "the"]

    /// Lower-cases, maps number words to digits, drops articles and restores
    /// apostrophes of contractions.
    public static func processDigitArticle(_ text: String) -> String {
        pySplit(text.lowercased())
            .map { manualMap[$0] ?? $0 }
            .filter { !articles.contains($0) }
            .map { contractions[$0] ?? $0 }
            .joined(separator: " ")
    }

    static func isDigit(_ c: Unicode.Scalar) -> Bool { c.properties.numericType == .decimal }

    /// Python's str.isspace, which split() and strip() use.
    static func isPySpace(_ c: Unicode.Scalar) -> Bool {
        c.properties.isWhitespace || (0x1C...0x1F).contains(c.value)
    }

    static func pySplit(_ s: String) -> [String] {
        s.unicodeScalars.split(whereSeparator: isPySpace).map { String(String.UnicodeScalarView($0)) }
    }

    static func pyStrip(_ s: String) -> String {
        let u = Array(s.unicodeScalars)
        guard let a = u.firstIndex(where: { !isPySpace($0) }), let b = u.lastIndex(where: { !isPySpace($0) }) else { return "" }
        var out = ""
        out.unicodeScalars.append(contentsOf: u[a...b])
        return out
    }

    static let contractions: [String: String] = [
        "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
        "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't", "dont": "don't",
        "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
        "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd", "howll": "how'll",
        "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd",
        "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
        "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
        "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
        "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've",
        "she'dve": "she'd've", "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
        "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
        "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
        "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
        "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
        "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
        "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
        "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
        "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
        "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
        "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
        "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
        "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
        "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
        "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
        "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
        "youve": "you've",
    ]
}
