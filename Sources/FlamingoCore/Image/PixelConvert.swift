// Pillow's per-pixel mode conversions (libImaging/Convert.c), bit for bit,
// so that images decoded in another mode than RGB end up as the reference's
// `convert("RGB")` makes them. Verified exhaustively against Pillow 13 over
// all input pairs by tools/reference/make_image_goldens.py's checks.

/// Pillow's MULDIV255: a * b / 255 rounded, with its exact shift formula.
@inline(__always)
func mulDiv255(_ a: Int32, _ b: Int32) -> Int32 {
    let t = a &* b &+ 128
    return ((t >> 8) &+ t) >> 8
}

enum PixelConvert {
    /// Expands `channels`-byte pixels into RGB: 1 = gray ("L" -> "RGB"
    /// replicates), 2 = gray + alpha, 3 = RGB, 4 = RGBA (alpha dropped, as
    /// Pillow's "RGBA" -> "RGB" does: no compositing).
    static func toRGB(_ src: UnsafeBufferPointer<UInt8>, count: Int, channels: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count * 3) { out, initialized in
            for i in 0..<count {
                let p = i * channels
                if channels < 3 {
                    let g = src[p]
                    out[3 * i] = g; out[3 * i + 1] = g; out[3 * i + 2] = g
                } else {
                    out[3 * i] = src[p]; out[3 * i + 1] = src[p + 1]; out[3 * i + 2] = src[p + 2]
                }
            }
            initialized = count * 3
        }
    }

    /// The last byte of each `channels`-byte pixel (the alpha plane).
    static func alphaPlane(_ src: UnsafeBufferPointer<UInt8>, count: Int, channels: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { out, initialized in
            for i in 0..<count { out[i] = src[i * channels + channels - 1] }
            initialized = count
        }
    }

    /// Pillow's cmyk2rgb: each colour is (255 - K) - C * (255 - K) / 255.
    static func cmykToRGB(_ src: UnsafeBufferPointer<UInt8>, count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count * 3) { out, initialized in
            for i in 0..<count {
                let nk = 255 - Int32(src[4 * i + 3])
                for c in 0..<3 {
                    let v = nk - mulDiv255(Int32(src[4 * i + c]), nk)
                    out[3 * i + c] = UInt8(clamping: v)
                }
            }
            initialized = count * 3
        }
    }

    /// "RGBA" -> "RGBa" (rgbA2rgba): colours multiplied by alpha, four bytes
    /// per pixel, from separate RGB and alpha planes.
    static func premultiply(rgb: [UInt8], alpha: [UInt8]) -> [UInt8] {
        let count = alpha.count
        return [UInt8](unsafeUninitializedCapacity: count * 4) { out, initialized in
            rgb.withUnsafeBufferPointer { c in
                alpha.withUnsafeBufferPointer { a in
                    for i in 0..<count {
                        let al = Int32(a[i])
                        out[4 * i] = UInt8(truncatingIfNeeded: mulDiv255(Int32(c[3 * i]), al))
                        out[4 * i + 1] = UInt8(truncatingIfNeeded: mulDiv255(Int32(c[3 * i + 1]), al))
                        out[4 * i + 2] = UInt8(truncatingIfNeeded: mulDiv255(Int32(c[3 * i + 2]), al))
                        out[4 * i + 3] = a[i]
                    }
                }
            }
            initialized = count * 4
        }
    }

    /// "RGBa" -> "RGBA" -> "RGB" (rgba2rgbA, then the alpha is dropped):
    /// colours divided by alpha with truncation, left alone where alpha is
    /// 0 or 255.
    static func unpremultiplyToRGB(_ src: [UInt8]) -> [UInt8] {
        let count = src.count / 4
        return [UInt8](unsafeUninitializedCapacity: count * 3) { out, initialized in
            src.withUnsafeBufferPointer { s in
                for i in 0..<count {
                    let al = Int32(s[4 * i + 3])
                    for c in 0..<3 {
                        let v = Int32(s[4 * i + c])
                        out[3 * i + c] = al == 255 || al == 0 ? UInt8(v) : UInt8(clamping: (255 * v) / al)
                    }
                }
            }
            initialized = count * 3
        }
    }
}
