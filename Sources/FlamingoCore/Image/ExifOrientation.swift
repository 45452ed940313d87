// EXIF orientation, read and applied as Pillow's ImageOps.exif_transpose
// does. open_clip itself never calls exif_transpose; libflamingo does (a
// photo taken in portrait should be seen upright), and its reference
// goldens apply exif_transpose before open_clip's transform.
//
// Reading follows Pillow's getexif(): the Exif block is a small TIFF file
// ("Exif\0\0" prefixes stripped); the Orientation tag (0x0112) of IFD0 is
// used when present, the first entry of that tag winning; only when it is
// absent does an XMP packet's `tiff:Orientation` count. A damaged block
// gives no orientation here (Pillow may raise instead).

enum ExifOrientation {
    /// The orientation (1...8) Pillow's exif_transpose would act on; 1 when
    /// there is none or it is not one of 2...8.
    static func read(exif: [UInt8]?, xmp: [UInt8]?) -> Int {
        switch exif.map(tiffOrientation) ?? .absent {
        case .value(let v): return (2...8).contains(v) ? v : 1
        case .unusable: return 1
        case .absent:
            if let xmp, let v = xmpOrientation(xmp), (2...8).contains(v) { return v }
            return 1
        }
    }

    enum Lookup: Equatable { case absent, unusable, value(Int) }

    /// IFD0's Orientation, parsed as Pillow's ImageFileDirectory_v2.load.
    static func tiffOrientation(_ raw: [UInt8]) -> Lookup {
        var d = raw[...]
        let prefix: [UInt8] = [0x45, 0x78, 0x69, 0x66, 0, 0] // "Exif\0\0"
        for _ in 0..<2 where d.starts(with: prefix) { d = d.dropFirst(6) }
        let b = Array(d)
        guard b.count >= 8 else { return .absent }
        let little: Bool
        if b[0] == 0x49, b[1] == 0x49, b[2] == 0x2A, b[3] == 0 { little = true }
        else if b[0] == 0x4D, b[1] == 0x4D, b[2] == 0, b[3] == 0x2A { little = false }
        else { return .absent }

        func u16(_ o: Int) -> Int {
            little ? Int(b[o]) | Int(b[o + 1]) << 8 : Int(b[o]) << 8 | Int(b[o + 1])
        }
        func u32(_ o: Int) -> Int {
            little ? u16(o) | u16(o + 2) << 16 : u16(o) << 16 | u16(o + 2)
        }
        func u64(_ o: Int) -> UInt64 {
            let lo = UInt64(u32(little ? o : o + 4)), hi = UInt64(u32(little ? o + 4 : o))
            return hi << 32 | lo
        }

        let ifd = u32(4)
        guard ifd <= b.count - 2 else { return .absent }
        let n = u16(ifd)
        var seen = Set<Int>()
        var total = 0
        for i in 0..<n {
            let e = ifd + 2 + 12 * i
            guard e <= b.count - 12 else { break }          // short read ends the IFD
            let tag = u16(e), type = u16(e + 2), count = u32(e + 4)
            if seen.contains(tag) { continue }
            guard let unit = unitSize[type] else { continue } // unknown type: skipped
            let size = count * unit
            var at = e + 8
            if size > 4 {
                let offset = u32(e + 8)
                total += size
                if total > b.count { continue }                 // "tag data larger than file"
                guard offset <= b.count - size else { break }   // truncated read ends the IFD
                at = offset
            }
            if size == 0 { continue }
            seen.insert(tag)
            guard tag == 0x0112 else { continue }
            let v: Double
            switch type {
            case 3: v = Double(u16(at))
            case 4, 13: v = Double(u32(at))
            case 6: v = Double(Int8(bitPattern: b[at]))
            case 8: v = Double(Int16(truncatingIfNeeded: u16(at)))
            case 9: v = Double(Int32(truncatingIfNeeded: u32(at)))
            case 16: v = Double(u64(at))
            case 5: v = Double(u32(at)) / Double(u32(at + 4))
            case 10: v = Double(Int32(truncatingIfNeeded: u32(at))) / Double(Int32(truncatingIfNeeded: u32(at + 4)))
            case 11: v = Double(Float(bitPattern: UInt32(truncatingIfNeeded: u32(at))))
            case 12: v = Double(bitPattern: u64(at))
            default: return .unusable                              // bytes or text
            }
            guard v.isFinite, v == v.rounded(), abs(v) < 1e9 else { return .unusable }
            return .value(Int(v))
        }
        return .absent
    }

    /// Pillow's TIFF field types with their sizes (_load_dispatch).
    static let unitSize: [Int: Int] = [1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4,
                                       10: 8, 11: 4, 12: 8, 13: 4, 16: 8]

    /// The first match of Pillow's `tiff:Orientation(="|>)([0-9])`.
    static func xmpOrientation(_ x: [UInt8]) -> Int? {
        let key = Array("tiff:Orientation".utf8)
        guard x.count > key.count + 1 else { return nil }
        var i = 0
        while i + key.count + 1 < x.count {
            if x[i] == key[0], x[i..<(i + key.count)].elementsEqual(key) {
                var j = i + key.count
                if x[j] == UInt8(ascii: "=") {
                    j += 1
                    if j + 1 < x.count, x[j] == UInt8(ascii: "\""), (48...57).contains(x[j + 1]) { return Int(x[j + 1]) - 48 }
                } else if x[j] == UInt8(ascii: ">"), j + 1 < x.count, (48...57).contains(x[j + 1]) {
                    return Int(x[j + 1]) - 48
                }
            }
            i += 1
        }
        return nil
    }

    /// Applies orientation `o` to an interleaved `channels`-byte image:
    /// Pillow's transpose for exif_transpose's table (2 FLIP_LEFT_RIGHT,
    /// 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE, 6 ROTATE_270,
    /// 7 TRANSVERSE, 8 ROTATE_90). Sides swap for 5...8.
    static func apply(_ o: Int, to src: [UInt8], width w: Int, height h: Int, channels c: Int) -> [UInt8] {
        guard (2...8).contains(o) else { return src }
        let ow = o >= 5 ? h : w
        var out = [UInt8](repeating: 0, count: src.count)
        src.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { d in
                for y in 0..<(o >= 5 ? w : h) {
                    for x in 0..<ow {
                        // source pixel (sx, sy) of output pixel (x, y)
                        let sx: Int, sy: Int
                        switch o {
                        case 2: sx = w - 1 - x; sy = y
                        case 3: sx = w - 1 - x; sy = h - 1 - y
                        case 4: sx = x; sy = h - 1 - y
                        case 5: sx = y; sy = x
                        case 6: sx = y; sy = h - 1 - x
                        case 7: sx = w - 1 - y; sy = h - 1 - x
                        default: sx = w - 1 - y; sy = x
                        }
                        let from = (sy * w + sx) * c, to = (y * ow + x) * c
                        for k in 0..<c { d[to + k] = s[from + k] }
                    }
                }
            }
        }
        return out
    }
}
