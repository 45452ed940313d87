import XCTest
@testable import FlamingoCore

/// Quantized model directories that are wrong in one precise way: each is a
/// clear error naming the tensor, before any kernel reads a byte.
final class QuantizedFormatTests: XCTestCase {
    /// mpt_tiny at q4 (groups of 32, every matrix: no default policy) as
    /// editable tensors plus its config text.
    func quantizedTiny() throws -> (SafetensorsWriter, String) {
        let src = TempDir()
        var q = ModelQuantizer(type: .q4)
        q.groupSize = 32
        q.keep = []
        q.overwrite = true
        try q.convert(input: fixturesDir + "/mpt_tiny", output: src.path)
        let file = try SafetensorsFile(path: src.path + "/model.safetensors")
        var w = SafetensorsWriter()
        for (name, t) in file.tensors.sorted(by: { $0.key < $1.key }) {
            w.entries.append(.init(name: name, dtype: t.dtype.rawValue, shape: t.shape, data: Array(t.data)))
        }
        let config = String(decoding: try readWholeFile(src.path + "/config.json"), as: UTF8.self)
        return (w, config)
    }

    func expectLoadError(_ kind: (String) -> FlamingoError, _ text: String, config: ((String) -> String)? = nil,
                         line: UInt = #line, edit: (inout SafetensorsWriter) -> Void) throws {
        var (w, cfg) = try quantizedTiny()
        edit(&w)
        let dir = TempDir()
        dir.write("config.json", config.map { $0(cfg) } ?? cfg)
        dir.write("model.safetensors", w.bytes())
        assertThrows(kind, containing: text, line: line) { _ = try Model(directory: dir.path) }
    }

    let module = "lang_encoder.transformer.blocks.0.ffn.up_proj"   // [256, 64]: 8 words, 2 groups per row at q4/32

    func testTheUneditedDirectoryLoads() throws {
        let (w, cfg) = try quantizedTiny()
        let dir = TempDir()
        dir.write("config.json", cfg)
        dir.write("model.safetensors", w.bytes())
        let m = try Model(directory: dir.path)
        XCTAssertNotNil(m.storageBytes["q4"])
        XCTAssertEqual(m.config.quantization?.defaults, QuantizationConfig.Params(bits: 4, group: 32))
    }

    func testTruncatedPackedTensor() throws {
        try expectLoadError(FlamingoError.invalidFormat, "tensor \(module).weight: 4-bit packed weight must be U32 [256, 8], found U32 [256, 7]") { w in
            let i = w.entries.firstIndex { $0.name == self.module + ".weight" }!
            w.entries[i].shape = [256, 7]
            w.entries[i].data.removeLast(256 * 4)
        }
    }

    func testScalesOfTheWrongShape() throws {
        try expectLoadError(FlamingoError.invalidFormat, "\(module).scales must be a float tensor [256, 2], found F16 [256, 1]") { w in
            for suffix in [".scales", ".biases"] {
                let i = w.entries.firstIndex { $0.name == self.module + suffix }!
                w.entries[i].shape = [256, 1]
                w.entries[i].data.removeLast(256 * 2)
            }
        }
    }

    func testBiasesMissingOrOfAnotherType() throws {
        try expectLoadError(FlamingoError.invalidFormat, "\(module).scales is present but \(module).biases is missing") { w in
            w.entries.removeAll { $0.name == self.module + ".biases" }
        }
        try expectLoadError(FlamingoError.invalidFormat, "\(module).biases is present but \(module).scales is missing") { w in
            w.entries.removeAll { $0.name == self.module + ".scales" }
        }
        try expectLoadError(FlamingoError.invalidFormat, "\(module).biases (BF16 [256, 2]) must match \(module).scales (F16 [256, 2])") { w in
            let i = w.entries.firstIndex { $0.name == self.module + ".biases" }!
            w.entries[i].dtype = "BF16"
        }
    }

