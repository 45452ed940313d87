import Glibc
import XCTest
@testable import FlamingoCore

/// Image decoding and CLIP preprocessing against goldens made with Pillow and
/// open_clip's real transform (tools/reference/make_image_goldens.py).
final class ImageTests: XCTestCase {
    static let dir = fixturesDir + "/images"

    /// The goldens file: tensors by name (U8 and F32), read with a small
    /// safetensors reader of its own (the engine's reader has no U8).
    struct Goldens {
        struct Tensor { var dtype: String; var shape: [Int]; var bytes: [UInt8] }
        var tensors: [String: Tensor] = [:]

        init(path: String) throws {
            let all = try readWholeFile(path)
            XCTAssertGreaterThan(all.count, 8)
            var n = 0
            for i in 0..<8 { n |= Int(all[i]) << (8 * i) }
            let header = try all[8..<(8 + n)].withUnsafeBytes { try JSON.parse($0) }
            for (name, v) in header.object ?? [:] where name != "__metadata__" {
                let dtype = v["dtype"]?.string ?? ""
                let shape = (v["shape"]?.array ?? []).map { Int($0.double ?? -1) }
                let off = (v["data_offsets"]?.array ?? []).map { Int($0.double ?? -1) }
                tensors[name.string] = Tensor(dtype: dtype, shape: shape, bytes: Array(all[(8 + n + off[0])..<(8 + n + off[1])]))
            }
        }

