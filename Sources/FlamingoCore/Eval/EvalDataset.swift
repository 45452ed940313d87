// Evaluation data in the formats the public benchmarks ship in (COCO
// captions, Karpathy splits, VQAv2 questions + annotations) plus a small
// classification format; docs/evaluation.md describes each.

public enum EvalTask: String, Sendable, CaseIterable {
    case captioning, vqa, classification
}

/// One image (and question) of a train pool or test set.
public struct EvalExample: Sendable, Equatable {
    /// The prediction key: image id (captioning, classification) or question id (VQA).
    public var id: String
    public var image: String
    /// VQA only.
    public var question: String?
    /// The demonstration text: first caption, answers[0] or the class name.
    public var target: String
    /// Every ground truth: all captions, all human answers, or the class name.
    public var references: [String]
    /// Classification only.
    public var label: Int?
    /// Ids of pool examples to use as fixed demonstrations, in order.
    public var demonstrations: [String]?
}

public struct EvalDataset: Sendable {
    public var task: EvalTask
    public var train: [EvalExample]
    public var test: [EvalExample]
    /// Classification only.
    public var classes: [String]
}

/// Where one split's files and images are.
public struct EvalSplitSource: Sendable {
    public var file: String
    /// VQA annotations (answers), matched to questions by question_id.
    public var annotations: String?
    /// Image paths are relative to this (default: the file's directory).
    public var imageDirectory: String?
    /// For entries without a file name: printf-style pattern of the image
    /// id, e.g. "COCO_val2014_%012d.jpg".
    public var imagePattern: String?

    public init(file: String, annotations: String? = nil, imageDirectory: String? = nil, imagePattern: String? = nil) {
        self.file = file
        self.annotations = annotations
        self.imageDirectory = imageDirectory
        self.imagePattern = imagePattern
    }

    var directory: String {
        if let imageDirectory { return imageDirectory }
        guard let slash = file.lastIndex(of: "/") else { return "." }
        return slash == file.startIndex ? "/" : String(file[..<slash])
    }

    func path(_ name: String) -> String {
        name.hasPrefix("/") ? name : directory + "/" + name
    }

    func path(imageId: String, fileName: String?) throws -> String {
        if let fileName { return path(fileName) }
        guard let pattern = imagePattern else {
            throw FlamingoError.invalidFormat("image \(imageId) has no file name; pass an image pattern (e.g. COCO_val2014_%012d.jpg)")
        }
        return path(try formatImagePattern(pattern, id: imageId))
    }
}

extension EvalDataset {
    public static func load(task: EvalTask, train: EvalSplitSource, test: EvalSplitSource) throws -> EvalDataset {
        switch task {
        case .captioning:
            return EvalDataset(task: task, train: try loadCaptions(train, isTrain: true),
                               test: try loadCaptions(test, isTrain: false), classes: [])
        case .vqa:
            return EvalDataset(task: task, train: try loadVQA(train), test: try loadVQA(test), classes: [])
        case .classification:
            let (trainClasses, trainSet) = try loadClassification(train)
            let (testClasses, testSet) = try loadClassification(test)
            guard trainClasses == testClasses else {
                throw FlamingoError.invalidFormat("\(train.file) and \(test.file) list different classes")
            }
            return EvalDataset(task: task, train: trainSet, test: testSet, classes: testClasses)
        }
    }

    /// COCO captions ({images, annotations}) or a Karpathy dataset_*.json
    /// ({images: [{filename, split, sentences}]}); for the latter, as
    /// open_flamingo, the train pool is the "train" split and the test set
    /// the "test" split.
    static func loadCaptions(_ src: EvalSplitSource, isTrain: Bool) throws -> [EvalExample] {
        try withContext(src.file) {
            let root = try readJSON(src.file)
            let images = try field(root, "images").arrayValue("images")
            if images.first?["sentences"] != nil {
                return try karpathy(images, src, split: isTrain ? "train" : "test")
            }
            var captions: [String: [String]] = [:]
            for (i, ann) in try field(root, "annotations").arrayValue("annotations").enumerated() {
                let image = try idString(field(ann, "image_id"), "annotations[\(i)].image_id")
                captions[image, default: []].append(try field(ann, "caption").stringValue("annotations[\(i)].caption"))
            }
            return try images.enumerated().compactMap { i, img in
                let id = try idString(field(img, "id"), "images[\(i)].id")
                guard let refs = captions[id], let first = refs.first else { return nil }
                return EvalExample(id: id, image: src.path(try field(img, "file_name").stringValue("images[\(i)].file_name")),
                                   target: first, references: refs, demonstrations: try demonstrations(img, "images[\(i)]"))
            }
        }
    }

    /// Ids are COCO's cocoid, or the file name without extension (Flickr30K).
    static func karpathy(_ images: [JSON], _ src: EvalSplitSource, split: String) throws -> [EvalExample] {
        try images.enumerated().compactMap { i, img in
            guard try field(img, "split").stringValue("images[\(i)].split") == split else { return nil }
            let refs = try field(img, "sentences").arrayValue("sentences").map { try field($0, "raw").stringValue("sentences.raw") }
            guard let first = refs.first else { return nil }
            var name = try field(img, "filename").stringValue("images[\(i)].filename")
            let id = try img["cocoid"].map { try idString($0, "images[\(i)].cocoid") }
                ?? String(name.split(separator: ".", omittingEmptySubsequences: false)[0])
            if let dir = img["filepath"]?.string, !dir.isEmpty { name = dir + "/" + name }
            return EvalExample(id: id, image: src.path(name), target: first, references: refs)
        }
    }

