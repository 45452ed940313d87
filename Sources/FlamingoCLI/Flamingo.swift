// `flamingo`: the command-line front door. Every subcommand loads a model
// directory (--model or $FLAMINGO_MODEL), reports errors as one line on
// stderr with a non-zero exit, and prints JSON with --json.
import ArgumentParser
import FlamingoCore
import Glibc

@main
struct FlamingoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flamingo",
        abstract: "Run Flamingo-family visual language models (OpenFlamingo checkpoints).",
        version: Version.string,
        subcommands: [Info.self, Devices.self, Caption.self, VQA.self, Generate.self, Score.self, Bench.self, Eval.self, Quantize.self, Synth.self, Serve.self])
}

/// Options every model command takes.
struct ModelOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Model directory (default: $FLAMINGO_MODEL).")
    var model: String?

    @Option(help: "Compute backend: cpu or opencl.")
    var backend: String = "cpu"

    @Option(help: "OpenCL device: an index from `flamingo devices` or a name substring (default: the first GPU; $FLAMINGO_DEVICE overrides).")
    var device: String?

    @Option(help: "CPU threads (default: one per core).")
    var threads: Int?

    @Flag(help: "Print machine-readable JSON.")
    var json = false

    func load() throws -> Flamingo {
        let compute: ComputeBackend
        switch backend {
        case "cpu":
            guard device == nil || device == "0" || device == "-1" else {
                throw FlamingoError.invalidArgument("--device \(device ?? "") is not the CPU device; add --backend opencl")
            }
            compute = .cpu
        case "opencl": compute = try .openCL(device: device == "-1" ? nil : device)
        default: throw FlamingoError.invalidArgument("unknown backend \(backend) (cpu or opencl)")
        }
        if let threads {
            guard threads > 0 else { throw FlamingoError.invalidArgument("--threads must be positive") }
            Threads.set(threads)
        }
        guard let dir = model ?? getenv("FLAMINGO_MODEL").map({ String(cString: $0) }) else {
            throw FlamingoError.invalidArgument("no model: pass --model DIR or set FLAMINGO_MODEL")
        }
        return try Flamingo(try Model(directory: dir), backend: compute)
    }
}

/// Decoding flags. `caption`, `vqa` and `eval` default to OpenFlamingo's evaluation
/// settings (3 beams, length penalty 0); `generate` to what a generate call does
/// elsewhere (greedy; length penalty 1 when beams are asked for), because with the
/// evaluation settings an instruct-tuned model's end-of-sequence wins at the first step.
struct DecodingOptions: ParsableArguments {
    @Option(help: "Maximum new tokens.") var maxNewTokens: Int?
    @Option(help: "Beam count (default: 3 for caption and vqa, as OpenFlamingo evaluates; 1 (greedy) for generate).")
    var beams: Int?
    @Option(help: "Length penalty for beam search (default: 0 for caption and vqa, 1 for generate).")
    var lengthPenalty: Float?
    @Flag(help: "Sample instead of beam search / greedy.") var sample = false
    @Option(help: "Sampling temperature.") var temperature: Float = 1
    @Option(help: "Top-k filtering (0: off).") var topK: Int = 0
    @Option(help: "Nucleus sampling mass (1: off).") var topP: Float = 1
    @Option(help: "Sampling seed.") var seed: UInt64 = 0
    @Option(help: "Ban repeating n-grams of this size (0: off).") var noRepeatNgram: Int = 0
    @Option(help: "Repetition penalty (1: off).") var repetitionPenalty: Float = 1

    /// `evaluation`: OpenFlamingo's defaults (caption, vqa) rather than a generate call's.
    func config(_ f: Flamingo, defaultMax: Int, evaluation: Bool) throws -> GenerationConfig {
        if let beams, beams < 1 { throw FlamingoError.invalidArgument("--beams must be >= 1") }
        var c = GenerationConfig()
        c.maxNewTokens = maxNewTokens ?? defaultMax
        c.numBeams = sample ? 1 : beams ?? (evaluation ? 3 : 1)
        c.lengthPenalty = lengthPenalty ?? (evaluation ? 0 : 1)
        c.doSample = sample
        c.temperature = temperature
        c.topK = topK
        c.topP = topP
        c.seed = seed
        c.noRepeatNgramSize = noRepeatNgram
        c.repetitionPenalty = repetitionPenalty
        c.stopTokens = [f.config.tokens.endOfChunk] + (f.config.tokens.eos.map { [$0] } ?? [])
        return c
    }
}

/// Runs a prompt and returns the generated text (special tokens skipped),
/// with a progress bar on stderr when it is a terminal.
func complete(_ f: Flamingo, prompt: String, media: [MediaInput], config: GenerationConfig) throws -> (text: String, tokens: [Int]) {
    let progress = Progress(total: config.maxNewTokens, label: "generating")
    let seq = try f.makeSequence()
    try seq.setPrompt(prompt, media: media)
    let result = try Generator.generate(seq, config: config) { _ in progress.step(); return true }
    progress.finish()
    guard let tokenizer = f.tokenizer else { throw FlamingoError.unsupported("the model has no tokenizer") }
    return (try tokenizer.decode(result.tokens, skipSpecialTokens: true), result.tokens)
}

/// `a=b` pairs of --shot options.
func split(_ s: String, parts: Int, _ flag: String) throws -> [String] {
    let p = s.split(separator: "=", maxSplits: parts - 1, omittingEmptySubsequences: false).map(String.init)
    guard p.count == parts else {
        throw FlamingoError.invalidArgument("--\(flag) \"\(s)\" needs \(parts) parts separated by '='")
    }
    return p
}

/// Main-path wrapper: errors become one line and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as FlamingoError {
        fputs("flamingo: error: \(e.message)\n", stderr)
        throw ExitCode(1)
    }
}

/// A minimal JSON writer for --json output.
enum JSONOut {
    static func string(_ s: String) -> String { OrderedJSON.quote(s) }

    static func object(_ pairs: [(String, String)]) -> String {
        "{" + pairs.map { "\(string($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
final class Progress {
    let total: Int, label: String
    var done = 0
    let enabled = isatty(2) != 0
    init(total: Int, label: String) { self.total = max(total, 1); self.label = label }

    func step() {
        done += 1
        guard enabled else { return }
        let width = 30, filled = min(width, done * width / total)
        fputs("\r\(label) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
              + "] \(done)/\(total)", stderr)
    }

    func finish() { if enabled { fputs("\r\u{1B}[K", stderr) } }
}
