import Glibc
import XCTest
@testable import FlamingoCore

/// The tokenizer against Hugging Face `tokenizers` 0.23 / transformers 5:
/// golden ids and decodes for every string of Tests/Fixtures/tokenizers/strings.jsonl
/// on seven tokenizers (tools/reference/make_tokenizer_goldens.py explains them).
/// Text is compared as UTF-8 bytes: Swift's String == is canonical equivalence
/// and would hide the NFC differences the goldens are about.
final class TokenizerTests: XCTestCase {
    static let dir = fixturesDir + "/tokenizers"
    static let goldenNames = ["neox_bpe", "llama_legacy", "llama_metaspace", "bytelevel_flags",
                              "metaspace_flags", "mpt_tiny", "llama_tiny"]

    // MARK: - golden files

    static func jsonLines(_ path: String) throws -> [JSON] {
        let bytes = try readWholeFile(path)
        return try bytes.split(separator: 0x0A).map { line in
            try Array(line).withUnsafeBytes { try JSON.parse($0) }
        }
    }

    static let strings: [String] = {
        (try? jsonLines(dir + "/strings.jsonl").map { $0.string ?? "" }) ?? []
    }()

    static let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+/".utf8)
    static let digit: [UInt8: Int] = Dictionary(uniqueKeysWithValues: alphabet.enumerated().map { ($1, $0) })

    /// make_tokenizer_goldens.py pack_ids.
    static func unpackIds(_ s: String, width: Int) -> [Int] {
        let u = Array(s.utf8)
        return stride(from: 0, to: u.count, by: width).map { i in
            (0..<width).reduce(0) { $0 << 6 | digit[u[i + $1]]! }
        }
    }

