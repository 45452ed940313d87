// Decoding files into RGBImage: the format is recognised from its first
// bytes, the C shim (CFlamingoSupport/image_decode.c) runs libjpeg-turbo or
// libpng with setjmp-based error handling, and EXIF orientation is applied
// here. Corrupt, truncated or oversized input is an error, never a crash.

import CFlamingoSupport

public enum ImageDecoder {
    /// Default limit on width * height, checked from the file header
    /// before any pixel memory is allocated (decompression bombs).
    public static let defaultMaxPixels = 1 << 26 // 64 Mpx

    /// Decodes a whole JPEG or PNG file held in memory.
    public static func decode(_ bytes: UnsafeRawBufferPointer, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        guard maxPixels > 0 else { throw FlamingoError.invalidArgument("maxPixels must be positive, got \(maxPixels)") }
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw FlamingoError.invalidFormat("empty image data") }
        let format = try sniff(bytes)
        let data = base.assumingMemoryBound(to: UInt8.self)

        var img = fsup_image()
        var message = [CChar](repeating: 0, count: 320)
        let rc = message.withUnsafeMutableBufferPointer { m -> Int32 in
            switch format {
            case .jpeg: return fsup_image_decode_jpeg(data, bytes.count, UInt64(maxPixels), &img, m.baseAddress, m.count)
            case .png: return fsup_image_decode_png(data, bytes.count, UInt64(maxPixels), &img, m.baseAddress, m.count)
            }
        }
        defer { fsup_image_free(&img) }
        if Int(rc) != FSUP_IMG_OK {
            let text = format.rawValue + ": " + String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            switch Int(rc) {
            case FSUP_IMG_ERR_UNSUPPORTED, FSUP_IMG_ERR_TOO_LARGE: throw FlamingoError.unsupported(text)
            case FSUP_IMG_ERR_NOMEM: throw FlamingoError.outOfMemory(text)
            default: throw FlamingoError.invalidFormat(text)
            }
        }
        return try makeImage(img)
    }

    /// Reads and decodes a JPEG or PNG file.
    public static func decode(path: String, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        let file = try MappedFile(path: path)
        return try withContext(path) { try decode(file.bytes, maxPixels: maxPixels) }
    }

    /// An image from raw interleaved 8-bit pixels, 3 (RGB) or 4 (RGBA,
    /// straight alpha) channels, rows top to bottom with no padding. RGBA is
    /// kept as Pillow's "RGBA" mode would be (resized premultiplied, alpha
    /// dropped afterwards, not composited).
    public static func fromRaw(_ bytes: UnsafeRawBufferPointer, width: Int, height: Int, channels: Int) throws -> RGBImage {
        guard width > 0, height > 0 else { throw FlamingoError.invalidArgument("image size \(width)x\(height) must be positive") }
        guard channels == 3 || channels == 4 else { throw FlamingoError.invalidArgument("raw images have 3 or 4 channels, not \(channels)") }
        guard let n = byteCount(width, height, channels), bytes.count == n else {
            throw FlamingoError.invalidArgument("a \(width)x\(height)x\(channels) image needs \(width)x\(height)x\(channels) bytes, got \(bytes.count)")
        }
        let src = UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count)
        let count = width * height
        if channels == 3 { return RGBImage(width: width, height: height, pixels: Array(src), source: .rgb) }
        return RGBImage(width: width, height: height,
                        pixels: PixelConvert.toRGB(src, count: count, channels: 4),
                        source: .alpha(PixelConvert.alphaPlane(src, count: count, channels: 4)))
    }

    enum Format: String { case jpeg = "JPEG", png = "PNG" }

    /// JPEG and PNG by signature (as Pillow's plugins accept them); other
    /// well-known formats are named in the error.
    static func sniff(_ b: UnsafeRawBufferPointer) throws -> Format {
        func starts(_ s: [UInt8], at o: Int = 0) -> Bool {
            b.count >= o + s.count && (0..<s.count).allSatisfy { b[o + $0] == s[$0] }
        }
        if starts([0xFF, 0xD8, 0xFF]) { return .jpeg }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        let others: [(String, [UInt8], Int)] = [
            ("GIF", Array("GIF8".utf8), 0), ("BMP", Array("BM".utf8), 0), ("WebP", Array("WEBP".utf8), 8),
            ("TIFF", [0x49, 0x49, 0x2A, 0x00], 0), ("TIFF", [0x4D, 0x4D, 0x00, 0x2A], 0),
            ("HEIF/AVIF", Array("ftyp".utf8), 4),
        ]
        for (name, sig, at) in others where starts(sig, at: at) {
            throw FlamingoError.unsupported("\(name) images are not supported (JPEG and PNG are)")
        }
        throw FlamingoError.invalidFormat("not a JPEG or PNG image")
    }

    /// RGBImage from the shim's output, with the mode-specific source kept
    /// and EXIF orientation applied.
    static func makeImage(_ img: fsup_image) throws -> RGBImage {
        let w = Int(img.width), h = Int(img.height), c = Int(img.channels)
        guard w > 0, h > 0, (1...4).contains(c), let src = img.pixels else {
            throw FlamingoError.internal("image decoder returned an empty image")
        }
        let count = w * h
        let px = UnsafeBufferPointer(start: src, count: count * c)
        var rgb: [UInt8]
        var source: PillowSource
        switch Int(img.layout) {
        case FSUP_IMG_CMYK:
            rgb = PixelConvert.cmykToRGB(px, count: count)
            source = .cmyk(Array(px))
        case FSUP_IMG_GRAY_ALPHA, FSUP_IMG_RGBA:
            rgb = PixelConvert.toRGB(px, count: count, channels: c)
            source = .alpha(PixelConvert.alphaPlane(px, count: count, channels: c))
        default:
            rgb = PixelConvert.toRGB(px, count: count, channels: c)
            source = img.indexed != 0 ? .indexed : .rgb
        }

        func bytes(_ p: UnsafeMutablePointer<UInt8>?, _ n: Int) -> [UInt8]? {
            guard let p, n > 0 else { return nil }
            return Array(UnsafeBufferPointer(start: p, count: n))
        }
        let o = ExifOrientation.read(exif: bytes(img.exif, img.exif_size), xmp: bytes(img.xmp, img.xmp_size))
        guard o != 1 else { return RGBImage(width: w, height: h, pixels: rgb, source: source) }
        rgb = ExifOrientation.apply(o, to: rgb, width: w, height: h, channels: 3)
        switch source {
        case .alpha(let a): source = .alpha(ExifOrientation.apply(o, to: a, width: w, height: h, channels: 1))
        case .cmyk(let k): source = .cmyk(ExifOrientation.apply(o, to: k, width: w, height: h, channels: 4))
        case .rgb, .indexed: break
        }
        return o >= 5 ? RGBImage(width: h, height: w, pixels: rgb, source: source)
                      : RGBImage(width: w, height: h, pixels: rgb, source: source)
    }
}