    /// VQAv2 questions ({questions, images?}) joined with annotations
    /// ({annotations: [{question_id, answers: [{answer}]}]}); a demonstration
    /// answers with answers[0] as open_flamingo does.
    static func loadVQA(_ src: EvalSplitSource) throws -> [EvalExample] {
        guard let annFile = src.annotations else {
            throw FlamingoError.invalidArgument("VQA needs an annotations file for \(src.file)")
        }
        let answers = try withContext(annFile) { () -> [String: [String]] in
            var out: [String: [String]] = [:]
            for (i, ann) in try field(readJSON(annFile), "annotations").arrayValue("annotations").enumerated() {
                let q = try idString(field(ann, "question_id"), "annotations[\(i)].question_id")
                out[q] = try field(ann, "answers").arrayValue("answers").map {
                    try field($0, "answer").stringValue("annotations[\(i)].answers.answer")
                }
            }
            return out
        }
        return try withContext(src.file) {
            let root = try readJSON(src.file)
            var files: [String: String] = [:]
            for (i, img) in (root["images"]?.array ?? []).enumerated() {
                files[try idString(field(img, "id"), "images[\(i)].id")] = try field(img, "file_name").stringValue("images[\(i)].file_name")
            }
            return try field(root, "questions").arrayValue("questions").enumerated().map { i, q in
                let qid = try idString(field(q, "question_id"), "questions[\(i)].question_id")
                let image = try idString(field(q, "image_id"), "questions[\(i)].image_id")
                guard let refs = answers[qid], let first = refs.first else {
                    throw FlamingoError.invalidFormat("question \(qid) has no answers in \(annFile)")
                }
                return EvalExample(id: qid, image: try src.path(imageId: image, fileName: files[image]),
                                   question: try field(q, "question").stringValue("questions[\(i)].question"),
                                   target: first, references: refs, demonstrations: try demonstrations(q, "questions[\(i)]"))
            }
        }
    }

    /// {"classes": [names], "images": [{id, file_name, label}]}.
    static func loadClassification(_ src: EvalSplitSource) throws -> ([String], [EvalExample]) {
        try withContext(src.file) {
            let root = try readJSON(src.file)
            let classes = try field(root, "classes").arrayValue("classes").map { try $0.stringValue("classes") }
            guard !classes.isEmpty else { throw FlamingoError.invalidFormat("no classes") }
            let examples = try field(root, "images").arrayValue("images").enumerated().map { i, img in
                guard let label = try field(img, "label").int, classes.indices.contains(label) else {
                    throw FlamingoError.invalidFormat("images[\(i)].label must be a class index in 0..<\(classes.count)")
                }
                return EvalExample(id: try idString(field(img, "id"), "images[\(i)].id"),
                                   image: src.path(try field(img, "file_name").stringValue("images[\(i)].file_name")),
                                   target: classes[label], references: [classes[label]], label: label,
                                   demonstrations: try demonstrations(img, "images[\(i)]"))
            }
            return (classes, examples)
        }
    }
}

// MARK: - JSON helpers

func readJSON(_ path: String) throws -> JSON {
    let bytes = try readWholeFile(path)
    return try bytes.withUnsafeBytes { try JSON.parse($0) }
}

func field(_ v: JSON, _ key: String) throws -> JSON {
    guard let f = v[key] else { throw FlamingoError.invalidFormat("missing \"\(key)\"") }
    return f
}

/// Ids may be numbers or strings; both become the string used as a key.
func idString(_ v: JSON, _ what: String) throws -> String {
    if let i = v.int { return String(i) }
    if let s = v.string { return s }
    throw FlamingoError.invalidFormat("\(what) must be an integer or a string")
}

func demonstrations(_ v: JSON, _ what: String) throws -> [String]? {
    guard let d = v["demonstrations"], !d.isNull else { return nil }
    return try d.arrayValue("\(what).demonstrations").map { try idString($0, "\(what).demonstrations") }
}

extension JSON {
    func arrayValue(_ what: String) throws -> [JSON] {
        guard let a = array else { throw FlamingoError.invalidFormat("\(what) must be an array") }
        return a
    }

    func stringValue(_ what: String) throws -> String {
        guard let s = string else { throw FlamingoError.invalidFormat("\(what) must be a string") }
        return s
    }
}

/// Formats an image id with the first printf conversion of `pattern`
/// (%d, %5d, %012d; %s for string ids); "%%" is a literal percent sign.
public func formatImagePattern(_ pattern: String, id: String) throws -> String {
    var out = "", chars = Array(pattern), i = 0, used = false
    while i < chars.count {
        guard chars[i] == "%" else { out.append(chars[i]); i += 1; continue }
        i += 1
        if i < chars.count && chars[i] == "%" { out.append("%"); i += 1; continue }
        var spec = ""
        while i < chars.count && chars[i].isNumber { spec.append(chars[i]); i += 1 }
        guard i < chars.count, chars[i] == "d" || chars[i] == "s", !used else {
            throw FlamingoError.invalidArgument("image pattern \"\(pattern)\" needs exactly one %d (or %0Nd, %s)")
        }
        if chars[i] == "d" && Int(id) == nil { throw FlamingoError.invalidFormat("image id \(id) is not an integer for %d") }
        let width = Int(spec) ?? 0, fill: Character = spec.hasPrefix("0") ? "0" : " "
        out += String(repeating: fill, count: max(0, width - id.count)) + id
        used = true
        i += 1
    }
    guard used else { throw FlamingoError.invalidArgument("image pattern \"\(pattern)\" has no %d") }
    return out
}
