import XCTest
@testable import FlamingoCore

/// The few-shot evaluation harness: metrics against pycocoevalcap and
/// open_flamingo's vqa_metric.py (goldens from
/// tools/reference/make_eval_goldens.py), the shared demo sampler, the data
/// loaders, open_flamingo's prompts, and the runner on the tiny model.
final class EvalTests: XCTestCase {
    static let tiny = fixturesDir + "/eval/tiny"
    static let goldens: JSON = try! readJSON(fixturesDir + "/eval/goldens.json")

    func words(_ s: JSON?) -> [String] { (s?.string ?? "").split(separator: " ").map(String.init) }

    func assertClose(_ a: Double, _ b: Double?, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let b else { return XCTFail("no golden for \(what)", file: file, line: line) }
        XCTAssertLessThanOrEqual(abs(a - b), 1e-9 * max(1, abs(b)), "\(what): \(a) vs \(b)", file: file, line: line)
    }

    // MARK: metrics

    func testCIDErMatchesPycocoevalcap() throws {
        let g = try XCTUnwrap(Self.goldens["cider"])
        let ids = ["1", "2", "3", "4", "5", "6"]
        let refs = ids.map { id in (g["references"]?[id]?.array ?? []).map(words) }
        let cands = ids.map { words(g["candidates"]?[$0]) }
        let all = try CIDEr.score(candidates: cands, references: refs)
        assertClose(all.score, g["score"]?.double, "corpus")
        for (i, s) in all.perExample.enumerated() { assertClose(s, g["per_example"]?.array?[i].double, "image \(ids[i])") }
        // Document frequencies come from the scored subset only.
        let sub = try CIDEr.score(candidates: Array(cands[..<2]), references: Array(refs[..<2]))
        assertClose(sub.score, g["subset_12_score"]?.double, "subset")
        assertClose(try CIDEr.score(candidates: [cands[0]], references: [refs[0]]).score, g["single_image_score"]?.double, "single")
        XCTAssertThrowsError(try CIDEr.score(candidates: [], references: []))
    }

    func testCaptionTokenizerMatchesPTBOnCaptions() throws {
        guard let cases = Self.goldens["ptb"]?.array else { throw XCTSkip("goldens made without java") }
        for c in cases {
            let text = try XCTUnwrap(c["text"]?.string)
            XCTAssertEqual(CaptionTokenizer.tokenize(text).joined(separator: " "), c["tokens"]?.string, text)
        }
    }

    func testVQANormalizationMatchesOfficial() throws {
        for c in try XCTUnwrap(Self.goldens["vqa"]?["normalization"]?.array) {
            let answer = try XCTUnwrap(c["answer"]?.string)
            XCTAssertEqual(VQAAccuracy.normalize(answer), c["normalized"]?.string, answer)
        }
        // More than 32 periods: the original's re.sub count quirk keeps the rest.
        XCTAssertEqual(VQAAccuracy.processPunctuation(String(repeating: "a.", count: 40)),
                       String(repeating: "a", count: 32) + String(repeating: "a.", count: 8))
    }

    func testVQAAccuracyMatchesOfficial() throws {
        var total = 0.0
        let cases = try XCTUnwrap(Self.goldens["vqa"]?["accuracy"]?.array)
        for c in cases {
            let pred = try XCTUnwrap(c["prediction"]?.string)
            let acc = VQAAccuracy.score(prediction: pred, answers: (c["answers"]?.array ?? []).compactMap(\.string))
            assertClose(acc, c["accuracy"]?.double, pred)
            total += acc
        }
        assertClose(total / Double(cases.count) * 100, Self.goldens["vqa"]?["overall"]?.double, "overall")
    }

    // MARK: demonstrations

    func testRandomDemosMatchThePythonSampler() throws {
        for c in try XCTUnwrap(Self.goldens["demos"]?.array) {
            let got = try DemoSampler.randomIndices(poolSize: c["n"]!.int!, count: c["k"]!.int!, seed: c["seed"]!.int!, query: c["query"]!.int!)
            XCTAssertEqual(got, c["indices"]?.array?.compactMap(\.int), "\(c)")
        }
        // Literal values, in case the goldens file is regenerated wrongly.
        XCTAssertEqual(try DemoSampler.randomIndices(poolSize: 10, count: 4, seed: 42, query: 0), [7, 5, 3, 8])
        XCTAssertEqual(try DemoSampler.randomIndices(poolSize: 10, count: 2, seed: 42, query: 7), [6, 8])
        XCTAssertThrowsError(try DemoSampler.randomIndices(poolSize: 3, count: 4, seed: 1, query: 0))
        XCTAssertEqual(DemoSampler.effectiveShots(0), 2)
        XCTAssertEqual(DemoSampler.effectiveShots(4), 4)
    }

