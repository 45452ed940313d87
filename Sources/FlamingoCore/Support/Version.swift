/// Keep in sync with FLAMINGO_VERSION_* and FLAMINGO_ABI_VERSION in
/// include/flamingo.h (a test checks it).
public enum Version {
    public static let cString: StaticString = "0.1.0"
    public static var string: String { cString.description }
    public static let abi: UInt32 = 1
}
