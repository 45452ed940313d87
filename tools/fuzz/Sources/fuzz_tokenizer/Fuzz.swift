// tokenizer.json (the input's first part) loaded, then the second part tokenized as
// UTF-8 text (invalid sequences become U+FFFD, as a caller's String would) and its bytes,
// read as 16-bit ids, detokenized with and without special tokens.
import FlamingoCore
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let (json, text) = split(input(data, size))
    expectCleanError {
        let tok = try Tokenizer(json: try JSON.parse(json))
        let s = String(decoding: text, as: UTF8.self)
        let ids = try tok.encode(s)
        _ = try tok.decode(ids)
        var raw: [Int] = []
        var i = 0
        while i + 1 < text.count { raw.append(Int(text[i]) | Int(text[i + 1]) << 8); i += 2 }
        expectCleanError { _ = try tok.decode(raw, skipSpecialTokens: true) }
        expectCleanError { _ = try tok.decode(raw) }
    }
    return 0
}
