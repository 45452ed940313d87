// A decoded image. `pixels` is what a caller sees: 8-bit RGB, as the
// reference's `convert("RGB")` would give for the unresized image. The
// reference (open_clip's eval transform on a PIL image) resizes *before*
// converting to RGB, in the mode Pillow opened the file in, and for some
// modes that gives different pixels; `source` keeps what is needed to
// resize exactly as it does (see CLIPPreprocess).

/// How Pillow holds an image before `convert("RGB")`, as far as resizing
/// is concerned.
enum PillowSource: Sendable, Equatable {
    /// "RGB" or "L": resampled as they are ("L" is three equal channels).
    case rgb
    /// "P" or "1": Pillow resizes these with nearest neighbour whatever
    /// filter was asked for.
    case indexed
    /// "RGBA" or "LA": resampled premultiplied ("RGBa"), then un-premultiplied;
    /// the straight alpha plane, one byte per pixel, lives here.
    case alpha([UInt8])
    /// "CMYK" (JPEG): resampled in CMYK, converted to RGB afterwards; four
    /// bytes per pixel.
    case cmyk([UInt8])
}

public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    /// RGB interleaved, row by row, width * height * 3 bytes. Changing it
    /// drops the decoder's source representation: the image is then
    /// resampled as plain RGB.
    public var pixels: [UInt8] { didSet { source = .rgb } }
    var source: PillowSource

    /// An RGB image from interleaved pixels (width * height * 3 bytes).
    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width > 0, height > 0 else {
            throw FlamingoError.invalidArgument("image size \(width)x\(height) must be positive")
        }
        guard let n = byteCount(width, height, 3), pixels.count == n else {
            throw FlamingoError.invalidArgument("\(width)x\(height) RGB image needs \(width)x\(height)x3 bytes, got \(pixels.count)")
        }
        self.init(width: width, height: height, pixels: pixels, source: .rgb)
    }

    init(width: Int, height: Int, pixels: [UInt8], source: PillowSource) {
        self.width = width
        self.height = height
        self.pixels = pixels
        self.source = source
    }

    /// True when the pixels, and any source planes, have the sizes the
    /// dimensions call for (`pixels` is public and mutable).
    var isConsistent: Bool {
        guard width > 0, height > 0, let n = byteCount(width, height, 3), pixels.count == n else { return false }
        switch source {
        case .rgb, .indexed: return true
        case .alpha(let a): return a.count == width * height
        case .cmyk(let c): return c.count == width * height * 4
        }
    }
}

/// a * b * c, or nil on overflow.
func byteCount(_ a: Int, _ b: Int, _ c: Int) -> Int? {
    let (ab, o1) = a.multipliedReportingOverflow(by: b)
    let (abc, o2) = ab.multipliedReportingOverflow(by: c)
    return o1 || o2 ? nil : abc
}
