/// Interleaved prompts: text with `<image>` markers plus one media item per
/// marker, in order (spec/00 §3). Media can come in any form a host has.
public enum MediaInput {
    /// A JPEG or PNG file.
    case file(String)
    /// JPEG or PNG bytes.
    case encoded([UInt8])
    /// Raw 8-bit pixels, 3 (RGB) or 4 (RGBA) channels, rows top to bottom.
    case raw([UInt8], width: Int, height: Int, channels: Int)
    /// An already preprocessed image, float32 [3, S, S] (CLIP-normalised).
    case pixels([Float])
    /// Visual tokens from an earlier encoding, [latents, dim].
    case visualTokens([Float])
    /// A video: its frames (images in any of the forms above), in order,
    /// sampled by the host (Flamingo samples 1 fps).
    case frames([MediaInput])
    /// A video as a directory of JPEG/PNG frames, taken in file-name order.
    case frameDirectory(String)
}

extension Flamingo {
    /// The CLIP input for one media item that needs the vision encoder, or
    /// nil when the item is already visual tokens.
    public func preprocess(_ item: MediaInput) throws -> [Float]? {
        let p = config.preprocess, s = p.imageSize
        func clip(_ image: RGBImage) throws -> [Float] {
            try CLIPPreprocess.apply(image, size: s, mean: p.mean, std: p.std)
        }
        switch item {
        case .file(let path): return try clip(ImageDecoder.decode(path: path))
        case .encoded(let bytes): return try bytes.withUnsafeBytes { try clip(ImageDecoder.decode($0)) }
        case .raw(let bytes, let w, let h, let ch):
            return try bytes.withUnsafeBytes { try clip(ImageDecoder.fromRaw($0, width: w, height: h, channels: ch)) }
        case .pixels(let px):
            guard px.count == 3 * s * s else {
                throw FlamingoError.invalidArgument("preprocessed pixels need 3×\(s)×\(s) = \(3 * s * s) values, got \(px.count)")
            }
            guard px.allSatisfy(\.isFinite) else { throw FlamingoError.invalidArgument("preprocessed pixels contain a non-finite value") }
            return px
        case .visualTokens: return nil
        case .frames, .frameDirectory:
            throw FlamingoError.invalidArgument("a video is not a single image")
        }
    }

    /// The frames of a media item (an image is a one-frame video).
    func frames(of item: MediaInput) throws -> [MediaInput] {
        switch item {
        case .frames(let list):
            guard !list.isEmpty else { throw FlamingoError.invalidArgument("a video needs at least one frame") }
            for frame in list { if case .frames = frame { throw FlamingoError.invalidArgument("a frame cannot itself be a video") } }
            return list
        case .frameDirectory(let dir):
            let names = try listDirectory(dir).filter {
                let n = $0.lowercased()
                return n.hasSuffix(".jpg") || n.hasSuffix(".jpeg") || n.hasSuffix(".png")
            }.sorted()
            guard !names.isEmpty else { throw FlamingoError.invalidArgument("\(dir) holds no .jpg/.jpeg/.png frames") }
            return names.map { .file(dir + "/" + $0) }
        default:
            return [item]
        }
    }

    /// Visual tokens [count · latents, dim] for the media items, in order:
    /// images and videos are decoded, preprocessed and encoded (item i gets
    /// media-time embedding i where the model has them); visual tokens are
    /// copied.
    public func visualTokens(for media: [MediaInput]) throws -> Buffer {
        let per = latentsPerMedia * visualWidth
        let out = Buffer(media.count * per)
        for (i, item) in media.enumerated() {
            try withContext("media \(i)") {
                if case .visualTokens(let v) = item {
                    guard v.count == per else {
                        throw FlamingoError.invalidArgument("visual tokens need \(latentsPerMedia)×\(visualWidth) = \(per) values, got \(v.count)")
                    }
                    guard v.allSatisfy(\.isFinite) else { throw FlamingoError.invalidArgument("visual tokens contain a non-finite value") }
                    v.withUnsafeBufferPointer { (out.p + i * per).update(from: $0.baseAddress!, count: per) }
                    return
                }
                let frames = try frames(of: item).enumerated().map { f, frame in
                    try withContext("frame \(f)") {
                        guard let px = try preprocess(frame) else { throw FlamingoError.invalidArgument("a frame must be an image") }
                        return Buffer(px)
                    }
                }
                let z = try withExtendedLifetime(frames) { try encodeMedia(frames: frames.map { UnsafePointer($0.p) }, mediaIndex: i) }
                (out.p + i * per).update(from: z.p, count: per)
            }
        }
        return out
    }

    /// Token ids of a prompt, checking that it has one `<image>` marker per
    /// media item.
    public func tokenize(prompt: String, mediaCount: Int) throws -> [Int] {
        guard let tokenizer else {
            throw FlamingoError.unsupported("the model directory has no \(config.tokenizerFile); text prompts need a tokenizer")
        }
        let ids = try tokenizer.encode(prompt)
        let markers = ids.filter { $0 == config.tokens.image }.count
        guard markers == mediaCount else {
            throw FlamingoError.invalidArgument("the prompt has \(markers) <image> marker(s) but \(mediaCount) media item(s) were given")
        }
        return ids
    }
}

extension TokenSequence {
    /// Replaces the sequence with `prompt` and its media and evaluates it;
    /// returns the prompt's logits (last position, or all). Everything that
    /// can fail is checked before the sequence changes.
    @discardableResult
    public func setPrompt(_ prompt: String, media: [MediaInput], allLogits: Bool = false) throws -> Buffer {
        let ids = try flamingo.tokenize(prompt: prompt, mediaCount: media.count)
        guard !ids.isEmpty else { throw FlamingoError.invalidArgument("the prompt is empty") }
        guard ids.count <= cache.capacity else {
            throw FlamingoError.invalidArgument("the prompt has \(ids.count) tokens, more than the context of \(cache.capacity)")
        }
        let visual = try flamingo.visualTokens(for: media)
        try setMedia(visual.p, count: media.count)
        truncate(to: 0)
        return try evaluate(ids, allLogits: allLogits)
    }
}
