// A model directory: config.json and model.safetensors (the input's two parts, split at
// "\n#----#\n"), loaded and validated against each other, then made ready to run.
import FlamingoCore
import FuzzSupport

private let dir = scratch

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let (config, weights) = split(input(data, size))
    write(config, to: dir + "/config.json")
    write(weights, to: dir + "/model.safetensors")
    expectCleanError { _ = try Flamingo(try Model(directory: dir)) }
    return 0
}
