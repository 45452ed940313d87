// JPEG and PNG decoding from memory (EXIF orientation, grayscale/CMYK/alpha conversion),
// then CLIP's resize and centre crop. The pixel limit is lowered to 4 Mpx so that inputs
// declaring huge images fail fast instead of dominating the run.
import FlamingoCore
import FuzzSupport

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    expectCleanError {
        let image = try ImageDecoder.decode(input(data, size), maxPixels: 1 << 22)
        _ = try CLIPPreprocess.resizeAndCrop(image, size: 32)
    }
    return 0
}
