import ArgumentParser
import FlamingoCore
import Glibc

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a model directory.")
    @OptionGroup var options: ModelOptions

    func run() throws {
        try reportingErrors {
            let f = try options.load(), c = f.config, lm = c.languageModel
            let fields: [(String, String)] = [
                ("architecture", JSONOut.string(c.architecture)), ("vision", JSONOut.string(c.vision.kind)),
                ("image_size", "\(c.vision.imageSize)"), ("vision_width", "\(c.vision.width)"),
                ("vision_layers", "\(c.vision.layers)"), ("num_latents", "\(c.resampler.numLatents)"),
                ("lm_family", JSONOut.string(lm.family.rawValue)), ("hidden_size", "\(lm.hiddenSize)"),
                ("layers", "\(lm.layers)"), ("heads", "\(lm.heads)"), ("vocab_size", "\(lm.vocabSize)"),
                ("cross_attn_every_n_layers", "\(c.crossAttention.everyNLayers)"),
                ("cross_attn_layers", "\(c.crossAttentionLayers.count)"),
                ("image_token", "\(c.tokens.image)"), ("endofchunk_token", "\(c.tokens.endOfChunk)"),
                ("parameters", "\(f.model.parameterCount)"), ("weight_bytes", "\(f.model.weightBytes)"),
                ("storage", JSONOut.object(f.model.storageBytes.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") })),
                ("tokenizer", f.tokenizer == nil ? "false" : "true"),
            ]
            if options.json { print(JSONOut.object(fields)) } else {
                for (k, v) in fields { print("\(k): \(v.hasPrefix("\"") ? String(v.dropFirst().dropLast()) : v)") }
            }
        }
    }
}

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the compute devices.")
    @Flag(help: "Print machine-readable JSON.") var json = false

    func run() throws {
        let list = FlamingoCore.Devices.all()
        if json {
            print("[" + list.enumerated().map { i, d in
                JSONOut.object([("index", "\(i)"), ("backend", JSONOut.string(d.backend == .cpu ? "cpu" : "opencl")),
                                ("name", JSONOut.string(d.name)), ("platform", JSONOut.string(d.platformName)),
                                ("compute_units", "\(d.computeUnits)"), ("memory_bytes", "\(d.memoryBytes)")])
            }.joined(separator: ", ") + "]")
        } else {
            for (i, d) in list.enumerated() {
                let where_ = d.backend == .cpu ? "cpu" : "opencl \(d.platformName)"
                print("\(i): \(d.name) [\(where_)], \(d.computeUnits) compute units, \(d.memoryBytes >> 20) MiB")
            }
        }
    }
}

struct Caption: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Caption images, optionally few-shot.")
    @OptionGroup var options: ModelOptions
    @OptionGroup var decoding: DecodingOptions
    @Option(help: "A demonstration IMAGE=CAPTION (repeatable).") var shot: [String] = []
    @Argument(help: "Images to caption.") var images: [String]

    func run() throws {
        try reportingErrors {
            let f = try options.load()
            let shots = try shot.map { try split($0, parts: 2, "shot") }
            let prompt = FewShot.captionPrompt(shots: shots.map { $0[1] })
            var out: [(String, String)] = []
            for image in images {
                let (text, _) = try complete(f, prompt: prompt, media: shots.map { .file($0[0]) } + [.file(image)],
                                             config: try decoding.config(f, defaultMax: 20, evaluation: true))
                let caption = FewShot.postprocessCaption(text)
                out.append((image, caption))
                if !options.json { print(images.count > 1 ? "\(image): \(caption)" : caption) }
            }
            if options.json {
                print("[" + out.map { JSONOut.object([("image", JSONOut.string($0.0)), ("caption", JSONOut.string($0.1))]) }
                    .joined(separator: ", ") + "]")
            }
        }
    }
}

