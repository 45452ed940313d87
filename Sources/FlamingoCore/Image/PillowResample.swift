// Pillow's resize (libImaging/Resample.c, Pillow 13) for 8-bit images,
// reproduced exactly: the reference preprocessing is torchvision's Resize on
// a PIL image, which is Pillow's. A plain float bicubic differs by one step
// on many pixels. What has to match:
// - coefficients computed in double with Pillow's operation order, support
//   2 * scale when downscaling (antialiasing), bounds rounded by truncation,
//   weights normalised to sum 1, then converted to 22-bit fixed point;
// - the source box passed as float (a side above 2^24 rounds);
// - horizontal pass first, rounded and clamped to uint8, then vertical;
// - a pass skipped when that side keeps its size.
// Only the window that the centre crop keeps is computed: each output pixel
// depends on its own coefficients alone, so this changes no value.

enum PillowResample {
    struct Window {
        var x: Int, y: Int, width: Int, height: Int
    }

    /// Pillow's PRECISION_BITS: 32 - 8 (result) - 2 (headroom for
    /// negative lobes and sums above 1).
    static let precisionBits: Int32 = 22

    /// Fixed-point taps for output positions `first ..< first + count` of a
    /// resize from `inSize` to `outSize`: for output j, source pixels
    /// start[j] ..< start[j] + length[j] with weights[j * ksize ...].
    struct Taps {
        var start: [Int]
        var length: [Int]
        var weights: [Int32]
        var ksize: Int
    }

    /// Pillow's bicubic_filter with a = -0.5, written in its operation order.
    @inline(__always)
    static func bicubic(_ x0: Double) -> Double {
        let a = -0.5
        let x = x0 < 0.0 ? -x0 : x0
        if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
        if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0.0
    }

