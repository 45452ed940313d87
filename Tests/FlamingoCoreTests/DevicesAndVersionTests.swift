import XCTest
@testable import FlamingoCore

final class DevicesAndVersionTests: XCTestCase {
    func testCPUIsDeviceZero() throws {
        let devices = Devices.all()
        XCTAssertEqual(devices.first?.backend, .cpu)
        XCTAssertEqual(devices.first?.name, "cpu")
        XCTAssertGreaterThan(devices.first?.computeUnits ?? 0, 0)
        for d in devices.dropFirst() {
            XCTAssertEqual(d.backend, .opencl)
            XCTAssertGreaterThanOrEqual(d.platformIndex, 0)
            XCTAssertFalse(d.name.isEmpty)
        }
    }

    /// The header's version macros and the library's constants agree.
    func testHeaderVersionMatchesLibrary() throws {
        let header = String(decoding: try readWholeFile(fixturesDir + "/../../include/flamingo.h"), as: UTF8.self)
        func macro(_ name: String) -> String? {
            for line in header.split(separator: "\n") where line.hasPrefix("#define \(name) ") {
                return line.dropFirst("#define \(name) ".count).drop(while: { $0 == " " }).description
            }
            return nil
        }
        XCTAssertEqual(macro("FLAMINGO_VERSION_STRING"), "\"\(Version.string)\"")
        XCTAssertEqual(macro("FLAMINGO_ABI_VERSION"), "\(Version.abi)")
        let parts = Version.string.split(separator: ".").map(String.init)
        XCTAssertEqual([macro("FLAMINGO_VERSION_MAJOR"), macro("FLAMINGO_VERSION_MINOR"), macro("FLAMINGO_VERSION_PATCH")],
                       parts.map { Optional($0) })
    }

    func testErrorStatusesMatchHeader() throws {
        let header = String(decoding: try readWholeFile(fixturesDir + "/../../include/flamingo.h"), as: UTF8.self)
        let pairs: [(FlamingoError, String)] = [
            (.invalidArgument(""), "FLAMINGO_ERROR_INVALID_ARGUMENT"), (.io(""), "FLAMINGO_ERROR_IO"),
            (.invalidFormat(""), "FLAMINGO_ERROR_INVALID_FORMAT"), (.unsupported(""), "FLAMINGO_ERROR_UNSUPPORTED"),
            (.outOfMemory(""), "FLAMINGO_ERROR_OUT_OF_MEMORY"), (.backend(""), "FLAMINGO_ERROR_BACKEND"),
            (.notFound(""), "FLAMINGO_ERROR_NOT_FOUND"), (.bufferTooSmall(""), "FLAMINGO_ERROR_BUFFER_TOO_SMALL"),
            (.cancelled(""), "FLAMINGO_ERROR_CANCELLED"), (.internal(""), "FLAMINGO_ERROR_INTERNAL"),
        ]
        for (e, name) in pairs {
            XCTAssertTrue(header.contains("\(name) = \(e.status)"), "\(name) is not \(e.status) in flamingo.h")
        }
    }
}
