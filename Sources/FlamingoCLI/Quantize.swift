import ArgumentParser
import FlamingoCore
import Glibc

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a model directory to another storage type (16-bit floats or 8/4-bit affine integers).",
        discussion: """
        Streams tensor by tensor (memory ≈ the largest tensor in f32). Linear and embedding matrices take --type; \
        norms, biases and convolutions stay in their stored float type (or become 16-bit with --type f16/bf16). \
        Without --keep, q4 keeps what docs/quantization.md measured to matter at 8 bits.
        """)

    @Argument(help: "Input model directory (any stored type).") var input: String
    @Argument(help: "Output directory (created; must be empty unless --overwrite).") var output: String
    @Option(help: "Storage type: q4, q8, bf16, f16 or f32.") var type: String
    @Option(help: "Inputs per quantization group: 32, 64 or 128.") var groupSize: Int = 64
    @Option(help: "PATTERN=TYPE: store matrices whose module path matches the glob PATTERN as TYPE (repeatable; the last match wins).")
    var keep: [String] = []
    @Flag(help: "Plain min/max rounding instead of the per-group clipping search.") var noSearch = false
    @Flag(help: "Replace the model files of a non-empty output directory.") var overwrite = false

    func run() throws {
        try reportingErrors {
            guard let t = StorageType(rawValue: type) else {
                throw FlamingoError.invalidArgument("--type \(type): expected one of q4, q8, bf16, f16, f32")
            }
            var q = ModelQuantizer(type: t)
            q.groupSize = groupSize
            q.search = !noSearch
            q.overwrite = overwrite
            q.keep = keep.isEmpty ? nil : try ModelQuantizer.parseKeep(keep)
            let progress = Progress(total: 1000, label: "quantizing")
            try q.convert(input: input, output: output) { done, total in
                while progress.done < done * 1000 / max(total, 1) { progress.step() }
            }
            progress.finish()
            let m = try Model(directory: output)
            let bytes = m.storageBytes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            print("wrote \(output): \(m.weightBytes) bytes of weights (\(bytes))")
        }
    }
}

struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a model directory with random weights for a config.json (for benchmarks at real geometries).")
    @Argument(help: "A config.json.") var config: String
    @Argument(help: "Output directory (created).") var output: String
    @Option(help: "Storage type: q4, q8, bf16, f16 or f32.") var type: String = "f32"
    @Option(help: "Inputs per quantization group.") var groupSize: Int = 64
    @Flag(help: "Every matrix in --type (without the default q4 policy).") var plain = false

    func run() throws {
        try reportingErrors {
            guard let t = StorageType(rawValue: type) else { throw FlamingoError.invalidArgument("--type \(type): expected q4, q8, bf16, f16 or f32") }
            let bytes = try readWholeFile(config)
            let json = try bytes.withUnsafeBytes { try JSON.parse($0) }
            if mkdir(output, 0o755) != 0 && errno != EEXIST { throw FlamingoError.io("cannot create \(output)") }
            try SyntheticModel.write(config: json, output: output, type: t, group: groupSize, plain: plain)
            print("wrote \(output)")
        }
    }
}
