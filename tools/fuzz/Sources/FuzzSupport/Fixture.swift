import CFlamingoSupport
import FlamingoCAPI
import Glibc

/// The mpt_tiny fixture loaded once through the C ABI, for the targets that need a model.
public let tinyModel: OpaquePointer = {
    var params = flamingo_model_params()
    _ = capiModelDefaultParams(&params, MemoryLayout<flamingo_model_params>.size)
    params.n_threads = 1
    var model: OpaquePointer?
    let path = fixtures + "/mpt_tiny"
    guard capiModelLoad(path, &params, &model) == 0, let model else {
        fputs("fuzz: cannot load \(path): \(String(cString: capiLastError()))\n", stderr)
        exit(2)
    }
    capiLogSetLevel(4)  // silent: rejected inputs are expected
    return model
}()

/// The tiny model's info (vocab size, visual token shape).
public let tinyInfo: flamingo_model_info = {
    var info = flamingo_model_info()
    info.struct_size = UInt32(MemoryLayout<flamingo_model_info>.size)
    _ = capiModelGetInfo(tinyModel, &info)
    return info
}()

/// Fails the run when the C ABI returns a status outside the documented set
/// (INTERNAL means the engine reached a state it thought impossible).
public func expectDocumentedStatus(_ status: Int32, _ what: String) {
    guard status != 0 else { return }
    if status < 0 || status >= Int32(FLAMINGO_ERROR_INTERNAL) {
        fputs("fuzz: \(what) returned \(status): \(String(cString: capiLastError()))\n", stderr)
        abort()
    }
}