        func floats(_ t: Tensor) -> [Float] {
            t.bytes.withUnsafeBytes { raw in (0..<(t.bytes.count / 4)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
        }
    }

    static let goldens: Goldens? = try? Goldens(path: dir + "/goldens.safetensors")

    func goldens() throws -> Goldens {
        guard let g = Self.goldens else {
            XCTFail("cannot read \(Self.dir)/goldens.safetensors")
            throw FlamingoError.notFound("goldens")
        }
        return g
    }

    /// Max |a - b| over bytes and how many differ.
    func diff(_ a: [UInt8], _ b: [UInt8]) -> (max: Int, count: Int) {
        var m = 0, c = 0
        for (x, y) in zip(a, b) where x != y {
            m = max(m, abs(Int(x) - Int(y)))
            c += 1
        }
        return (m, c)
    }

    // MARK: - goldens

    /// Every image at every golden size: the 8-bit crop before ToTensor must
    /// be within 1/255 of open_clip's (the aim, and the result, is exact).
    func testPreprocessMatchesOpenClip() throws {
        let g = try goldens()
        let keys = g.tensors.keys.filter { $0.contains("@") && !$0.hasSuffix(".normalized") }.sorted()
        XCTAssertGreaterThan(keys.count, 40)
        var report: [String] = []
        var worst = 0
        for key in keys {
            let parts = key.split(separator: "@")
            let file = String(parts[0]), size = Int(parts[1]) ?? 0
            let expected = g.tensors[key]!
            XCTAssertEqual(expected.shape, [size, size, 3], key)
            let image = try ImageDecoder.decode(path: Self.dir + "/" + file)
            let got = try CLIPPreprocess.resizeAndCrop(image, size: size)
            XCTAssertEqual(got.count, expected.bytes.count, key)
            let d = diff(got, expected.bytes)
            worst = max(worst, d.max)
            XCTAssertLessThanOrEqual(d.max, 1, "\(key): max |Δ| \(d.max)/255 on \(d.count) values")
            report.append("\(key): max |Δ| = \(d.max)/255, \(d.count) of \(got.count) values differ")
        }
        print("ImageTests golden report (max |Δ| before normalisation):\n  " + report.joined(separator: "\n  "))
        print("ImageTests worst max |Δ| = \(worst)/255 over \(keys.count) goldens")
    }

    /// The full transform, normalisation included, against open_clip's F32
    /// output (float32 arithmetic in the same order: bit-exact).
    func testNormalizedMatchesOpenClip() throws {
        let g = try goldens()
        let keys = g.tensors.keys.filter { $0.hasSuffix(".normalized") }.sorted()
        XCTAssertGreaterThanOrEqual(keys.count, 3)
        for key in keys {
            let base = key.dropLast(".normalized".count)
            let parts = base.split(separator: "@")
            let size = Int(parts[1]) ?? 0
            let expected = g.floats(g.tensors[key]!)
            let image = try ImageDecoder.decode(path: Self.dir + "/" + parts[0])
            let got = try CLIPPreprocess.apply(image, size: size, mean: CLIPPreprocess.openAIMean, std: CLIPPreprocess.openAIStd)
            XCTAssertEqual(got.count, 3 * size * size)
            var m: Float = 0
            for (a, b) in zip(got, expected) { m = max(m, abs(a - b)) }
            XCTAssertLessThanOrEqual(m, 1e-6, "\(key): max |Δ| \(m)")
            // and in units of the un-normalised input (undo Normalize)
            var u: Float = 0
            for c in 0..<3 {
                for i in 0..<(size * size) {
                    let s = CLIPPreprocess.openAIStd[c]
                    u = max(u, abs(got[c * size * size + i] - expected[c * size * size + i]) * s)
                }
            }
            XCTAssertLessThanOrEqual(u, 1.0 / 255, key)
        }
    }

    /// Decoded pixels (after EXIF orientation) against Pillow's
    /// exif_transpose(...).convert("RGB").
    func testDecodedPixelsMatchPillow() throws {
        let g = try goldens()
        let keys = g.tensors.keys.filter { $0.hasSuffix(".decoded") }.sorted()
        XCTAssertGreaterThan(keys.count, 30)
        for key in keys {
            let file = String(key.dropLast(".decoded".count))
            let expected = g.tensors[key]!
            let image = try ImageDecoder.decode(path: Self.dir + "/" + file)
            XCTAssertEqual([image.height, image.width, 3], expected.shape, key)
            let d = diff(image.pixels, expected.bytes)
            XCTAssertEqual(d.max, 0, "\(key): \(d.count) values differ, max \(d.max)")
        }
    }

    func testExifOrientationSizes() throws {
        for o in 1...8 {
            let image = try ImageDecoder.decode(path: Self.dir + "/exif\(o)_40x24.jpg")
            XCTAssertEqual([image.width, image.height], o >= 5 ? [24, 40] : [40, 24], "orientation \(o)")
        }
        let xmp = try ImageDecoder.decode(path: Self.dir + "/xmp8_40x24.jpg")
        XCTAssertEqual([xmp.width, xmp.height], [24, 40])
        let png = try ImageDecoder.decode(path: Self.dir + "/png_exif6_40x24.png")
        XCTAssertEqual([png.width, png.height], [24, 40])
    }

    // MARK: - raw buffers

    func testFromRaw() throws {
        let g = try goldens()
        // RGBA: resized premultiplied like Pillow's "RGBA" mode
        let raw = try XCTUnwrap(g.tensors["rgba_80x64.png.raw"])
        XCTAssertEqual(raw.shape, [64, 80, 4])
        let rgba = try raw.bytes.withUnsafeBytes { try ImageDecoder.fromRaw($0, width: 80, height: 64, channels: 4) }
        for size in [48, 64] {
            let got = try CLIPPreprocess.resizeAndCrop(rgba, size: size)
            XCTAssertEqual(diff(got, g.tensors["rgba_80x64.png@\(size)"]!.bytes).max, 0, "RGBA raw @\(size)")
        }
        // RGB: the decoded pixels of a PNG give that PNG's goldens
        let png = try ImageDecoder.decode(path: Self.dir + "/rgb_37x53.png")
        let rgb = try png.pixels.withUnsafeBytes { try ImageDecoder.fromRaw($0, width: 37, height: 53, channels: 3) }
        XCTAssertEqual(rgb.pixels, png.pixels)
        XCTAssertEqual(diff(try CLIPPreprocess.resizeAndCrop(rgb, size: 48), g.tensors["rgb_37x53.png@48"]!.bytes).max, 0)
        let direct = try RGBImage(width: 37, height: 53, pixels: png.pixels)
        XCTAssertEqual(try CLIPPreprocess.apply(direct, size: 32, mean: CLIPPreprocess.openAIMean, std: CLIPPreprocess.openAIStd),
                       try CLIPPreprocess.apply(png, size: 32, mean: CLIPPreprocess.openAIMean, std: CLIPPreprocess.openAIStd))

        let three: [UInt8] = [1, 2, 3]
        try three.withUnsafeBytes { b in
            assertThrows(FlamingoError.invalidArgument, containing: "3 or 4 channels") {
                _ = try ImageDecoder.fromRaw(b, width: 1, height: 1, channels: 2)
            }
            assertThrows(FlamingoError.invalidArgument, containing: "needs") {
                _ = try ImageDecoder.fromRaw(b, width: 2, height: 1, channels: 3)
            }
            assertThrows(FlamingoError.invalidArgument, containing: "positive") {
                _ = try ImageDecoder.fromRaw(b, width: 0, height: 1, channels: 3)
            }
            assertThrows(FlamingoError.invalidArgument, containing: "needs") {
                _ = try ImageDecoder.fromRaw(b, width: Int.max / 2, height: 3, channels: 3)
            }
            XCTAssertEqual(try ImageDecoder.fromRaw(b, width: 1, height: 1, channels: 3).pixels, three)
        }
    }

    /// Editing `pixels` makes the image plain RGB (the decoder's alpha or
    /// CMYK planes would no longer describe it).
    func testEditingPixelsDropsSource() throws {
        var image = try ImageDecoder.decode(path: Self.dir + "/rgba_80x64.png")
        guard case .alpha = image.source else { return XCTFail("RGBA PNG should keep its alpha plane") }
        image.pixels[0] = 7
        XCTAssertEqual(image.source, .rgb)
        image.pixels = []
        assertThrows(FlamingoError.invalidArgument, containing: "does not match") {
            _ = try CLIPPreprocess.apply(image, size: 32, mean: CLIPPreprocess.openAIMean, std: CLIPPreprocess.openAIStd)
        }
    }

    func testPreprocessArguments() throws {
        let image = try RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 9, count: 12))
        assertThrows(FlamingoError.invalidArgument, containing: "out of range") {
            _ = try CLIPPreprocess.apply(image, size: 0, mean: CLIPPreprocess.openAIMean, std: CLIPPreprocess.openAIStd)
        }
        assertThrows(FlamingoError.invalidArgument, containing: "3 values") {
            _ = try CLIPPreprocess.apply(image, size: 4, mean: [0.5], std: CLIPPreprocess.openAIStd)
        }
        assertThrows(FlamingoError.invalidArgument, containing: "bytes") {
            _ = try RGBImage(width: 2, height: 2, pixels: [1, 2, 3])
        }
        let out = try CLIPPreprocess.apply(image, size: 4, mean: [0, 0, 0], std: [1, 1, 1])
        XCTAssertEqual(out.count, 48)
        XCTAssertTrue(out.allSatisfy { $0 == Float(9) / 255 }) // a flat image stays flat
    }