    /// make_tokenizer_goldens.py pack_lengths (-1: HF raised "Invalid prefix").
    static func unpackLengths(_ s: String) -> [Int] {
        let u = Array(s.utf8)
        var out: [Int] = []
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "!") { out.append(-1); i += 1 } else if u[i] == UInt8(ascii: "~") {
                out.append(digit[u[i + 1]]! << 6 | digit[u[i + 2]]!); i += 3
            } else { out.append(digit[u[i]]!); i += 1 }
        }
        return out
    }

    /// make_tokenizer_goldens.py relative: literal strings and [i, j] slices of s (code points).
    static func rebuild(_ v: JSON, from s: String) -> [UInt8] {
        if let t = v.string { return Array(t.utf8) }
        let scalars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        for op in v.array ?? [] {
            if let t = op.string { out.append(contentsOf: t.unicodeScalars) } else if let r = op.array,
                let i = r.first?.int, let j = r.last?.int {
                out.append(contentsOf: scalars[i..<j])
            }
        }
        return Array(String(out).utf8)
    }

    static func show(_ b: [UInt8]) -> String {
        String(decoding: b, as: UTF8.self).unicodeScalars.map {
            $0.value < 0x20 || $0.value > 0x7E ? "\\u{\(String($0.value, radix: 16))}" : String($0)
        }.joined()
    }

    /// Runs one golden file; returns (strings checked, mismatches).
    func runGolden(_ name: String) throws -> (Int, [String]) {
        let rows = try Self.jsonLines(Self.dir + "/" + name + ".golden.jsonl")
        let meta = rows[0]
        let tok = try Tokenizer(path: Self.dir + "/" + meta["tokenizer"]!.string!)
        let width = meta["id_width"]!.int!
        let prefix = meta["prefix"]!.array!.map { $0.int! }
        let suffix = meta["suffix"]!.array!.map { $0.int! }
        let frames = meta["frames"]!
        func framed(_ key: String, _ core: [UInt8]) -> [UInt8] {
            let f = frames[key]!.array!
            return Array(f[0].string!.utf8) + core + Array(f[1].string!.utf8)
        }
        XCTAssertEqual(tok.vocabSize, meta["vocab_size"]!.int!, name)
        XCTAssertEqual(rows.count - 1 - Self.strings.count, 300, name)
        var failures: [String] = []
        func fail(_ what: String) { failures.append("\(name): \(what)") }

        func checkStream(_ ids: [Int], _ expected: [Int], skip: Bool, _ label: String) throws {
            let stream = tok.makeStreamDecoder(skipSpecialTokens: skip)
            for (k, id) in ids.enumerated() where k < expected.count {
                let chunk = try stream.step([id])
                if expected[k] < 0 { break }   // HF raised; ours goes on (checked in testStreamRecovery)
                if (chunk?.count ?? 0) != expected[k] {
                    fail("\(label): stream step \(k) gave \(chunk.map { Self.show($0) } ?? "nil"), HF \(expected[k]) bytes")
                    return
                }
            }
        }

        for (index, s) in Self.strings.enumerated() {
            let row = rows[index + 1]
            let b = Self.unpackIds(row["b"]!.string!, width: width)
            let a = row["a"].map { Self.unpackIds($0.string!, width: width) } ?? prefix + b + suffix
            let label = "string \(index) \"\(Self.show(Array(s.utf8)))\""
            do {
                let gotB = try tok.encode(s, addSpecialTokens: false)
                if gotB != b { fail("\(label): encode \(gotB), HF \(b)"); continue }
                let gotA = try tok.encode(s)
                if gotA != a { fail("\(label): encode with special tokens \(gotA), HF \(a)"); continue }
                for (key, skip) in [("d", false), ("k", true)] {
                    let expected = row[key.uppercased()].map { Self.rebuild($0, from: s) }
                        ?? framed(key, row[key].map { Self.rebuild($0, from: s) } ?? Array(s.utf8))
                    let got = Array(try tok.decode(a, skipSpecialTokens: skip).utf8)
                    if got != expected {
                        fail("\(label): decode(skip \(skip)) \"\(Self.show(got))\", HF \"\(Self.show(expected))\"")
                    }
                }
                if let l = row["l"]?.string { try checkStream(a, Self.unpackLengths(l), skip: false, label) }
            } catch {
                fail("\(label): threw \(error)")
            }
        }
        for row in rows.dropFirst(1 + Self.strings.count) {
            let ids = Self.unpackIds(row["r"]!.string!, width: width)
            let label = "ids \(ids)"
            let d = try tok.decode(ids)
            let k = try tok.decode(ids, skipSpecialTokens: true)
            if Array(d.utf8) != Array(row["d"]!.string!.utf8) { fail("\(label): decode \"\(Self.show(Array(d.utf8)))\"") }
            if Array(k.utf8) != Array(row["k"]!.string!.utf8) { fail("\(label): decode(skip) \"\(Self.show(Array(k.utf8)))\"") }
            try checkStream(ids, Self.unpackLengths(row["l"]!.string!), skip: false, label)
            try checkStream(ids, Self.unpackLengths(row["ls"]!.string!), skip: true, label + " (skip)")
        }
        return (Self.strings.count, failures)
    }

    func testGoldens() throws {
        XCTAssertGreaterThan(Self.strings.count, 2000)
        var total = 0
        for name in Self.goldenNames {
            let (n, failures) = try runGolden(name)
            total += n
            for f in failures.prefix(15) { print(f) }
            XCTAssertEqual(failures.count, 0, "\(name): \(failures.count) mismatches of \(n) strings")
        }
        print("tokenizer goldens: \(Self.strings.count) strings x \(Self.goldenNames.count) tokenizers = \(total) checked")
    }

    // MARK: - Unicode tables against HF

    func testRegexClassesMatchHF() throws {
        let runs = try Self.jsonLines(Self.dir + "/classes.json")[0].array!
        let code: [String: ScalarClass] = ["L": .letter, "N": .number, "W": .space, "O": .other]
        var mismatches: [String] = []
        for (i, run) in runs.enumerated() {
            let start = run.array![0].int!, cls = code[run.array![1].string!]!
            let end = i + 1 < runs.count ? runs[i + 1].array![0].int! : 0x110000
            for v in start..<end where !(0xD800..<0xE000).contains(v) && scalarClass(UInt32(v)) != cls {
                mismatches.append(String(v, radix: 16))
            }
        }
        XCTAssertEqual(mismatches.count, 0, "first: \(mismatches.prefix(20))")
    }

    func testNFCMatchesHF() throws {
        var mismatches: [String] = []
        func check(_ input: [UInt8], _ expected: JSON) {
            let want = expected.string.map { Array($0.utf8) } ?? input
            let got = input.withUnsafeBufferPointer { hfNFC($0) } ?? input
            if got != want { mismatches.append("\(Self.show(input)) -> \(Self.show(got)), HF \(Self.show(want))") }
        }
        var lines = 0
        for row in try Self.jsonLines(Self.dir + "/nfc.jsonl") {
            let r = row.array!
            lines += 1
            if let s = r[0].string {
                check(Array(s.utf8), r[1])
                continue
            }
            var c: [UInt8] = []
            appendUTF8(UInt32(r[0].int!), to: &c)
            let nfd = r[2].string.map { Array($0.utf8) } ?? c
            check(c, r[1])
            check(nfd, r[3])
            check(Array("a".utf8) + c, r[4])
            check(c + Array("\u{301}".utf8), r[5])
            check(c + Array("\u{301}\u{316}".utf8), r[6])
        }
        XCTAssertGreaterThan(lines, 2500)
        XCTAssertEqual(mismatches.count, 0, "first: \(mismatches.prefix(10))")
    }

    // MARK: - behaviour

    func testOpenFlamingoTokens() throws {
        let mpt = try Tokenizer(path: fixturesDir + "/mpt_tiny/tokenizer.json")
        let llama = try Tokenizer(path: fixturesDir + "/llama_tiny/tokenizer.json")
        for t in [mpt, llama] {
            let image = try XCTUnwrap(t.id(of: "<image>"))
            let eoc = try XCTUnwrap(t.id(of: "<|endofchunk|>"))
            XCTAssertEqual(t.token(of: image), "<image>")
            XCTAssertEqual(try t.encode("<image>", addSpecialTokens: false), [image])
            XCTAssertEqual(try t.encode("a<image>b<|endofchunk|>", addSpecialTokens: false).filter { $0 == image || $0 == eoc },
                           [image, eoc])
            XCTAssertEqual(try t.decode([image, eoc], skipSpecialTokens: true), "")
            XCTAssertNil(t.token(of: -1))
            XCTAssertNil(t.token(of: t.vocabSize))
            XCTAssertNil(t.id(of: "no such token here"))
        }
        // LLaMA prepends <s>; GPT-NeoX adds nothing.
        XCTAssertEqual(try llama.encode("Hello").first, llama.id(of: "<s>"))
        XCTAssertEqual(try mpt.encode("Hello"), try mpt.encode("Hello", addSpecialTokens: false))
        XCTAssertEqual(try llama.encode(""), [llama.id(of: "<s>")!])
        XCTAssertEqual(try mpt.encode(""), [])
    }

    func testStreamNeverSplitsCharacters() throws {
        let llama = try Tokenizer(path: fixturesDir + "/llama_tiny/tokenizer.json")
        let text = "日本語 🙂 naïve <image>done"
        let ids = try llama.encode(text)
        let stream = llama.makeStreamDecoder()
        var out = ""
        var pieces: [String] = []
        for id in ids {
            let piece = try stream.push(id)
            XCTAssertFalse(piece.unicodeScalars.contains("\u{FFFD}"))
            pieces.append(piece)
            out += piece
        }
        XCTAssertEqual(Array(out.utf8), Array(try llama.decode(ids).utf8))
        XCTAssertTrue(pieces.contains(""), "byte-fallback pieces must wait for the rest of the character")
        assertThrows(FlamingoError.invalidArgument, containing: "outside the vocabulary") { _ = try stream.push(-3) }
        stream.reset()
        XCTAssertEqual(try stream.push(ids[0]), try llama.decode([ids[0]]))
    }

    func testStreamRecovery() throws {
        // A byte-fallback run that turns invalid after a byte that looked
        // complete ("P"): HF's DecodeStream raises "Invalid prefix"; this one
        // holds byte runs back until they end, so its pieces equal the full
        // decode (one U+FFFD per byte of the invalid run).
        let llama = try Tokenizer(path: Self.dir + "/llama_metaspace.json")
        let p = llama.id(of: "<0x50>")!, f0 = llama.id(of: "<0xF0>")!, word = llama.id(of: "▁the")!
        let stream = llama.makeStreamDecoder()
        XCTAssertEqual(try stream.push(p), "")
        XCTAssertEqual(try stream.push(f0), "")
        let rest = try stream.push(word)
        XCTAssertEqual(rest, try llama.decode([p, f0, word]))
        XCTAssertEqual(try stream.push(word), " the")
        XCTAssertEqual(try stream.flush(), "")
    }

    func testDecodeErrors() throws {
        let t = try Tokenizer(path: fixturesDir + "/mpt_tiny/tokenizer.json")
        assertThrows(FlamingoError.invalidArgument, containing: "outside the vocabulary") { _ = try t.decode([0, t.vocabSize]) }
        assertThrows(FlamingoError.invalidArgument, containing: "-1") { _ = try t.decode([-1]) }
        XCTAssertEqual(try t.decode([]), "")
    }

    /// The fixture's tokenizer.json with one component replaced.
    func edited(_ key: String, _ value: String, base: String = "/mpt_tiny/tokenizer.json") throws -> JSON {
        guard case .object(var o) = try readWholeFile(fixturesDir + base).withUnsafeBytes({ try JSON.parse($0) }) else {
            throw FlamingoError.internal("not an object")
        }
        o[JSONKey(key)] = try JSON.parse(value)
        return .object(o)
    }

    func testUnsupportedComponentsAreNamed() throws {
        assertThrows(FlamingoError.unsupported, containing: "\"Unigram\"") {
            _ = try Tokenizer(json: try self.edited("model", #"{"type": "Unigram", "vocab": [], "unk_id": 0}"#))
        }
        assertThrows(FlamingoError.unsupported, containing: "\"NFKC\"") {
            _ = try Tokenizer(json: try self.edited("normalizer", #"{"type": "NFKC"}"#))
        }
        assertThrows(FlamingoError.unsupported, containing: "\"Lowercase\"") {
            _ = try Tokenizer(json: try self.edited("normalizer", #"{"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]}"#))
        }
        assertThrows(FlamingoError.unsupported, containing: "\"Whitespace\"") {
            _ = try Tokenizer(json: try self.edited("pre_tokenizer", #"{"type": "Whitespace"}"#))
        }
        assertThrows(FlamingoError.unsupported, containing: "\"WordPiece\"") {
            _ = try Tokenizer(json: try self.edited("decoder", ###"{"type": "WordPiece", "prefix": "##", "cleanup": true}"###))
        }
        assertThrows(FlamingoError.unsupported, containing: "Regex") {
            _ = try Tokenizer(json: try self.edited("normalizer", #"{"type": "Replace", "pattern": {"Regex": " +"}, "content": " "}"#))
        }
        assertThrows(FlamingoError.unsupported, containing: "dropout") {
            var j = try self.edited("decoder", "null")
            if case .object(var o) = j, case .object(var m) = o["model"]! {
                m["dropout"] = .number(0.1); o["model"] = .object(m); j = .object(o)
            }
            _ = try Tokenizer(json: j)
        }
    }

    func testMalformedFilesAreInvalidFormat() throws {
        let dir = TempDir()
        dir.write("truncated.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {")
        assertThrows(FlamingoError.invalidFormat, containing: "truncated.json") {
            _ = try Tokenizer(path: dir.path + "/truncated.json")
        }
        assertThrows(FlamingoError.io, containing: "missing.json") { _ = try Tokenizer(path: dir.path + "/missing.json") }
        let cases: [(String, String)] = [
            (#"[1, 2]"#, "top level"),
            (#"{"added_tokens": []}"#, "model is missing"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}}}"#, "merges"),
            (#"{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}"#, "vocab"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}"#, "merged token"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}}"#, "merges[0]"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "added_tokens": [{"id": 1}]}"#, "content"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"add_prefix_space": true}}"#, "type"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Metaspace", "replacement": "ab"}}"#, "one character"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Metaspace", "replacement": "_", "add_prefix_space": false}}"#, "contradicts"),
            (#"{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "b"]]}}"#, "missing from the vocabulary"),
            (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}}}"#, "<s>"),
        ]
        for (text, message) in cases {
            assertThrows(FlamingoError.invalidFormat, containing: message) { _ = try Tokenizer(json: try JSON.parse(text)) }
        }
    }

    /// "é" (U+00E9) and "é" (U+0065 U+0301) are different JSON keys and different
    /// tokens, though Swift's String equality calls them equal (canonical
    /// equivalence). Ids and decodings from HF tokenizers 0.23.3
    /// (tools/reference/make_canonical_tokenizer.py).
    func testCanonicallyEquivalentTokensStayDistinct() throws {
        let tok = try Tokenizer(path: Self.dir + "/canonical_keys.json")
        let golden = try readWholeFile(Self.dir + "/canonical_keys.golden.json").withUnsafeBytes { try JSON.parse($0) }
        let cases = try XCTUnwrap(golden["cases"]?.array)
        XCTAssertEqual(cases.count, 9)
        for c in cases {
            let text = try XCTUnwrap(c["text"]?.string)
            let ids = try XCTUnwrap(c["ids"]?.array).compactMap(\.int)
            XCTAssertEqual(try tok.encode(text, addSpecialTokens: false), ids, Self.show(Array(text.utf8)))
            let decoded = try tok.decode(ids)
            XCTAssertEqual(Array(decoded.utf8), Array(try XCTUnwrap(c["decoded"]?.string).utf8), Self.show(Array(text.utf8)))
        }
        XCTAssertEqual(tok.token(of: 7).map { Array($0.unicodeScalars) }, ["\u{E9}"])
        XCTAssertEqual(tok.token(of: 8).map { Array($0.unicodeScalars) }, ["e", "\u{301}"])
        // The JSON reader keeps both keys; a byte-identical repeat is still a duplicate.
        let both = try JSON.parse("{\"\u{E9}\": 1, \"e\u{301}\": 2}")
        XCTAssertEqual(both.object?.count, 2)
        XCTAssertEqual(both["\u{E9}"], .number(1))
        XCTAssertEqual(both["e\u{301}"], .number(2))
        assertThrows(FlamingoError.invalidFormat, containing: "duplicate key") { _ = try JSON.parse("{\"\u{E9}\": 1, \"\u{E9}\": 2}") }
    }

    func testMinimalTokenizers() throws {
        // No normaliser, pre-tokeniser or decoder: HF joins decoded tokens with spaces.
        let t = try Tokenizer(json: try JSON.parse(#"{"model": {"vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}}"#))
        XCTAssertEqual(try t.encode("abab", addSpecialTokens: true), [2, 2])
        XCTAssertEqual(try t.encode("abc"), [2])   // no unk token: unknown characters vanish, as in HF
        XCTAssertEqual(try t.decode([2, 0]), "ab a")
        XCTAssertEqual(t.vocabSize, 3)
        // Unknown characters with an unk token missing from the vocabulary are an error at encode time (as HF).
        let u = try Tokenizer(json: try JSON.parse(#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}}"#))
        XCTAssertEqual(try u.encode("aa"), [0, 0])
        assertThrows(FlamingoError.invalidFormat, containing: "unk_token") { _ = try u.encode("ax") }
    }

    /// Configurations the golden tokenizers do not use, each checked on a few
    /// strings against HF 0.23 (expected values printed by HF itself).
    func testOtherConfigurations() throws {
        let cases: [(String, String, String, String, [Int], String)] = [
            ("llama_metaspace", "normalizer", #"{"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": true, "strip_right": true}, {"type": "NFC"}]}"#,
             "   the cat  ", [1, 470, 316, 651], "<s>the cat"),
            ("llama_metaspace", "normalizer", #"{"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": true, "strip_right": true}, {"type": "NFC"}]}"#,
             "<image> the e\u{301}", [1, 2457, 470, 316, 416, 198, 172], "<s><image>the \u{e9}"),
            ("llama_metaspace", "pre_tokenizer", #"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}"#,
             "<image>the  cat", [1, 2457, 480, 416, 651], "<s><image> the  cat"),
            ("llama_metaspace", "pre_tokenizer", #"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}"#,
             " a  b ", [1, 433, 416, 435, 416], "<s> a  b "),
            ("llama_metaspace", "pre_tokenizer", #"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}"#,
             "the cat", [1, 470, 316, 651], "<s>the cat"),
            ("llama_metaspace", "pre_tokenizer", #"{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}"#,
             " x", [1, 1199], "<s> x"),
            ("neox_bpe", "pre_tokenizer", #"{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": false}"#,
             "hello world", [353, 70, 566, 946], " hello world"),
            ("neox_bpe", "pre_tokenizer", #"{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": false}"#,
             "x  y", [1745, 3000, 357], " x   y"),
            ("neox_bpe", "post_processor", #"{"type": "RobertaProcessing", "sep": ["<|padding|>", 1], "cls": ["<|endoftext|>", 0], "trim_offsets": true, "add_prefix_space": false}"#,
             "hi there", [0, 282, 727, 1], "<|endoftext|>hi there<|padding|>"),
            ("neox_bpe", "pre_tokenizer", #"{"type": "Sequence", "pretokenizers": [{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]}"#,
             "hello world  again", [160, 246, 225, 550, 566, 160, 246, 225, 2480, 317, 3000, 160, 246, 225, 1335, 493], "▁hello▁world  ▁again"),
        ]
        for (base, key, value, text, ids, decoded) in cases {
            let t = try Tokenizer(json: try edited(key, value, base: "/tokenizers/\(base).json"))
            XCTAssertEqual(try t.encode(text), ids, "\(base) \(value) \(text)")
            XCTAssertEqual(Array(try t.decode(ids).utf8), Array(decoded.utf8), "\(base) \(value) \(text)")
        }
    }

    func testLongWordsAreCutExactly() throws {
        // LLaMA's pre-tokeniser leaves a whole piece as one BPE word; the model
        // cuts long words where no merge can join the sides. Same ids as merging
        // the whole word at once, on the goldens' text run together.
        for name in ["llama_metaspace", "llama_legacy", "neox_bpe", "metaspace_flags"] {
            let t = try Tokenizer(path: Self.dir + "/" + name + ".json")
            let text = Self.strings.joined(separator: " ")
            let cut = try t.encode(text)
            t.model.cutThreshold = Int.max
            t.clearCache()
            let whole = try t.encode(text)
            XCTAssertGreaterThan(whole.count, 10000, name)
            XCTAssertEqual(cut, whole, name)
        }
    }

    // MARK: - speed (opt-in, release build)
    //
    //   FLAMINGO_TOKENIZER_BENCH=1 [FLAMINGO_TOKENIZER_BENCH_TEXT=english.txt]
    //   [FLAMINGO_TOKENIZER_BENCH_JSON=a/tokenizer.json:b/tokenizer.json]
    //   swift test -c release -Xswiftc -enable-testing --filter TokenizerTests/testEncodeThroughput

    func testEncodeThroughput() throws {
        guard let flag = getenv("FLAMINGO_TOKENIZER_BENCH"), String(cString: flag) == "1" else {
            throw XCTSkip("set FLAMINGO_TOKENIZER_BENCH=1 (and build with -c release) to measure")
        }
        var text = ""
        if let path = getenv("FLAMINGO_TOKENIZER_BENCH_TEXT") {
            text = String(decoding: try readWholeFile(String(cString: path)), as: UTF8.self)
        } else {
            let english = Self.strings.filter { $0.utf8.allSatisfy { $0 < 0x80 } && $0.count > 20 }
            while text.utf8.count < 4_000_000 { text += english.joined(separator: " ") + "\n" }
        }
        var paths = ["neox_bpe", "llama_legacy", "llama_metaspace"].map { Self.dir + "/" + $0 + ".json" }
        if let list = getenv("FLAMINGO_TOKENIZER_BENCH_JSON") {
            paths = String(cString: list).split(separator: ":").map(String.init)
        }
        for path in paths {
            let t = try Tokenizer(path: path)
            let warm = try t.measureEncodeThroughput(text, minimumSeconds: 2)
            let cold = try t.measureEncodeThroughput(text, minimumSeconds: 2, coldCache: true)
            print(String(format: "%@: %.1f MB/s (warm cache), %.1f MB/s (cold cache), %d bytes",
                         path, warm, cold, text.utf8.count))
        }
    }
}
