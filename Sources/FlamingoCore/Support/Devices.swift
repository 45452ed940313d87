import CFlamingoSupport
import Glibc

/// Compute devices visible to this process: the CPU first, then every
/// OpenCL device (OpenCL is loaded at run time; absent means CPU only).
public struct DeviceInfo: Equatable, Sendable {
    public enum Backend: Int32, Sendable { case cpu = 0, opencl = 1 }
    public enum Kind: Int32, Sendable { case cpu = 0, gpu = 1, accelerator = 2, other = 3 }

    public var backend: Backend
    public var kind: Kind
    public var platformIndex: Int32
    public var deviceIndex: Int32
    public var computeUnits: UInt32
    public var memoryBytes: UInt64
    public var name: String
    public var platformName: String
    public var vendor: String
    public var driverVersion: String
}

public enum Devices {
    private static let cached: [DeviceInfo] = enumerate()

    /// The device list, computed once per process. An OpenCL failure is
    /// logged and leaves the CPU alone in the list: it must not make the CPU
    /// backend unusable.
    public static func all() -> [DeviceInfo] { cached }

    static func cpu() -> DeviceInfo {
        let cores = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        return DeviceInfo(backend: .cpu, kind: .cpu, platformIndex: -1, deviceIndex: -1,
                          computeUnits: UInt32(max(cores, 1)),
                          memoryBytes: UInt64(max(pages, 0)) &* UInt64(max(pageSize, 0)),
                          name: "cpu", platformName: "", vendor: cpuVendor(), driverVersion: "")
    }

    private static func cpuVendor() -> String {
        guard let f = try? readWholeFile("/proc/cpuinfo") else { return "" }
        let text = String(decoding: f, as: UTF8.self)
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return String(line[line.index(after: colon)...].drop(while: { $0 == " " }))
            }
        }
        return ""
    }

    private static func enumerate() -> [DeviceInfo] {
        var list = [cpu()]
        let cap = 256
        var descs = [fsup_cl_device_desc](repeating: fsup_cl_device_desc(), count: cap)
        var err = [CChar](repeating: 0, count: 512)
        let n = fsup_cl_enumerate(&descs, Int32(cap), &err, err.count)
        if n < 0 {
            Log.warn("OpenCL device enumeration failed, using the CPU only: \(String(cString: err))")
            return list
        }
        for d in descs.prefix(Int(min(n, Int32(cap)))) {
            var d = d
            func str<T>(_ field: inout T) -> String {
                withUnsafeBytes(of: &field) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            }
            list.append(DeviceInfo(backend: .opencl, kind: DeviceInfo.Kind(rawValue: Int32(d.device_type)) ?? .other,
                                   platformIndex: d.platform_index, deviceIndex: d.device_index,
                                   computeUnits: d.compute_units, memoryBytes: d.global_mem_bytes,
                                   name: str(&d.name), platformName: str(&d.platform_name),
                                   vendor: str(&d.vendor), driverVersion: str(&d.driver_version)))
        }
        return list
    }
}
