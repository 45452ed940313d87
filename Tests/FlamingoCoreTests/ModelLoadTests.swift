import XCTest
@testable import FlamingoCore

/// Loading must survive every kind of bad model directory with a clear
/// error naming the problem (issue: Foundation, "Bad input").
final class ModelLoadTests: XCTestCase {
    func testLoadsEveryFamilyAndDtype() throws {
        for family in ["mpt", "mosaic_gpt", "gpt_neox", "llama"] {
            for dtype in [DType.f32, .f16, .bf16] {
                let dir = TempDir()
                let cfg = try writeModel(dir, config: tinyConfig(family: family), dtype: dtype)
                let m = try Model(directory: dir.path)
                XCTAssertEqual(m.config.languageModel.family.rawValue, family)
                XCTAssertEqual(m.weights.count, cfg.expectedWeights.count)
                XCTAssertEqual(m.config.crossAttentionLayers, [1])
                XCTAssertEqual(try m.tensor("perceiver.latents").dtype, dtype)
            }
        }
    }

    func testSixteenBitValuesDecode() throws {
        let dir = TempDir()
        try writeModel(dir, config: tinyConfig(), dtype: .bf16)
        let m = try Model(directory: dir.path)
        let cfg = try ModelConfig(json: try JSON.parse(tinyConfig()))
        let seed = cfg.expectedWeights.firstIndex { $0.name == "perceiver.latents" }!
        let t = try m.tensor("perceiver.latents")
        XCTAssertEqual(t.floats().count, 24)
        // The writer stores k/17 - 0.5; bf16 keeps 8 significant bits.
        for i in 0..<t.count {
            let exact = Float((i * 7 + seed * 13) % 17) / 17 - 0.5
            XCTAssertEqual(t.float(at: i), exact, accuracy: abs(exact) / 128 + 1e-7)
        }
    }

    func testWeightsMaySpanSeveralFiles() throws {
        let dir = TempDir()
        let cfg = try ModelConfig(json: try JSON.parse(tinyConfig()))
        var a = SafetensorsWriter(), b = SafetensorsWriter()
        for (i, s) in cfg.expectedWeights.enumerated() {
            if i % 2 == 0 { a.add(s.name, shape: s.shape) } else { b.add(s.name, shape: s.shape, dtype: .f16) }
        }
        dir.write("config.json", tinyConfig())
        dir.write("model-00001-of-00002.safetensors", a.bytes())
        dir.write("model-00002-of-00002.safetensors", b.bytes())
        XCTAssertEqual(try Model(directory: dir.path).weights.count, cfg.expectedWeights.count)

        // A name in two files is ambiguous.
        b.add(cfg.expectedWeights[0].name, shape: cfg.expectedWeights[0].shape)
        dir.write("model-00002-of-00002.safetensors", b.bytes())
        assertThrows(FlamingoError.invalidFormat, containing: "more than one weight file") { _ = try Model(directory: dir.path) }
    }