    func testGroupSizeThatDoesNotDivideTheRow() throws {
        // 128-wide groups for a module whose rows hold 64 inputs.
        try expectLoadError(FlamingoError.invalidFormat, "tensor \(module).weight: group size 128 does not divide the row length 64",
                            config: { $0.replacingOccurrences(of: #""mode": "affine""#, with: #""mode": "affine", "\#(self.module)": {"bits": 4, "group_size": 128}"#) }) { _ in }
    }

    func testUnsupportedBitsAndGroups() throws {
        try expectLoadError(FlamingoError.unsupported, "quantization.bits is 3; supported: 4, 8",
                            config: { $0.replacingOccurrences(of: #""bits": 4"#, with: #""bits": 3"#) }) { _ in }
        try expectLoadError(FlamingoError.unsupported, "quantization.group_size is 48",
                            config: { $0.replacingOccurrences(of: #""group_size": 32"#, with: #""group_size": 48"#) }) { _ in }
        try expectLoadError(FlamingoError.unsupported, #"quantization.mode = "mxfp4" is not one of affine"#,
                            config: { $0.replacingOccurrences(of: #""mode": "affine""#, with: #""mode": "mxfp4""#) }) { _ in }
    }

    func testBitsThatDisagreeWithThePackedShape() throws {
        // The file holds 4-bit words; the config says this module is 8-bit.
        try expectLoadError(FlamingoError.invalidFormat, "tensor \(module).weight: 8-bit packed weight must be U32 [256, 16], found U32 [256, 8]",
                            config: { $0.replacingOccurrences(of: #""mode": "affine""#, with: #""mode": "affine", "\#(self.module)": {"bits": 8, "group_size": 32}"#) }) { _ in }
    }

    func testQuantizationBlockForATensorThatIsNotAMatrix() throws {
        let norm = "lang_encoder.transformer.blocks.0.norm_1"
        try expectLoadError(FlamingoError.invalidFormat, "tensor \(norm).weight (shape [64]) has a quantization block") { w in
            w.add(norm + ".scales", shape: [64, 1], dtype: .f16)
            w.add(norm + ".biases", shape: [64, 1], dtype: .f16)
        }
    }

    func testScalesWithoutAQuantizationSection() throws {
        try expectLoadError(FlamingoError.invalidFormat, "has no quantization section",
                            config: { cfg in
                                guard let r = cfg.range(of: #", "quantization": \{[^}]*\}"#, options: .regularExpression) else { return cfg }
                                return cfg.replacingCharacters(in: r, with: "")
                            }) { _ in }
    }

    func testAModuleMarkedFloatButStoredQuantized() throws {
        try expectLoadError(FlamingoError.invalidFormat, "config.json's quantization.\(module) says it is not quantized",
                            config: { $0.replacingOccurrences(of: #""mode": "affine""#, with: #""mode": "affine", "\#(self.module)": false"#) }) { _ in }
    }

    func testQuantizeRefusesANonEmptyDirectory() throws {
        let out = TempDir()
        out.write("keep.txt", "precious")
        var q = ModelQuantizer(type: .q8)
        assertThrows(FlamingoError.io, containing: "is not empty; pass --overwrite") {
            try q.convert(input: fixturesDir + "/mpt_tiny", output: out.path)
        }
        q.overwrite = true
        try q.convert(input: fixturesDir + "/mpt_tiny", output: out.path)
        XCTAssertEqual(String(decoding: try readWholeFile(out.path + "/keep.txt"), as: UTF8.self), "precious")
        assertThrows(FlamingoError.invalidArgument, containing: "is the input directory") {
            try q.convert(input: out.path, output: out.path + "/.")
        }
        XCTAssertNotNil(try Model(directory: out.path).storageBytes["q8"], "a refused conversion touched its input")
        XCTAssertNotNil(try Model(directory: out.path).storageBytes["q8"])
    }

    func testTheDefaultQ4PolicyKeepsTheHeadAt8Bits() throws {
        let out = TempDir()
        var q = ModelQuantizer(type: .q4)
        q.groupSize = 32
        q.overwrite = true
        try q.convert(input: fixturesDir + "/llama_tiny", output: out.path)
        let m = try Model(directory: out.path)
        for module in ["lang_encoder.lm_head", "lang_encoder.model.embed_tokens"] {
            XCTAssertEqual(m.config.quantization?.params(module: module), .init(bits: 8, group: 32), module)
        }
        XCTAssertEqual(try m.weight("lang_encoder.model.layers.0.mlp.up_proj.weight").format, .affine(bits: 4, group: 32))
    }

    func testKeepRulesAndMixedPrecision() throws {
        let out = TempDir()
        var q = ModelQuantizer(type: .q4)
        q.groupSize = 32
        q.overwrite = true
        q.keep = [("lang_encoder.transformer.wte", .q8), ("vision_encoder.*", .bf16)]
        try q.convert(input: fixturesDir + "/mpt_tiny", output: out.path)
        let m = try Model(directory: out.path)
        XCTAssertEqual(m.config.quantization?.params(module: "lang_encoder.transformer.wte"), .init(bits: 8, group: 32))
        XCTAssertNil(m.config.quantization?.params(module: "vision_encoder.transformer.resblocks.0.mlp.c_fc"))
        XCTAssertEqual(try m.tensor("vision_encoder.transformer.resblocks.0.mlp.c_fc.weight").dtype, .bf16)
        XCTAssertEqual(try m.tensor("lang_encoder.transformer.wte.weight").shape, [403, 64 * 8 / 32])
        XCTAssertEqual(try m.weight("lang_encoder.transformer.wte.weight").format, .affine(bits: 8, group: 32))
    }
}