    func testFixedDemosUseTheListedIdsElseThePoolStart() throws {
        let data = try Self.load(.vqa)
        let index = Dictionary(uniqueKeysWithValues: data.train.enumerated().map { ($1.id, $0) })
        let pick = { (q: Int, k: Int) in
            try DemoSampler.indices(for: data.test[q], query: q, pool: data.train, poolIndex: index, count: k, mode: .fixed, seed: 0)
        }
        XCTAssertEqual(try pick(0, 2), [3, 0])      // "demonstrations": [1003, 1000, …]
        XCTAssertEqual(try pick(1, 3), [0, 1, 2])   // no list: the first k of the pool
        XCTAssertThrowsError(try pick(0, 5))        // the list has 4
        var bad = data.test[0]
        bad.demonstrations = ["999"]
        XCTAssertThrowsError(try DemoSampler.indices(for: bad, query: 0, pool: data.train, poolIndex: index, count: 1, mode: .fixed, seed: 0))
    }

    // MARK: data

    static func load(_ task: EvalTask) throws -> EvalDataset {
        switch task {
        case .captioning:
            return try EvalDataset.load(task: task, train: EvalSplitSource(file: tiny + "/captions_train.json"),
                                        test: EvalSplitSource(file: tiny + "/captions_test.json"))
        case .vqa:
            return try EvalDataset.load(task: task, train: EvalSplitSource(file: tiny + "/vqa_train_questions.json", annotations: tiny + "/vqa_train_annotations.json"),
                                        test: EvalSplitSource(file: tiny + "/vqa_test_questions.json", annotations: tiny + "/vqa_test_annotations.json"))
        case .classification:
            return try EvalDataset.load(task: task, train: EvalSplitSource(file: tiny + "/classification_train.json"),
                                        test: EvalSplitSource(file: tiny + "/classification_test.json"))
        }
    }

    func testLoadersReadCOCOVQAv2AndClassification() throws {
        let cap = try Self.load(.captioning)
        XCTAssertEqual(cap.train.map(\.id), ["101", "102", "103", "104", "105"])
        XCTAssertEqual(cap.train[0].target, "A red square.")
        XCTAssertEqual(cap.test[0].references, ["A red square on white.", "A red box.", "Red shape."])
        XCTAssertEqual(cap.test[0].image, Self.tiny + "/../../images/exif3_40x24.jpg")

        let vqa = try Self.load(.vqa)
        XCTAssertEqual(vqa.test.map(\.id), ["2000", "2001", "2002"])
        XCTAssertEqual(vqa.train[1].question, "How many cats?")
        XCTAssertEqual(vqa.train[1].target, "two")
        XCTAssertEqual(vqa.test[0].references.count, 10)
        XCTAssertEqual(vqa.test[0].demonstrations, ["1003", "1000", "1001", "1002"])

        let cls = try Self.load(.classification)
        XCTAssertEqual(cls.classes, ["red", "blue", "gray"])
        XCTAssertEqual(cls.test.map(\.label), [0, 2, 1])
        XCTAssertEqual(cls.train[1].target, "blue")

        let noAnnotations = EvalSplitSource(file: Self.tiny + "/vqa_test_questions.json")
        XCTAssertThrowsError(try EvalDataset.load(task: .vqa, train: noAnnotations, test: noAnnotations))
    }

