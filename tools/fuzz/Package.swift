// swift-tools-version:6.0
// libFuzzer targets, one per input path of the engine. Built by tools/fuzz/run.sh with
// `swift build -c release --sanitize=fuzzer --sanitize=address` (+ undefined for C);
// each target is a libFuzzer binary (libFuzzer provides main, hence -parse-as-library).
import PackageDescription

let harness: [SwiftSetting] = [.unsafeFlags(["-parse-as-library"])]
let names = ["safetensors", "config", "model", "quantized", "tokenizer", "image", "prompt", "detokenizer"]

let package = Package(
    name: "flamingo-fuzz",
    dependencies: [.package(name: "flamingo", path: "../..")],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "FlamingoInternals", package: "flamingo")]),
    ] + names.map { name in
        .executableTarget(name: "fuzz_\(name)",
                          dependencies: ["FuzzSupport", .product(name: "FlamingoInternals", package: "flamingo")],
                          swiftSettings: harness)
    },
    swiftLanguageModes: [.v5]
)
