// swift-tools-version:6.0
// libflamingo: a Flamingo-family VLM inference engine behind a C ABI.
// `swift build` / `swift test` are for development; CMakeLists.txt builds the
// distributable libflamingo.so (static Swift runtime, version script, SONAME).
import PackageDescription

// Every SIMD-bearing target is compiled for x86-64-v3 (AVX2, FMA, F16C):
// the default SSE2 target turns FMA and f16 conversion into library calls.
let simdSwift: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-march=x86-64-v3"])]
let simdC: [CSetting] = [.unsafeFlags(["-march=x86-64-v3", "-O2"])]

let package = Package(
    name: "flamingo",
    products: [
        .library(name: "flamingo", type: .dynamic, targets: ["FlamingoCAPI"]),
        // Installed as `flamingo` by CMake (a product cannot share the library's name).
        .executable(name: "flamingo-cli", targets: ["FlamingoCLI"]),
        // The engine as Swift modules, for tools/fuzz (a package of its own, built with sanitizers).
        .library(name: "FlamingoInternals", targets: ["FlamingoCore", "FlamingoCAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    ],
    targets: [
        // C helpers Swift cannot express: per-thread error strings, the
        // run-time OpenCL loader (libOpenCL is optional at load time), and
        // JPEG/PNG decoding whose error handlers need setjmp/longjmp.
        .target(name: "CFlamingoSupport", cSettings: simdC,
                linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("pthread"),
                                 .linkedLibrary("jpeg"), .linkedLibrary("png16")]),
        // AVX2/FMA element-wise kernels (exp, GELU, softmax) in C intrinsics.
        .target(name: "CFlamingoKernels", path: "kernels/cpu", cSettings: simdC + [.unsafeFlags(["-mfma", "-mavx2"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "FlamingoCore", dependencies: ["CFlamingoSupport", "CFlamingoKernels", "COpenBLAS"],
                swiftSettings: simdSwift),
        .target(name: "FlamingoCAPI", dependencies: ["FlamingoCore", "CFlamingoSupport"],
                swiftSettings: simdSwift),
        // `flamingo serve`: the OpenAI-compatible HTTP server (the library gains no dependency).
        .target(name: "FlamingoServer",
                dependencies: ["FlamingoCore", .product(name: "Hummingbird", package: "hummingbird")]),
        .executableTarget(name: "FlamingoCLI",
                          dependencies: ["FlamingoCore", "FlamingoServer",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")],
                          swiftSettings: simdSwift),
        .testTarget(name: "FlamingoCoreTests", dependencies: ["FlamingoCore", "FlamingoCAPI", "FlamingoServer"],
                    swiftSettings: simdSwift),
    ],
    swiftLanguageModes: [.v5]
)