    func testKarpathySplitsAndImagePatterns() throws {
        let dir = TempDir()
        dir.write("dataset_coco.json", """
        {"images": [
          {"filepath": "train2014", "filename": "a.jpg", "split": "train", "cocoid": 1, "sentences": [{"raw": "One."}, {"raw": "Two."}]},
          {"filepath": "val2014", "filename": "b.jpg", "split": "restval", "cocoid": 2, "sentences": [{"raw": "Skip."}]},
          {"filepath": "val2014", "filename": "c.jpg", "split": "test", "cocoid": 3, "sentences": [{"raw": "Three."}, {"raw": "Four."}]}]}
        """)
        let src = EvalSplitSource(file: dir.path + "/dataset_coco.json", imageDirectory: "/coco")
        let data = try EvalDataset.load(task: .captioning, train: src, test: src)
        XCTAssertEqual(data.train.map(\.id), ["1"])
        XCTAssertEqual(data.train[0].image, "/coco/train2014/a.jpg")
        XCTAssertEqual(data.test.map(\.references), [["Three.", "Four."]])

        XCTAssertEqual(try formatImagePattern("COCO_val2014_%012d.jpg", id: "42"), "COCO_val2014_000000000042.jpg")
        XCTAssertEqual(try formatImagePattern("%d.png", id: "7"), "7.png")
        XCTAssertEqual(try formatImagePattern("100%%_%s.jpg", id: "x"), "100%_x.jpg")
        XCTAssertThrowsError(try formatImagePattern("plain.jpg", id: "1"))
        XCTAssertThrowsError(try formatImagePattern("%d", id: "abc"))

        dir.write("q.json", #"{"questions": [{"question_id": 5, "image_id": 42, "question": "Why?"}]}"#)
        dir.write("a.json", #"{"annotations": [{"question_id": 5, "image_id": 42, "answers": [{"answer": "because"}]}]}"#)
        let q = EvalSplitSource(file: dir.path + "/q.json", annotations: dir.path + "/a.json", imageDirectory: "/val2014",
                                imagePattern: "COCO_val2014_%012d.jpg")
        XCTAssertEqual(try EvalDataset.load(task: .vqa, train: q, test: q).test[0].image, "/val2014/COCO_val2014_000000000042.jpg")
        var noPattern = q
        noPattern.imagePattern = nil
        XCTAssertThrowsError(try EvalDataset.load(task: .vqa, train: noPattern, test: noPattern))
    }

    // MARK: prompts and the runner

    static let flamingo: Flamingo = try! Flamingo(try Model(directory: fixturesDir + "/mpt_tiny"))

    func runner(_ task: EvalTask, demos: DemoMode = .random, beams: Int = 3) throws -> EvalRunner {
        var s = EvalSettings()
        s.demos = demos
        s.beams = beams
        s.maxNewTokens = 4
        return try EvalRunner(flamingo: Self.flamingo, dataset: try Self.load(task), settings: s)
    }

    func testPromptsAreOpenFlamingos() throws {
        let cap = try runner(.captioning, demos: .fixed)
        let two = try cap.prompt(query: 0, shots: 2)
        XCTAssertEqual(two.text, "<image>Output:A red square.<|endofchunk|>\n<image>Output:Two cats on a sofa.<|endofchunk|>\n<image>Output:")
        XCTAssertEqual(two.images.map { String($0.split(separator: "/").last!) }, ["exif1_40x24.jpg", "exif2_40x24.jpg", "exif3_40x24.jpg"])
        // Zero-shot: two demos' text, no <image> in the context, only the query image.
        let zero = try cap.prompt(query: 0, shots: 0)
        XCTAssertEqual(zero.text, "Output:A red square.<|endofchunk|>\nOutput:Two cats on a sofa.<|endofchunk|>\n<image>Output:")
        XCTAssertEqual(zero.images.count, 1)

        let vqa = try runner(.vqa, demos: .fixed)
        XCTAssertEqual(try vqa.prompt(query: 0, shots: 1).text,
                       "<image>Question:What color? Short answer:gray<|endofchunk|>\n<image>Question:What color? Short answer:")

        let cls = try runner(.classification, demos: .fixed)
        XCTAssertEqual(try cls.prompt(query: 2, shots: 2).text, "<image>Output:blue<|endofchunk|><image>Output:red<|endofchunk|><image>Output:")

        // Random demos follow the sampler with the example's test index.
        let rnd = try runner(.captioning)
        let want = try DemoSampler.randomIndices(poolSize: 5, count: 3, seed: 42, query: 1).map { rnd.dataset.train[$0].image }
        XCTAssertEqual(try rnd.prompt(query: 1, shots: 3).images, want + [rnd.dataset.test[1].image])
    }

    func testRunnerIsDeterministicAndCachedTokensMatchFiles() throws {
        for task in EvalTask.allCases {
            let a = try runner(task), b = try runner(task)
            for shots in [0, 2] {
                let ra = try a.run(shots: shots), rb = try b.run(shots: shots)
                XCTAssertEqual(ra.n, 3)
                XCTAssertEqual(ra.predictions.map(\.id), a.dataset.test.map(\.id))
                XCTAssertEqual(ra.predictions, rb.predictions, "\(task) \(shots)")
                XCTAssertEqual(ra.score, rb.score)
                XCTAssert(ra.score >= 0 && ra.score <= (task == .captioning ? 1000 : 100))
            }
        }
        // The runner's reused visual tokens give what the image files give.
        let r = try runner(.captioning, beams: 1)
        let got = try r.run(shots: 2).predictions[1].text
        let (text, images) = try r.prompt(query: 1, shots: 2)
        let seq = try Self.flamingo.makeSequence()
        try seq.setPrompt(text, media: images.map { .file($0) })
        let out = try Generator.generate(seq, config: r.generationConfig())
        XCTAssertEqual(got, FewShot.postprocessCaption(try Self.flamingo.tokenizer!.decode(out.tokens, skipSpecialTokens: true)))
    }

    func testReportJSONAndTable() throws {
        var settings = EvalSettings()
        settings.limit = 2
        let results = [EvalResult(shots: 0, score: 12.346, n: 2, predictions: [EvalPrediction(id: "7", text: "a \"cat\"")])]
        let text = EvalReport.json(task: .vqa, metric: "VQA accuracy", settings: settings, extra: [("model", .string("m"))],
                                   results: results, predictions: true)
        let json = try JSON.parse(text)
        XCTAssertEqual(json["task"]?.string, "vqa")
        XCTAssertEqual(json["metric"]?.string, "VQA accuracy")
        XCTAssertEqual(json["settings"]?["max_new_tokens"]?.int, 5)
        XCTAssertEqual(json["settings"]?["limit"]?.int, 2)
        XCTAssertEqual(json["settings"]?["model"]?.string, "m")
        XCTAssertEqual(json["results"]?.array?.first?["predictions"]?["7"]?.string, "a \"cat\"")
        XCTAssertNil(try JSON.parse(EvalReport.json(task: .vqa, metric: "x", settings: settings, results: results, predictions: false))["results"]?
            .array?.first?["predictions"])
        XCTAssertEqual(EvalReport.table(task: .vqa, metric: "VQA accuracy", results: results),
                       "task  shots  VQA accuracy  n\nvqa       0         12.35  2")
    }
}
