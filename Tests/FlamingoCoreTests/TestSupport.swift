import Glibc
import XCTest
@testable import FlamingoCore

/// Writes safetensors files byte by byte, so tests can build valid models
/// and then break them in precise ways.
struct SafetensorsWriter {
    struct Entry { var name: String; var dtype: String; var shape: [Int]; var data: [UInt8] }
    var entries: [Entry] = []

    mutating func add(_ name: String, shape: [Int], dtype: DType = .f32, seed: Int = 0) {
        let n = shape.reduce(1, *)
        var data: [UInt8] = []
        data.reserveCapacity(n * dtype.byteSize)
        for i in 0..<n {
            let x = Float((i &* 7 &+ seed &* 13) % 17) / 17 - 0.5
            switch dtype {
            case .f32: withUnsafeBytes(of: x.bitPattern.littleEndian) { data += $0 }
            case .f16: withUnsafeBytes(of: Float16(x).bitPattern.littleEndian) { data += $0 }
            case .bf16: withUnsafeBytes(of: UInt16(x.bitPattern >> 16).littleEndian) { data += $0 }
            case .i32: withUnsafeBytes(of: Int32(i).littleEndian) { data += $0 }
            case .u32: withUnsafeBytes(of: UInt32(i).littleEndian) { data += $0 }
            case .i64: withUnsafeBytes(of: Int64(i).littleEndian) { data += $0 }
            }
        }
        entries.append(Entry(name: name, dtype: dtype.rawValue, shape: shape, data: data))
    }

    /// The header JSON and data, with optional overrides of offsets.
    func bytes(headerOverride: String? = nil) -> [UInt8] {
        var offset = 0
        var items: [String] = []
        var blob: [UInt8] = []
        for e in entries {
            let shape = e.shape.map(String.init).joined(separator: ",")
            items.append("\"\(e.name)\":{\"dtype\":\"\(e.dtype)\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + e.data.count)]}")
            offset += e.data.count
            blob += e.data
        }
        let header = Array((headerOverride ?? "{" + items.joined(separator: ",") + "}").utf8)
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out += $0 }
        return out + header + blob
    }
}

/// A temporary directory removed when the test case ends.
final class TempDir {
    let path: String
    init() {
        var template = Array("/tmp/flamingo-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }
    deinit { _ = system("rm -rf '\(path)'") }

    func write(_ name: String, _ bytes: [UInt8]) {
        let f = fopen(path + "/" + name, "wb")!
        _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        fclose(f)
    }
    func write(_ name: String, _ text: String) { write(name, Array(text.utf8)) }
    func remove(_ name: String) { unlink(path + "/" + name) }
}

/// A tiny but complete openflamingo config, as JSON text with hooks to
/// change any part of it.
func tinyConfig(family: String = "mpt", lmExtra: String = "", top: String = "", vision: String = "",
                tokens: String = #""image": 10, "endofchunk": 11, "pad": 12, "bos": null, "eos": 0"#) -> String {
    """
    {
      "format": "flamingo", "format_version": 1, "architecture": "openflamingo"\(top),
      "vision": {"kind": "clip_vit", "image_size": 16, "patch_size": 8, "width": 8, "layers": 1,
                 "heads": 2, "mlp_dim": 16\(vision)},
      "resampler": {"dim": 8, "depth": 1, "heads": 2, "dim_head": 4, "num_latents": 3},
      "cross_attention": {"every_n_layers": 2, "heads": 2, "dim_head": 4},
      "language_model": {"family": "\(family)", "hidden_size": 8, "layers": 2, "heads": 2,
                         "intermediate_size": 16, "vocab_size": 13, "max_seq_len": 32\(lmExtra)},
      "tokens": {\(tokens)},
      "preprocess": {"image_size": 16, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    }
    """
}

/// Writes a model directory whose weights match `config` exactly.
@discardableResult
func writeModel(_ dir: TempDir, config: String, dtype: DType = .f32,
                edit: (inout SafetensorsWriter) -> Void = { _ in }) throws -> ModelConfig {
    let parsed = try ModelConfig(json: try JSON.parse(config))
    var w = SafetensorsWriter()
    for (i, spec) in parsed.expectedWeights.enumerated() { w.add(spec.name, shape: spec.shape, dtype: dtype, seed: i) }
    edit(&w)
    dir.write("config.json", config)
    dir.write("model.safetensors", w.bytes())
    return parsed
}

/// The directory holding the committed reference fixtures.
let fixturesDir: String = {
    var path = #filePath
    while !path.hasSuffix("/Tests") { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path + "/Fixtures"
}()

func assertThrows(_ kind: (String) -> FlamingoError, containing text: String,
                  file: StaticString = #filePath, line: UInt = #line, _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("no error thrown; expected one containing \"\(text)\"", file: file, line: line)
    } catch let e as FlamingoError {
        XCTAssertEqual(e.status, kind("").status, "wrong kind: \(e)", file: file, line: line)
        XCTAssertTrue(e.message.contains(text), "message \"\(e.message)\" lacks \"\(text)\"", file: file, line: line)
    } catch {
        XCTFail("unexpected error \(error)", file: file, line: line)
    }
}