    /// precompute_coeffs + normalize_coeffs_8bpc for a window of outputs.
    static func bicubicTaps(inSize: Int, outSize: Int, first: Int, count: Int) -> Taps {
        let in1 = Double(Float(inSize))        // box[2], a C float
        let scale = in1 / Double(outSize)      // (double)(in1 - in0) / outSize
        let filterscale = scale < 1.0 ? 1.0 : scale
        let support = 2.0 * filterscale        // BICUBIC.support * filterscale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        let ss = 1.0 / filterscale
        let one = Double(Int32(1) << precisionBits)

        var start = [Int](repeating: 0, count: count)
        var length = [Int](repeating: 0, count: count)
        var weights = [Int32](repeating: 0, count: count * ksize)
        var k = [Double](repeating: 0, count: ksize)
        for j in 0..<count {
            let xx = first + j
            let center = 0.0 + (Double(xx) + 0.5) * scale
            var xmin = Int(center - support + 0.5)
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            xmax = max(0, min(xmax, ksize)) // never binds; keeps indexing in range
            var ww = 0.0
            for x in 0..<xmax {
                let w = bicubic((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for x in 0..<xmax where ww != 0.0 { k[x] /= ww }
            for x in 0..<xmax {
                let v = k[x]
                weights[j * ksize + x] = v < 0 ? Int32(-0.5 + v * one) : Int32(0.5 + v * one)
            }
            start[j] = xmin
            length[j] = xmax
        }
        return Taps(start: start, length: length, weights: weights, ksize: ksize)
    }

    /// Pillow's clip8: the fixed-point sum shifted down, clamped to 0...255.
    @inline(__always)
    static func clip8(_ v: Int32) -> UInt8 {
        let x = v >> precisionBits
        return x <= 0 ? 0 : x >= 255 ? 255 : UInt8(truncatingIfNeeded: x)
    }

    /// Bicubic resize of an interleaved `channels`-byte image to
    /// outWidth x outHeight, returning only `window` of the result.
    static func bicubic(_ src: [UInt8], width: Int, height: Int, channels: Int,
                        outWidth: Int, outHeight: Int, window: Window) -> [UInt8] {
        let c = channels
        let needHorizontal = outWidth != width
        let needVertical = outHeight != height

        // Rows of the source (or of the horizontal pass) the window needs.
        let vtaps = needVertical ? bicubicTaps(inSize: height, outSize: outHeight, first: window.y, count: window.height) : nil
        var rowLo = window.y, rowHi = window.y + window.height
        if let v = vtaps {
            rowLo = Int.max; rowHi = 0
            for j in 0..<window.height where v.length[j] > 0 {
                rowLo = min(rowLo, v.start[j])
                rowHi = max(rowHi, v.start[j] + v.length[j])
            }
            if rowLo > rowHi { rowLo = 0; rowHi = 0 }
        }
        let rows = rowHi - rowLo
        let tw = window.width

        // Horizontal pass over rows rowLo..<rowHi, window columns only.
        var temp = [UInt8](repeating: 0, count: rows * tw * c)
        src.withUnsafeBufferPointer { s in
            temp.withUnsafeMutableBufferPointer { t in
                if !needHorizontal {
                    for r in 0..<rows {
                        let from = ((rowLo + r) * width + window.x) * c
                        for i in 0..<(tw * c) { t[r * tw * c + i] = s[from + i] }
                    }
                    return
                }
                let h = bicubicTaps(inSize: width, outSize: outWidth, first: window.x, count: tw)
                h.weights.withUnsafeBufferPointer { kk in
                    let half = Int32(1) << (precisionBits - 1)
                    for r in 0..<rows {
                        let row = (rowLo + r) * width * c
                        let outRow = r * tw * c
                        for j in 0..<tw {
                            let k = j * h.ksize
                            let n = h.length[j]
                            var p = row + h.start[j] * c
                            var s0 = half, s1 = half, s2 = half, s3 = half
                            if c == 4 {
                                for x in 0..<n {
                                    let w = kk[k + x]
                                    s0 &+= Int32(s[p]) &* w
                                    s1 &+= Int32(s[p + 1]) &* w
                                    s2 &+= Int32(s[p + 2]) &* w
                                    s3 &+= Int32(s[p + 3]) &* w
                                    p += 4
                                }
                                t[outRow + 4 * j + 3] = clip8(s3)
                            } else {
                                for x in 0..<n {
                                    let w = kk[k + x]
                                    s0 &+= Int32(s[p]) &* w
                                    s1 &+= Int32(s[p + 1]) &* w
                                    s2 &+= Int32(s[p + 2]) &* w
                                    p += 3
                                }
                            }
                            t[outRow + c * j] = clip8(s0)
                            t[outRow + c * j + 1] = clip8(s1)
                            t[outRow + c * j + 2] = clip8(s2)
                        }
                    }
                }
            }
        }
        guard let v = vtaps else { return temp }

        // Vertical pass: one accumulator per byte of an output row; integer
        // sums, so the order of the additions does not matter.
        let rowBytes = tw * c
        var out = [UInt8](repeating: 0, count: window.height * rowBytes)
        var acc = [Int32](repeating: 0, count: rowBytes)
        temp.withUnsafeBufferPointer { t in
            out.withUnsafeMutableBufferPointer { o in
                acc.withUnsafeMutableBufferPointer { a in
                    v.weights.withUnsafeBufferPointer { kk in
                        for i in 0..<window.height {
                            for b in 0..<rowBytes { a[b] = Int32(1) << (precisionBits - 1) }
                            for y in 0..<v.length[i] {
                                let w = kk[i * v.ksize + y]
                                let base = (v.start[i] + y - rowLo) * rowBytes
                                for b in 0..<rowBytes { a[b] &+= Int32(t[base + b]) &* w }
                            }
                            for b in 0..<rowBytes { o[i * rowBytes + b] = clip8(a[b]) }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Pillow's NEAREST resize (ImagingScaleAffine): source position
    /// accumulated in double from scale / 2 in steps of scale, truncated.
    static func nearest(_ src: [UInt8], width: Int, height: Int, channels: Int,
                        outWidth: Int, outHeight: Int, window: Window) -> [UInt8] {
        func table(inSize: Int, outSize: Int, first: Int, count: Int) -> [Int] {
            let a = Double(Float(inSize)) / Double(outSize)
            // Pillow accumulates; a window far out (sizes Pillow itself
            // could not allocate) starts from the product instead.
            let skip = first > 1 << 24 ? first : 0
            var pos = 0.0 + a * 0.5 + Double(skip) * a
            var t = [Int](repeating: -1, count: count)
            for x in skip..<(first + count) {
                // COORD(v): -1 below zero, else truncation; outside -> fill 0
                let xin = pos < 0.0 ? -1 : (pos < Double(inSize) ? Int(pos) : inSize)
                if x >= first { t[x - first] = xin < inSize ? xin : -1 }
                pos += a
            }
            return t
        }
        let xs = table(inSize: width, outSize: outWidth, first: window.x, count: window.width)
        let ys = table(inSize: height, outSize: outHeight, first: window.y, count: window.height)
        let c = channels
        var out = [UInt8](repeating: 0, count: window.width * window.height * c)
        src.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for (i, yi) in ys.enumerated() where yi >= 0 {
                    for (j, xi) in xs.enumerated() where xi >= 0 {
                        for ch in 0..<c { o[(i * window.width + j) * c + ch] = s[(yi * width + xi) * c + ch] }
                    }
                }
            }
        }
        return out
    }

    /// A plain crop (no resize), `channels` bytes per pixel.
    static func crop(_ src: [UInt8], width: Int, channels: Int, window: Window) -> [UInt8] {
        let c = channels
        var out = [UInt8](repeating: 0, count: window.width * window.height * c)
        src.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<window.height {
                    let from = ((window.y + i) * width + window.x) * c
                    for b in 0..<(window.width * c) { o[i * window.width * c + b] = s[from + b] }
                }
            }
        }
        return out
    }
}
