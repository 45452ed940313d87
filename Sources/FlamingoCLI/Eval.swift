import ArgumentParser
import FlamingoCore
import Glibc

/// `flamingo eval`: open_flamingo's few-shot evaluation (docs/evaluation.md).
struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Few-shot evaluation: captioning (CIDEr), VQA (VQAv2 accuracy), classification (top-1).",
        discussion: "Data in the COCO / Karpathy / VQAv2 formats; see docs/evaluation.md.")

    @Option(name: .shortAndLong, help: "Model directory (default: $FLAMINGO_MODEL).") var model: String?
    @Option(help: "CPU threads (default: one per core).") var threads: Int?
    @Option(help: "Compute backend: cpu or opencl.") var backend: String = "cpu"
    @Option(help: "OpenCL device: an index from `flamingo devices` or a name substring.") var device: String?
    @Option(help: "captioning, vqa or classification.") var task: String
    @Option(help: "Demonstration pool: captions / VQA questions / classification file.") var train: String
    @Option(help: "Test set file (same format as --train).") var test: String
    @Option(help: "VQA: annotations (answers) of the train questions.") var trainAnnotations: String?
    @Option(help: "VQA: annotations (answers) of the test questions.") var testAnnotations: String?
    @Option(help: "Directory test image paths are relative to (default: the test file's directory).") var images: String?
    @Option(help: "Directory train image paths are relative to (default: --images, else the train file's directory).")
    var trainImages: String?
    @Option(help: "Test image file name from its id when the data lists none, e.g. COCO_val2014_%012d.jpg.")
    var imagePattern: String?
    @Option(help: "Train image file name pattern (default: --image-pattern).") var trainImagePattern: String?
    @Option(help: "Comma-separated shot counts.") var shots: String = "0,4,8,16,32"
    @Option(help: "Demonstrations: random (seeded per example) or fixed.") var demos: String = "random"
    @Option(help: "Seed of the random demonstrations.") var seed: Int = 42
    @Option(help: "Beam count.") var beams: Int = 3
    @Option(help: "Length penalty of beam search.") var lengthPenalty: Float = 0
    @Option(help: "Maximum new tokens (default: 20 captioning, 5 VQA).") var maxNewTokens: Int?
    @Option(help: "Evaluate only the first N test examples.") var limit: Int?
    @Option(help: "Write the results as JSON to this file ('-': standard output).") var json: String?
    @Flag(help: "Include every prediction in the JSON.") var predictions = false

    func run() throws {
        try reportingErrors {
            guard let task = EvalTask(rawValue: task) else {
                throw FlamingoError.invalidArgument("--task must be captioning, vqa or classification")
            }
            let shotList = try parseShots()
            let settings = try makeSettings()
            let data = try EvalDataset.load(task: task, train: EvalSplitSource(
                file: train, annotations: trainAnnotations, imageDirectory: trainImages ?? images,
                imagePattern: trainImagePattern ?? imagePattern),
                test: EvalSplitSource(file: test, annotations: testAnnotations, imageDirectory: images, imagePattern: imagePattern))
            let runner = try EvalRunner(flamingo: try loadModel(), dataset: data, settings: settings)
            var results: [EvalResult] = []
            for s in shotList {
                let progress = Progress(total: runner.testSet.count, label: "\(s)-shot")
                results.append(try runner.run(shots: s) { _, _ in progress.step() })
                progress.finish()
            }
            try emit(task: task, metric: runner.metricName, settings: settings, results: results)
        }
    }

    func parseShots() throws -> [Int] {
        let list = shots.split(separator: ",").map { Int($0.trimmingSpaces()) }
        guard !list.isEmpty, list.allSatisfy({ ($0 ?? -1) >= 0 }) else {
            throw FlamingoError.invalidArgument("--shots must be comma-separated counts >= 0, e.g. 0,4,8")
        }
        return list.map { $0! }
    }

    func makeSettings() throws -> EvalSettings {
        var s = EvalSettings()
        guard let mode = DemoMode(rawValue: demos) else { throw FlamingoError.invalidArgument("--demos must be random or fixed") }
        guard beams >= 1 else { throw FlamingoError.invalidArgument("--beams must be >= 1") }
        if let limit, limit < 1 { throw FlamingoError.invalidArgument("--limit must be >= 1") }
        s.demos = mode
        s.seed = seed
        s.beams = beams
        s.lengthPenalty = lengthPenalty
        s.maxNewTokens = maxNewTokens
        s.limit = limit
        return s
    }

    func loadModel() throws -> Flamingo {
        var o = try ModelOptions.parse([])
        o.model = model
        o.threads = threads
        o.backend = backend
        o.device = device
        return try o.load()
    }

    func emit(task: EvalTask, metric: String, settings: EvalSettings, results: [EvalResult]) throws {
        let extra: [(String, OrderedJSON)] = [("model", .string(model ?? getenv("FLAMINGO_MODEL").map { String(cString: $0) } ?? "")),
                                              ("train", .string(train)), ("test", .string(test))]
        let text = EvalReport.json(task: task, metric: metric, settings: settings, extra: extra,
                                   results: results, predictions: predictions)
        if json == "-" { print(text); return }
        print(EvalReport.table(task: task, metric: metric, results: results))
        guard let path = json else { return }
        guard let f = fopen(path, "w") else { throw FlamingoError.io("cannot write \(path)") }
        let wrote = fputs(text + "\n", f) >= 0
        guard fclose(f) == 0 && wrote else { throw FlamingoError.io("cannot write \(path)") }
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
