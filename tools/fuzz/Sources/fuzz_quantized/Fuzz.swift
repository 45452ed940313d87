// Quantized tensors: packed words, scales and biases checked against a fixed quantized
// config.json (tools/fuzz/corpus/quantized.config.json: q4, groups of 32, the LM head
// at q8); the input is the model.safetensors.
import FlamingoCore
import FuzzSupport
import Glibc

private let dir: String = {
    let source = fixtures + "/../../tools/fuzz/corpus/quantized.config.json"
    guard let bytes = try? readWholeFile(source) else { fputs("fuzz: cannot read \(source)\n", stderr); exit(2) }
    bytes.withUnsafeBytes { write($0, to: scratch + "/config.json") }
    return scratch
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    write(input(data, size), to: dir + "/model.safetensors")
    expectCleanError { _ = try Flamingo(try Model(directory: dir)) }
    return 0
}