    // MARK: - bad input

    func testBadInputsAreErrors() throws {
        let cases: [(String, (String) -> FlamingoError, String)] = [
            ("truncated.jpg", FlamingoError.invalidFormat, "truncated"),
            ("no_eoi.jpg", FlamingoError.invalidFormat, "truncated"),
            ("truncated_progressive.jpg", FlamingoError.invalidFormat, "truncated"),
            ("bad_huffman.jpg", FlamingoError.invalidFormat, "JPEG: "),
            ("huge.jpg", FlamingoError.unsupported, "above the limit"),
            ("zero_height.jpg", FlamingoError.invalidFormat, "JPEG: "),
            ("bad_crc.png", FlamingoError.invalidFormat, "CRC"),
            ("bad_idat.png", FlamingoError.invalidFormat, "PNG: "),
            ("truncated.png", FlamingoError.invalidFormat, "PNG: "),
            ("huge.png", FlamingoError.unsupported, "above the limit"),
            ("zero_width.png", FlamingoError.invalidFormat, "PNG: "),
            ("signature_only.png", FlamingoError.invalidFormat, "PNG: "),
            ("empty.jpg", FlamingoError.invalidFormat, "empty"),
            ("garbage.bin", FlamingoError.invalidFormat, "not a JPEG or PNG"),
            ("text.jpg", FlamingoError.invalidFormat, "not a JPEG or PNG"),
            ("image.gif", FlamingoError.unsupported, "GIF"),
        ]
        for (file, kind, text) in cases {
            assertThrows(kind, containing: text) { _ = try ImageDecoder.decode(path: Self.dir + "/bad/" + file) }
            // and from memory, prefixes of the file included (never a crash)
            let bytes = try readWholeFile(Self.dir + "/bad/" + file)
            for cut in Set([bytes.count, bytes.count / 3, min(bytes.count, 10)]) {
                _ = try? bytes.prefix(cut).withUnsafeBytes { try ImageDecoder.decode($0) }
            }
        }
        assertThrows(FlamingoError.io, containing: "cannot open") {
            _ = try ImageDecoder.decode(path: Self.dir + "/does-not-exist.png")
        }
    }

