import XCTest
@testable import FlamingoCore

final class JSONTests: XCTestCase {
    func testValues() throws {
        let v = try JSON.parse(#"{"a": [1, -2.5e3, true, false, null], "s": "x\u00e9\ud83d\ude00\n", "o": {}}"#)
        XCTAssertEqual(v["a"]?.array?.count, 5)
        XCTAssertEqual(v["a"]?.array?[0].int, 1)
        XCTAssertEqual(v["a"]?.array?[1].double, -2500)
        XCTAssertEqual(v["a"]?.array?[1].int, -2500)
        XCTAssertEqual(v["s"]?.string, "xé😀\n")
        XCTAssertEqual(v["o"], .object([:]))
    }

    func testRejectsMalformed() {
        for bad in ["", "{", "[1,]", "{\"a\":1,}", "01", "1.", "tru", "\"\\x\"", "\"\\ud800\"", "{\"a\":1 \"b\":2}",
                    "[1] 2", "{\"a\":1,\"a\":2}", "\"a\u{01}\"", "-", "1e"] {
            XCTAssertThrowsError(try JSON.parse(bad), "accepted \(bad)")
        }
    }

    func testDeepNestingIsAnErrorNotACrash() {
        let deep = String(repeating: "[", count: 100_000)
        XCTAssertThrowsError(try JSON.parse(deep))
    }

    func testIntRejectsFractions() throws {
        XCTAssertNil(try JSON.parse("1.5").int)
        XCTAssertEqual(try JSON.parse("3.0").int, 3)
    }
}
