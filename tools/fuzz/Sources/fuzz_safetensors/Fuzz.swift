// A safetensors file: the 8-byte header length, the JSON header and the tensor table
// (dtypes, shapes, byte ranges), then every tensor's first and last value read back.
import FlamingoCore
import FuzzSupport

private let path = scratch + "/model.safetensors"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    write(input(data, size), to: path)
    expectCleanError {
        let f = try SafetensorsFile(path: path)
        for t in f.tensors.values where t.count > 0 {
            _ = t.float(at: 0) + t.float(at: t.count - 1)
        }
    }
    return 0
}