    func testMissingDirectoryAndFiles() throws {
        assertThrows(FlamingoError.io, containing: "/nonexistent/model") { _ = try Model(directory: "/nonexistent/model") }
        let dir = TempDir()
        assertThrows(FlamingoError.io, containing: "config.json") { _ = try Model(directory: dir.path) }
        dir.write("config.json", tinyConfig())
        assertThrows(FlamingoError.io, containing: "no .safetensors") { _ = try Model(directory: dir.path) }
        dir.write("config.json", tinyConfig(top: #", "weights": ["absent.safetensors"]"#))
        assertThrows(FlamingoError.io, containing: "absent.safetensors") { _ = try Model(directory: dir.path) }
    }

    func testInvalidJSON() throws {
        let dir = TempDir()
        try writeModel(dir, config: tinyConfig())
        dir.write("config.json", "{\"format\": \"flamingo\",")
        assertThrows(FlamingoError.invalidFormat, containing: "config.json: invalid JSON") { _ = try Model(directory: dir.path) }
        dir.write("config.json", "[1, 2]")
        assertThrows(FlamingoError.invalidFormat, containing: "must be an object") { _ = try Model(directory: dir.path) }
    }

    func testConfigErrors() throws {
        let cases: [(String, (String) -> FlamingoError, String)] = [
            (tinyConfig().replacingOccurrences(of: "openflamingo", with: "blip"), FlamingoError.unsupported, "architecture"),
            (tinyConfig(family: "gpt2"), FlamingoError.unsupported, "family"),
            (tinyConfig(top: #", "colour": 1"#), FlamingoError.invalidFormat, "unknown key(s) at top level: colour"),
            (tinyConfig(lmExtra: #", "rotary_pct": 0.5"#), FlamingoError.invalidFormat, "language_model: rotary_pct"),
            (tinyConfig(vision: #", "patch_size": 5"#), FlamingoError.invalidFormat, "duplicate key"),
            (tinyConfig().replacingOccurrences(of: #""patch_size": 8"#, with: #""patch_size": 5"#), FlamingoError.invalidFormat, "multiple of patch_size"),
            (tinyConfig().replacingOccurrences(of: #""layers": 2"#, with: #""layers": -2"#), FlamingoError.invalidFormat, "language_model.layers"),
            (tinyConfig().replacingOccurrences(of: #""layers": 2"#, with: #""layers": 2.5"#), FlamingoError.invalidFormat, "must be an integer"),
            (tinyConfig(tokens: #""image": 13, "endofchunk": 11"#), FlamingoError.invalidFormat, "tokens.image"),
            (tinyConfig(tokens: #""image": 10"#), FlamingoError.invalidFormat, "tokens.endofchunk is missing"),
            (tinyConfig().replacingOccurrences(of: #""format_version": 1"#, with: #""format_version": 7"#), FlamingoError.unsupported, "newer"),
            (tinyConfig(top: #", "weights": ["../x.safetensors"]"#), FlamingoError.invalidFormat, "plain file names"),
            (tinyConfig().replacingOccurrences(of: #""std": [0.25, 0.25, 0.25]"#, with: #""std": [0.25, 0]"#), FlamingoError.invalidFormat, "preprocess.std"),
        ]
        for (config, kind, text) in cases {
            let dir = TempDir()
            dir.write("config.json", config)
            dir.write("model.safetensors", SafetensorsWriter().bytes())
            assertThrows(kind, containing: text) { _ = try Model(directory: dir.path) }
        }
    }

    func testTensorMismatches() throws {
        let cfg = try ModelConfig(json: try JSON.parse(tinyConfig()))
        let victim = cfg.expectedWeights[5]

        var dir = TempDir()
        try writeModel(dir, config: tinyConfig()) { w in w.entries.removeAll { $0.name == victim.name } }
        assertThrows(FlamingoError.invalidFormat, containing: "missing from the weights: \(victim.name)") { _ = try Model(directory: dir.path) }

        dir = TempDir()
        try writeModel(dir, config: tinyConfig()) { w in w.add("lang_encoder.extra.weight", shape: [2]) }
        assertThrows(FlamingoError.invalidFormat, containing: "unexpected tensor(s) not implied by config.json: lang_encoder.extra.weight") {
            _ = try Model(directory: dir.path)
        }

        dir = TempDir()
        try writeModel(dir, config: tinyConfig()) { w in
            let i = w.entries.firstIndex { $0.name == "perceiver.latents" }!
            w.entries[i].shape = [4, 6]
        }
        assertThrows(FlamingoError.invalidFormat, containing: "perceiver.latents has shape [4, 6], config implies [3, 8]") {
            _ = try Model(directory: dir.path)
        }

        dir = TempDir()
        try writeModel(dir, config: tinyConfig()) { w in
            let i = w.entries.firstIndex { $0.name == "perceiver.latents" }!
            w.entries[i].dtype = "I64"
            w.entries[i].shape = [3, 4]
        }
        assertThrows(FlamingoError.unsupported, containing: "perceiver.latents has dtype I64") { _ = try Model(directory: dir.path) }
    }

    func testCorruptSafetensors() throws {
        let dir = TempDir()
        try writeModel(dir, config: tinyConfig())
        let cfg = try ModelConfig(json: try JSON.parse(tinyConfig()))
        var w = SafetensorsWriter()
        for s in cfg.expectedWeights { w.add(s.name, shape: s.shape) }
        let good = w.bytes()

        func expect(_ bytes: [UInt8], _ text: String, line: UInt = #line) {
            dir.write("model.safetensors", bytes)
            assertThrows(FlamingoError.invalidFormat, containing: text, line: line) { _ = try Model(directory: dir.path) }
        }
        expect([1, 2, 3], "shorter than the 8-byte header")
        expect(Array(good.prefix(20)), "runs past the end of the file")
        var hugeHeader = good
        hugeHeader.replaceSubrange(0..<8, with: [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
        expect(hugeHeader, "runs past the end of the file")
        expect(Array(good.dropLast(5)), "end past the data section")
        var badJSON = good
        badJSON[9] = UInt8(ascii: "!")
        expect(badJSON, "header: invalid JSON")
        expect(w.bytes(headerOverride: "[]"), "header is not a JSON object")
        expect(w.bytes(headerOverride: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#), "4 bytes of data for shape [2]")
        expect(w.bytes(headerOverride: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#), "reversed")
        expect(w.bytes(headerOverride: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#),
               "overlapping byte ranges")
        expect(w.bytes(headerOverride: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#), "non-negative")
        expect(w.bytes(headerOverride: #"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#), "overflows")
        expect(w.bytes(headerOverride: #"{"a":{"shape":[1],"data_offsets":[0,4]}}"#), "missing dtype")
        expect(w.bytes(headerOverride: #"{"a":{"dtype":"F32","shape":[1]}}"#), "data_offsets")
        expect(w.bytes(headerOverride: #"{"__metadata__":{"k":1}}"#), "__metadata__[k]")
        dir.write("model.safetensors", w.bytes(headerOverride: #"{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}"#))
        assertThrows(FlamingoError.unsupported, containing: "dtype Q9") { _ = try Model(directory: dir.path) }
    }

    func testEmptyAndNonRegularFiles() throws {
        let dir = TempDir()
        try writeModel(dir, config: tinyConfig())
        dir.write("model.safetensors", [UInt8]())
        assertThrows(FlamingoError.invalidFormat, containing: "0 bytes") { _ = try Model(directory: dir.path) }
        dir.remove("model.safetensors")
        mkdir(dir.path + "/model.safetensors", 0o755)
        assertThrows(FlamingoError.io, containing: "not a regular file") { _ = try Model(directory: dir.path) }
    }
}
