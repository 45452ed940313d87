// config.json alone: the JSON reader, the strict config reader and the tensor table a
// configuration implies (shapes from its sizes, quantized shapes from its groups).
import FlamingoCore
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    expectCleanError {
        let config = try ModelConfig(json: try JSON.parse(input(data, size)))
        _ = config.expectedWeights.count
    }
    return 0
}