    /// Prefixes and byte flips of valid files: errors or images, never a
    /// crash or a hang. FLAMINGO_IMAGE_FUZZ=N runs N flips per file (60 by
    /// default); worth doing under `swift test --sanitize=address`.
    func testDamagedFilesNeverCrash() throws {
        let rounds = getenv("FLAMINGO_IMAGE_FUZZ").flatMap { Int(String(cString: $0)) } ?? 60
        for file in ["progressive_100x75.jpg", "jpeg420_37x53.jpg", "cmyk_64x48.jpg", "exif6_40x24.jpg",
                     "interlaced_rgba_31x29.png", "palette4_trns_33x21.png", "png16_rgb_60x45.png", "png_exif6_40x24.png"] {
            let bytes = try readWholeFile(Self.dir + "/" + file)
            var failures = 0
            for cut in stride(from: 1, to: bytes.count, by: max(1, bytes.count / 97)) {
                do { _ = try bytes.prefix(cut).withUnsafeBytes { try ImageDecoder.decode($0) } } catch { failures += 1 }
            }
            XCTAssertGreaterThan(failures, 0, file)
            var rng: UInt64 = 0x9E37_79B9_7F4A_7C15
            for _ in 0..<rounds {
                var damaged = bytes
                for _ in 0..<4 {
                    rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                    damaged[Int(rng >> 33) % damaged.count] ^= UInt8(truncatingIfNeeded: rng >> 13) | 1
                }
                if let image = try? damaged.withUnsafeBytes({ try ImageDecoder.decode($0) }) {
                    XCTAssertEqual(image.pixels.count, image.width * image.height * 3)
                    _ = try CLIPPreprocess.resizeAndCrop(image, size: 16)
                }
            }
        }
    }

    func testMaxPixels() throws {
        let path = Self.dir + "/photo_640x480.jpg"
        assertThrows(FlamingoError.unsupported, containing: "above the limit of 307199") {
            _ = try ImageDecoder.decode(path: path, maxPixels: 640 * 480 - 1)
        }
        XCTAssertEqual(try ImageDecoder.decode(path: path, maxPixels: 640 * 480).width, 640)
        assertThrows(FlamingoError.unsupported, containing: "above the limit") {
            _ = try ImageDecoder.decode(path: Self.dir + "/rgb_150x100.png", maxPixels: 100)
        }
        assertThrows(FlamingoError.invalidArgument, containing: "maxPixels") {
            _ = try ImageDecoder.decode(path: path, maxPixels: 0)
        }
    }

    // MARK: - pieces