struct VQA: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vqa", abstract: "Answer a question about an image.")
    @OptionGroup var options: ModelOptions
    @OptionGroup var decoding: DecodingOptions
    @Option(help: "The question.") var question: String
    @Option(help: "A demonstration IMAGE=QUESTION=ANSWER (repeatable).") var shot: [String] = []
    @Argument(help: "The image.") var image: String

    func run() throws {
        try reportingErrors {
            let f = try options.load()
            let shots = try shot.map { try split($0, parts: 3, "shot") }
            let prompt = FewShot.vqaPrompt(shots: shots.map { ($0[1], $0[2]) }, question: question)
            let (text, _) = try complete(f, prompt: prompt, media: shots.map { .file($0[0]) } + [.file(image)],
                                         config: try decoding.config(f, defaultMax: 5, evaluation: true))
            let answer = FewShot.postprocessVQA(text)
            print(options.json ? JSONOut.object([("question", JSONOut.string(question)), ("answer", JSONOut.string(answer))]) : answer)
        }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Continue a prompt with <image> markers.")
    @OptionGroup var options: ModelOptions
    @OptionGroup var decoding: DecodingOptions
    @Option(help: "The prompt, e.g. \"<image>An image of\".") var prompt: String
    @Option(help: "An image for the next <image> marker (repeatable, in order).") var image: [String] = []

    func run() throws {
        try reportingErrors {
            let f = try options.load()
            let (text, tokens) = try complete(f, prompt: prompt, media: image.map { .file($0) },
                                              config: try decoding.config(f, defaultMax: 20, evaluation: false))
            print(options.json ? JSONOut.object([("text", JSONOut.string(text)),
                                                 ("tokens", "[" + tokens.map(String.init).joined(separator: ", ") + "]")]) : text)
        }
    }
}

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rank candidate completions by log-likelihood (open_flamingo's classification evaluation).")
    @OptionGroup var options: ModelOptions
    @Option(help: "The context, e.g. \"<image>Output:\".") var prompt: String
    @Option(help: "An image for the next <image> marker (repeatable).") var image: [String] = []
    @Option(help: "A candidate completion (repeatable).") var candidate: [String]

    func run() throws {
        try reportingErrors {
            let f = try options.load()
            guard let tokenizer = f.tokenizer else { throw FlamingoError.unsupported("the model has no tokenizer") }
            let seq = try f.makeSequence()
            try seq.setPrompt(prompt, media: image.map { .file($0) })
            let ids = try candidate.map { try tokenizer.encode($0, addSpecialTokens: false) }
            let scores = try seq.logLikelihoods(of: ids)
            let ranked = zip(zip(candidate, ids.map(\.count)), scores).sorted { $0.1 > $1.1 }
            if options.json {
                print("[" + ranked.map { JSONOut.object([("candidate", JSONOut.string($0.0.0)), ("tokens", "\($0.0.1)"),
                                                         ("log_likelihood", "\($0.1)")]) }
                    .joined(separator: ", ") + "]")
            } else {
                for (c, s) in ranked { print(format6(s) + "  " + c.0) }
            }
        }
    }

    func format6(_ x: Float) -> String {
        let v = (Double(x) * 1e4).rounded() / 1e4
        return "\(v)"
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time image encoding, prefill and decoding (tools/bench compares with PyTorch).")
    @OptionGroup var options: ModelOptions
    @Option(help: "Images in the prompt.") var images: Int = 3
    @Option(help: "Text tokens in the prompt.") var promptTokens: Int = 64
    @Option(help: "Tokens to decode.") var decode: Int = 16
    @Flag(help: "Also measure the streaming read bandwidth (the decode floor's denominator).") var bandwidth = false

    func run() throws {
        try reportingErrors {
            let f = try options.load(), c = f.config
            guard images >= 0, promptTokens > images, decode > 0 else {
                throw FlamingoError.invalidArgument("need --prompt-tokens > --images >= 0 and --decode > 0")
            }
            let s = c.vision.imageSize
            let pixels = Buffer((0..<(max(images, 1) * 3 * s * s)).map { Float(($0 * 7919) % 255) / 128 - 1 })
            var tokens = (0..<promptTokens).map { 1 + ($0 * 37) % max(c.languageModel.vocabSize - 8, 1) }
            for k in 0..<images { tokens[k * promptTokens / max(images, 1)] = c.tokens.image }
            let clock = { () -> Double in var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9 }
            var t0 = clock()
            let visual = try f.encodeImages(pixels.p, count: images)
            let encode = clock() - t0
            let seq = try f.makeSequence()
            t0 = clock()
            try seq.setMedia(visual.p, count: images)
            var logits = try seq.evaluate(tokens)
            let prefill = clock() - t0
            var steps: [Double] = []
            for _ in 0..<decode {
                var best = 0
                for i in 0..<c.languageModel.vocabSize where logits[i] > logits[best] { best = i }
                t0 = clock()
                logits = try seq.evaluate([best])
                steps.append(clock() - t0)
            }
            let median = steps.sorted()[steps.count / 2]
            let fields = [("encode_ms", "\(encode * 1e3)"), ("prefill_ms", "\(prefill * 1e3)"), ("decode_ms_per_token", "\(median * 1e3)"),
                          ("images", "\(images)"), ("prompt_tokens", "\(promptTokens)"), ("threads", "\(Threads.count)")]
                + (bandwidth ? [("read_gbps", "\(measureReadBandwidth() / 1e9)")] : [])
            if options.json { print(JSONOut.object(fields)) } else { for (k, v) in fields { print("\(k): \(v)") } }
        }
    }
}
