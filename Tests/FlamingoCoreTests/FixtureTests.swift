import XCTest
@testable import FlamingoCore

/// The committed reference models load and validate.
final class FixtureTests: XCTestCase {
    static let models = ["mpt_tiny", "gpt_neox_tiny", "llama_tiny", "mosaic_gpt_tiny"]

    func testFixtureModelsLoad() throws {
        let expectedDtype: [String: DType] = ["mpt_tiny": .f32, "gpt_neox_tiny": .f16, "llama_tiny": .bf16, "mosaic_gpt_tiny": .f32]
        for name in Self.models {
            let m = try Model(directory: fixturesDir + "/" + name)
            XCTAssertEqual(m.weights.count, m.config.expectedWeights.count, name)
            XCTAssertEqual(try m.tensor("perceiver.latents").dtype, expectedDtype[name], name)
            let ref = try SafetensorsFile(path: fixturesDir + "/" + name + "/reference.safetensors")
            XCTAssertNotNil(ref.tensors["logits"], name)
        }
    }
}