    func testExifParser() {
        func blob(_ bigEndian: Bool, _ entries: [(tag: UInt16, type: UInt16, count: UInt32, value: [UInt8])]) -> [UInt8] {
            func u16(_ v: UInt16) -> [UInt8] { bigEndian ? [UInt8(v >> 8), UInt8(v & 0xFF)] : [UInt8(v & 0xFF), UInt8(v >> 8)] }
            func u32(_ v: UInt32) -> [UInt8] { bigEndian ? u16(UInt16(v >> 16)) + u16(UInt16(v & 0xFFFF)) : u16(UInt16(v & 0xFFFF)) + u16(UInt16(v >> 16)) }
            var b: [UInt8] = Array("Exif".utf8) + [0, 0] + (bigEndian ? [0x4D, 0x4D, 0, 0x2A] : [0x49, 0x49, 0x2A, 0]) + u32(8)
            b += u16(UInt16(entries.count))
            for e in entries { b += u16(e.tag) + u16(e.type) + u32(e.count) + e.value + [UInt8](repeating: 0, count: 4 - e.value.count) }
            return b + [0, 0, 0, 0]
        }
        XCTAssertEqual(ExifOrientation.read(exif: blob(false, [(0x0112, 3, 1, [6, 0])]), xmp: nil), 6)
        XCTAssertEqual(ExifOrientation.read(exif: blob(true, [(0x0112, 3, 1, [0, 8])]), xmp: nil), 8)
        XCTAssertEqual(ExifOrientation.read(exif: blob(false, [(0x0112, 4, 1, [3, 0, 0, 0])]), xmp: nil), 3)
        // Pillow keeps the first entry of a tag
        XCTAssertEqual(ExifOrientation.read(exif: blob(false, [(0x0112, 3, 1, [2, 0]), (0x0112, 3, 1, [5, 0])]), xmp: nil), 2)
        // an unknown type is skipped, the next entry counts
        XCTAssertEqual(ExifOrientation.read(exif: blob(false, [(0x0112, 99, 1, [2, 0]), (0x0112, 3, 1, [5, 0])]), xmp: nil), 5)
        // bytes are not a number: present but unusable, XMP not consulted
        let xmp = Array(#"<x tiff:Orientation="7"/>"#.utf8)
        XCTAssertEqual(ExifOrientation.read(exif: blob(false, [(0x0112, 1, 1, [6])]), xmp: xmp), 1)
        XCTAssertEqual(ExifOrientation.read(exif: blob(false, [(0x0110, 3, 1, [6, 0])]), xmp: xmp), 7)
        XCTAssertEqual(ExifOrientation.read(exif: nil, xmp: Array("<tiff:Orientation>4</tiff:Orientation>".utf8)), 4)
        XCTAssertEqual(ExifOrientation.read(exif: blob(false, [(0x0112, 3, 1, [9, 0])]), xmp: nil), 1)
        // damaged blocks: no orientation, no crash
        let good = blob(false, [(0x0112, 3, 1, [6, 0])])
        for n in 0..<good.count { _ = ExifOrientation.read(exif: Array(good.prefix(n)), xmp: nil) }
        XCTAssertEqual(ExifOrientation.read(exif: Array("Exif".utf8) + [0, 0, 0x49, 0x49, 0x2A, 0, 0xFF, 0xFF, 0xFF, 0x7F], xmp: nil), 1)
    }

    func testResizedSizeAndCropOffsets() {
        XCTAssertEqual(CLIPPreprocess.resizedSize(width: 640, height: 480, size: 224).width, 298)
        XCTAssertEqual(CLIPPreprocess.resizedSize(width: 1, height: 300, size: 32).height, 9600)
        XCTAssertEqual(CLIPPreprocess.resizedSize(width: 37, height: 53, size: 48).height, 68) // 68.75 truncated
        XCTAssertEqual(CLIPPreprocess.cropOffset(53, 48), 2) // 2.5 -> 2
        XCTAssertEqual(CLIPPreprocess.cropOffset(51, 48), 2) // 1.5 -> 2
        XCTAssertEqual(CLIPPreprocess.cropOffset(49, 48), 0) // 0.5 -> 0
        // Pillow 13's pass order: vertical first iff the height shrinks by more than
        // twice as many pixels as the width (goldens rgb_tie_40x80 / rgb_40x81 pin it)
        XCTAssertFalse(PillowResample.verticalFirst(width: 40, height: 80, outWidth: 32, outHeight: 64))
        XCTAssertTrue(PillowResample.verticalFirst(width: 40, height: 81, outWidth: 32, outHeight: 64))
        XCTAssertTrue(PillowResample.verticalFirst(width: 10, height: 100, outWidth: 20, outHeight: 99))
        XCTAssertFalse(PillowResample.verticalFirst(width: 10, height: 10, outWidth: 100, outHeight: 11))
        XCTAssertFalse(PillowResample.verticalFirst(width: 640, height: 480, outWidth: 298, outHeight: 224))
    }

    /// A large photo-sized image through the whole preprocessing: only the
    /// crop window is resampled, so this stays fast even in debug builds.
    func testLargeImageTiming() throws {
        let w = 1600, h = 1200
        var px = [UInt8](repeating: 0, count: w * h * 3)
        for i in 0..<px.count { px[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
        let image = try RGBImage(width: w, height: h, pixels: px)
        let start = clock()
        let out = try CLIPPreprocess.apply(image, size: 224, mean: CLIPPreprocess.openAIMean, std: CLIPPreprocess.openAIStd)
        let seconds = Double(clock() - start) / Double(CLOCKS_PER_SEC)
        XCTAssertEqual(out.count, 3 * 224 * 224)
        print("ImageTests: 1600x1200 -> 224 preprocessing took \(seconds) s (CPU)")

        // FLAMINGO_IMAGE_BENCH=photo.jpg times decoding + preprocessing of a real file
        if let path = getenv("FLAMINGO_IMAGE_BENCH").map({ String(cString: $0) }) {
            let t0 = clock()
            let photo = try ImageDecoder.decode(path: path)
            let t1 = clock()
            _ = try CLIPPreprocess.apply(photo, size: 224, mean: CLIPPreprocess.openAIMean, std: CLIPPreprocess.openAIStd)
            let t2 = clock()
            print("ImageTests: \(path) \(photo.width)x\(photo.height): decode \(Double(t1 - t0) / Double(CLOCKS_PER_SEC)) s, "
                  + "preprocess \(Double(t2 - t1) / Double(CLOCKS_PER_SEC)) s (CPU)")
        }
    }
}
