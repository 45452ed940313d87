// CLIP image preprocessing exactly as OpenFlamingo's reference: open_clip
// 2.20 image_transform(size, is_train=False) =
//   Resize(size, BICUBIC) -> CenterCrop(size) -> convert("RGB") -> ToTensor
//   -> Normalize(mean, std)
// on a PIL image (spec/60 §1). Resize and crop happen in the image's Pillow
// mode, before the RGB conversion; see RGBImage.source.

public enum CLIPPreprocess {
    /// open_clip's OPENAI_DATASET_MEAN / OPENAI_DATASET_STD.
    public static let openAIMean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let openAIStd: [Float] = [0.26862954, 0.26130258, 0.27577711]

    /// The model input for one image: float32 [3, size, size], planar,
    /// (v / 255 - mean[c]) / std[c], computed in float32 as torch does.
    public static func apply(_ image: RGBImage, size: Int, mean: [Float] = openAIMean,
                             std: [Float] = openAIStd) throws -> [Float] {
        guard mean.count == 3, std.count == 3 else {
            throw FlamingoError.invalidArgument("mean and std need 3 values each, got \(mean.count) and \(std.count)")
        }
        let crop = try resizeAndCrop(image, size: size)
        let plane = size * size
        var out = [Float](repeating: 0, count: 3 * plane)
        crop.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for c in 0..<3 {
                    let m = mean[c], s = std[c]
                    for i in 0..<plane { o[c * plane + i] = (Float(p[3 * i + c]) / 255 - m) / s }
                }
            }
        }
        return out
    }

    /// The 8-bit RGB crop, [size, size, 3] interleaved, before ToTensor and
    /// Normalize.
    public static func resizeAndCrop(_ image: RGBImage, size: Int) throws -> [UInt8] {
        guard size > 0, size <= 1 << 15 else { throw FlamingoError.invalidArgument("image size \(size) out of range") }
        guard image.isConsistent else {
            throw FlamingoError.invalidArgument("image buffer does not match its \(image.width)x\(image.height) size")
        }
        let w = image.width, h = image.height
        let (rw, rh) = resizedSize(width: w, height: h, size: size)
        let win = PillowResample.Window(x: cropOffset(rw, size), y: cropOffset(rh, size), width: size, height: size)

        if rw == w && rh == h { // torchvision and Pillow leave the image as it is
            return PillowResample.crop(image.pixels, width: w, channels: 3, window: win)
        }
        switch image.source {
        case .rgb:
            return PillowResample.bicubic(image.pixels, width: w, height: h, channels: 3,
                                          outWidth: rw, outHeight: rh, window: win)
        case .indexed:
            return PillowResample.nearest(image.pixels, width: w, height: h, channels: 3,
                                          outWidth: rw, outHeight: rh, window: win)
        case .alpha(let a):
            let rgba = PillowResample.bicubic(PixelConvert.premultiply(rgb: image.pixels, alpha: a),
                                              width: w, height: h, channels: 4,
                                              outWidth: rw, outHeight: rh, window: win)
            return PixelConvert.unpremultiplyToRGB(rgba)
        case .cmyk(let k):
            let cmyk = PillowResample.bicubic(k, width: w, height: h, channels: 4,
                                              outWidth: rw, outHeight: rh, window: win)
            return cmyk.withUnsafeBufferPointer { PixelConvert.cmykToRGB($0, count: size * size) }
        }
    }

    /// torchvision's Resize(size) output: the shorter side becomes `size`,
    /// the longer one int(size * long / short), truncated.
    static func resizedSize(width w: Int, height h: Int, size: Int) -> (width: Int, height: Int) {
        let short = min(w, h), long = max(w, h)
        let newLong = Int(Double(size * long) / Double(short))
        return w <= h ? (size, newLong) : (newLong, size)
    }

    /// torchvision's CenterCrop offset: int(round((n - size) / 2.0)),
    /// Python's round-half-to-even.
    static func cropOffset(_ n: Int, _ size: Int) -> Int {
        Int((Double(n - size) / 2.0).rounded(.toNearestOrEven))
    }
}
