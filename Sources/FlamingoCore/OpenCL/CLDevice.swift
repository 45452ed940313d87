import CFlamingoSupport
import Glibc

/// The OpenCL device the backend runs on: its entry of `Devices.all()` and
/// its cl_device_id.
///
/// Selection is always explicit about which device: a host may list PoCL
/// (a CPU device) before the GPU, so "the first device" is never a safe
/// default on its own (docs/opencl.md).
public struct OpenCLDevice: @unchecked Sendable {
    /// Index in `Devices.all()` (0 is the CPU, so OpenCL devices start at 1).
    public let index: Int
    public let info: DeviceInfo
    let handle: UnsafeMutableRawPointer

    /// Chooses a device by `spec`, which `FLAMINGO_DEVICE` overrides when set:
    /// - a decimal number: that index of `Devices.all()` (`flamingo devices` prints them);
    /// - anything else: the first OpenCL device whose name or platform name
    ///   contains it, ignoring case ("H100", "nvidia", "pthread");
    /// - nil or empty: the first GPU, else the first OpenCL device.
    public static func select(_ spec: String? = nil) throws -> OpenCLDevice {
        let devices = Devices.all()
        guard fsup_cl_compute_available() != 0 else {
            throw FlamingoError.notFound("OpenCL: no OpenCL runtime (libOpenCL.so.1 with the compute entry points) could be loaded")
        }
        let index = try resolve(environmentSpec() ?? spec, in: devices)
        let info = devices[index]
        var err: Int32 = 0
        guard let handle = fsup_cl_device_handle(info.platformIndex, info.deviceIndex, &err) else {
            throw CLStatus.error(err, "looking up device \(index) (\(info.name))")
        }
        return OpenCLDevice(index: index, info: info, handle: handle)
    }

    /// FLAMINGO_DEVICE, when set and not empty.
    static func environmentSpec() -> String? {
        guard let p = getenv("FLAMINGO_DEVICE") else { return nil }
        let s = String(cString: p)
        return s.isEmpty ? nil : s
    }

    /// The `Devices.all()` index that `spec` names (see `select`). Pure, so
    /// the rules are testable without OpenCL.
    static func resolve(_ spec: String?, in devices: [DeviceInfo]) throws -> Int {
        let opencl = devices.indices.filter { devices[$0].backend == .opencl }
        guard !opencl.isEmpty else {
            throw FlamingoError.notFound("OpenCL: no OpenCL device found (is an ICD such as PoCL or NVIDIA's registered in /etc/OpenCL/vendors?)")
        }
        let s = trimmed(spec ?? "")
        if s.isEmpty {
            return opencl.first { devices[$0].kind == .gpu } ?? opencl[0]
        }
        if let n = Int(s) {
            guard devices.indices.contains(n) else {
                throw FlamingoError.notFound("OpenCL: no device \(n) (devices are 0...\(devices.count - 1); 0 is the CPU)")
            }
            guard devices[n].backend == .opencl else {
                throw FlamingoError.invalidArgument("OpenCL: device \(n) (\(devices[n].name)) is the CPU backend, not an OpenCL device")
            }
            return n
        }
        let needle = s.lowercased()
        if let n = opencl.first(where: { devices[$0].name.lowercased().contains(needle) })
            ?? opencl.first(where: { devices[$0].platformName.lowercased().contains(needle) }) {
            return n
        }
        let names = opencl.map { "\($0): \(devices[$0].name)" }.joined(separator: ", ")
        throw FlamingoError.notFound("OpenCL: no OpenCL device matches \"\(s)\" (have \(names))")
    }

    /// A device property of fixed size (CL_DEVICE_* numbers from cl.h).
    func property<T: BitwiseCopyable>(_ param: UInt32, _ type: T.Type, default value: T) -> T {
        var v = value
        let rc = withUnsafeMutableBytes(of: &v) { fsup_cl_device_info(handle, param, $0.count, $0.baseAddress, nil) }
        return rc == CLStatus.success ? v : value
    }

    /// A string device property.
    func stringProperty(_ param: UInt32) -> String {
        var size = 0
        guard fsup_cl_device_info(handle, param, 0, nil, &size) == CLStatus.success, size > 0 else { return "" }
        var buf = [UInt8](repeating: 0, count: size + 1)
        guard buf.withUnsafeMutableBytes({ fsup_cl_device_info(handle, param, size, $0.baseAddress, nil) }) == CLStatus.success else {
            return ""
        }
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// CL_DEVICE_* query numbers used here (cl.h; the C wrappers take them as integers).
enum CLDeviceParam {
    static let maxWorkGroupSize: UInt32 = 0x1004
    static let globalMemSize: UInt32 = 0x101F
    static let maxMemAllocSize: UInt32 = 0x1010
    static let localMemSize: UInt32 = 0x1023
    static let extensions: UInt32 = 0x1030
    static let version: UInt32 = 0x102F
    static let openCLCVersion: UInt32 = 0x103D
}

/// `s` without surrounding blanks (no Foundation here).
private func trimmed(_ s: String) -> String {
    let blank: (Unicode.Scalar) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" }
    let scalars = s.unicodeScalars
    guard let a = scalars.firstIndex(where: { !blank($0) }), let b = scalars.lastIndex(where: { !blank($0) }) else { return "" }
    return String(scalars[a...b])
}
