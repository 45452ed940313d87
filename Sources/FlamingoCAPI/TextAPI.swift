// Tokenizer, media and prompts through the C ABI (include/flamingo.h).
import CFlamingoSupport
import FlamingoCore
import Glibc

func tokenizer(_ f: Flamingo) throws -> Tokenizer {
    guard let t = f.tokenizer else {
        throw FlamingoError.unsupported("the model directory has no \(f.config.tokenizerFile)")
    }
    return t
}

/// A Swift string from caller bytes, which must be valid UTF-8.
func utf8String(_ p: UnsafePointer<CChar>, count: Int, _ what: String) throws -> String {
    let bytes = UnsafeRawBufferPointer(start: p, count: count).bindMemory(to: UInt8.self)
    guard let s = String(validating: bytes, as: UTF8.self) else {
        throw FlamingoError.invalidArgument("\(what) is not valid UTF-8")
    }
    return s
}

/// Writes `text` with a terminating NUL into a caller buffer, truncated to
/// fit (snprintf rule).
func writeText(_ text: String, _ out: UnsafeMutablePointer<CChar>?, _ capacity: Int) {
    guard let out, capacity > 0 else { return }
    let bytes = Array(text.utf8)
    let n = min(bytes.count, capacity - 1)
    for i in 0..<n { out[i] = CChar(bitPattern: bytes[i]) }
    out[n] = 0
}

@c(flamingo_tokenize)
public func capiTokenize(_ model: OpaquePointer?, _ text: UnsafePointer<CChar>?, _ length: Int, _ flags: UInt32,
                         _ out: UnsafeMutablePointer<Int32>?, _ capacity: Int, _ outCount: UnsafeMutablePointer<Int>?) -> Int32 {
    capi("flamingo_tokenize") {
        let t = try tokenizer(try models.get(model).flamingo)
        guard let text, let outCount else { throw FlamingoError.invalidArgument("text or out_count is NULL") }
        guard length >= 0 else { throw FlamingoError.invalidArgument("text_len is negative") }
        guard flags & ~UInt32(FLAMINGO_TOKENIZE_ADD_SPECIAL) == 0 else { throw FlamingoError.invalidArgument("unknown flags \(flags)") }
        guard capacity == 0 || out != nil else { throw FlamingoError.invalidArgument("out_tokens is NULL") }
        let ids = try t.encode(try utf8String(text, count: length, "text"),
                               addSpecialTokens: flags & UInt32(FLAMINGO_TOKENIZE_ADD_SPECIAL) != 0)
        for i in 0..<min(capacity, ids.count) { out![i] = Int32(ids[i]) }
        outCount.pointee = ids.count
    }
}

/// Token ids from a caller array, checked against the model's vocabulary.
func tokenIds(_ p: UnsafePointer<Int32>?, _ n: Int, _ f: Flamingo) throws -> [Int] {
    guard n >= 0 else { throw FlamingoError.invalidArgument("n_tokens is negative") }
    guard n == 0 || p != nil else { throw FlamingoError.invalidArgument("tokens is NULL") }
    return (0..<n).map { Int(p![$0]) }
}

@c(flamingo_detokenize)
public func capiDetokenize(_ model: OpaquePointer?, _ tokens: UnsafePointer<Int32>?, _ n: Int, _ flags: UInt32,
                           _ out: UnsafeMutablePointer<CChar>?, _ capacity: Int, _ outLen: UnsafeMutablePointer<Int>?) -> Int32 {
    capi("flamingo_detokenize") {
        let f = try models.get(model).flamingo
        let t = try tokenizer(f)
        guard let outLen else { throw FlamingoError.invalidArgument("out_len is NULL") }
        guard flags & ~UInt32(FLAMINGO_DETOKENIZE_SKIP_SPECIAL) == 0 else { throw FlamingoError.invalidArgument("unknown flags \(flags)") }
        guard capacity == 0 || out != nil else { throw FlamingoError.invalidArgument("out_text is NULL") }
        let text = try t.decode(try tokenIds(tokens, n, f), skipSpecialTokens: flags & UInt32(FLAMINGO_DETOKENIZE_SKIP_SPECIAL) != 0)
        writeText(text, out, capacity)
        outLen.pointee = text.utf8.count
    }
}

/// What a flamingo_detokenizer* points to.
final class DetokenizerHandle {
    let decoder: StreamDecoder
    /// Text completed by a token whose push failed for lack of room (token
    /// -1: a refused flush).
    var pending: (token: Int, text: String)?
    init(_ d: StreamDecoder) { decoder = d }
}

let detokenizers = HandleRegistry<DetokenizerHandle>("flamingo_detokenizer")

@c(flamingo_detokenizer_init)
public func capiDetokenizerInit(_ model: OpaquePointer?, _ flags: UInt32, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi("flamingo_detokenizer_init") {
        let t = try tokenizer(try models.get(model).flamingo)
        guard let out else { throw FlamingoError.invalidArgument("out_detokenizer is NULL") }
        guard flags & ~UInt32(FLAMINGO_DETOKENIZE_SKIP_SPECIAL) == 0 else { throw FlamingoError.invalidArgument("unknown flags \(flags)") }
        out.pointee = detokenizers.register(DetokenizerHandle(
            t.makeStreamDecoder(skipSpecialTokens: flags & UInt32(FLAMINGO_DETOKENIZE_SKIP_SPECIAL) != 0)))
    }
}

@c(flamingo_detokenizer_free)
public func capiDetokenizerFree(_ d: OpaquePointer?) { detokenizers.release(d) }

@c(flamingo_detokenizer_push)
public func capiDetokenizerPush(_ d: OpaquePointer?, _ token: Int32, _ out: UnsafeMutablePointer<CChar>?,
                                _ capacity: Int, _ outLen: UnsafeMutablePointer<Int>?) -> Int32 {
    capi("flamingo_detokenizer_push") {
        let h = try detokenizers.get(d)
        guard let out, let outLen else { throw FlamingoError.invalidArgument("out_text or out_len is NULL") }
        // A token refused for lack of room was already decoded: replay it.
        let text: String
        if let p = h.pending, p.token == Int(token) {
            text = p.text
        } else {
            text = try h.decoder.push(Int(token))
        }
        let n = text.utf8.count
        guard capacity > n else {
            h.pending = (Int(token), text)
            throw FlamingoError.bufferTooSmall("the text needs \(n + 1) bytes, out_text has \(capacity)")
        }
        h.pending = nil
        writeText(text, out, capacity)
        outLen.pointee = n
    }
}

@c(flamingo_detokenizer_flush)
public func capiDetokenizerFlush(_ d: OpaquePointer?, _ out: UnsafeMutablePointer<CChar>?, _ capacity: Int,
                                 _ outLen: UnsafeMutablePointer<Int>?) -> Int32 {
    capi("flamingo_detokenizer_flush") {
        let h = try detokenizers.get(d)
        guard let out, let outLen else { throw FlamingoError.invalidArgument("out_text or out_len is NULL") }
        // A flush refused for lack of room already drained the decoder: replay it.
        let text: String
        if let p = h.pending, p.token == -1 { text = p.text } else { text = try h.decoder.flush() }
        let n = text.utf8.count
        guard capacity > n else {
            h.pending = (-1, text)
            throw FlamingoError.bufferTooSmall("the text needs \(n + 1) bytes, out_text has \(capacity)")
        }
        h.pending = nil
        writeText(text, out, capacity)
        outLen.pointee = n
    }
}

/// A C media item as the engine's MediaInput.
func mediaInput(_ m: flamingo_media, _ f: Flamingo, index i: Int, depth: Int = 0) throws -> MediaInput {
    let pixels = 3 * f.config.vision.imageSize * f.config.vision.imageSize
    func floats(_ expected: Int, _ what: String) throws -> [Float] {
        guard let data = m.data else { throw FlamingoError.invalidArgument("media \(i): data is NULL") }
        guard m.size == expected else { throw FlamingoError.invalidArgument("media \(i): \(what) need \(expected) floats, size is \(m.size)") }
        return Array(UnsafeBufferPointer(start: data.assumingMemoryBound(to: Float.self), count: expected))
    }
    func bytes() throws -> [UInt8] {
        guard let data = m.data else { throw FlamingoError.invalidArgument("media \(i): data is NULL") }
        guard m.size > 0 && m.size <= 1 << 31 else { throw FlamingoError.invalidArgument("media \(i): size \(m.size) is out of range") }
        return Array(UnsafeRawBufferPointer(start: data, count: Int(m.size)))
    }
    switch Int(m.kind) {
    case FLAMINGO_MEDIA_FILE:
        guard let path = m.path else { throw FlamingoError.invalidArgument("media \(i): path is NULL") }
        guard let s = String(validatingCString: path) else { throw FlamingoError.invalidArgument("media \(i): path is not valid UTF-8") }
        return .file(s)
    case FLAMINGO_MEDIA_ENCODED:
        return .encoded(try bytes())
    case FLAMINGO_MEDIA_RGB:
        return .raw(try bytes(), width: Int(m.width), height: Int(m.height), channels: Int(m.channels))
    case FLAMINGO_MEDIA_PIXELS:
        return .pixels(try floats(pixels, "preprocessed pixels"))
    case FLAMINGO_MEDIA_VISUAL_TOKENS:
        return .visualTokens(try floats(f.latentsPerMedia * f.visualWidth, "visual tokens"))
    case FLAMINGO_MEDIA_FRAMES:
        guard depth == 0 else { throw FlamingoError.invalidArgument("media \(i): a frame cannot itself be a video") }
        guard m.size >= 1 && m.size <= 4096 else { throw FlamingoError.invalidArgument("media \(i): a video needs 1…4096 frames, size is \(m.size)") }
        return .frames(try mediaList(m.data, Int(m.size), f, depth: 1))
    case FLAMINGO_MEDIA_FRAME_DIR:
        guard let path = m.path, let s = String(validatingCString: path) else {
            throw FlamingoError.invalidArgument("media \(i): path is NULL or not valid UTF-8")
        }
        return .frameDirectory(s)
    default:
        throw FlamingoError.invalidArgument("media \(i): unknown kind \(m.kind)")
    }
}

/// The items of a caller media array (stride media[0].struct_size).
func mediaList(_ media: UnsafeRawPointer?, _ n: Int, _ f: Flamingo, depth: Int = 0) throws -> [MediaInput] {
    guard n > 0 else { return [] }
    guard n <= 4096 else { throw FlamingoError.invalidArgument("\(n) media items is more than 4096") }
    let (base, stride) = try checkedSize(media, MemoryLayout<flamingo_media>.size, "media")
    return try (0..<n).map { i in
        let item = base.advanced(by: i * stride)
        let size = Int(item.loadUnaligned(as: UInt32.self))
        guard size == stride else { throw FlamingoError.invalidArgument("media[\(i)].struct_size \(size) differs from media[0]'s \(stride)") }
        return try mediaInput(try readParams(item, flamingo_media(), "media[\(i)]"), f, index: i, depth: depth)
    }
}

@c(flamingo_session_set_prompt)
public func capiSessionSetPrompt(_ session: OpaquePointer?, _ prompt: UnsafePointer<CChar>?, _ media: UnsafeRawPointer?,
                                 _ n: Int, _ logits: UnsafeMutablePointer<Float>?, _ logitsCount: Int) -> Int32 {
    capi("flamingo_session_set_prompt") {
        let seq = try sessions.get(session).sequence
        guard let prompt else { throw FlamingoError.invalidArgument("prompt is NULL") }
        let text = try utf8String(prompt, count: strlen(prompt), "prompt")
        let items = try mediaList(media, n, seq.flamingo)
        let vocab = seq.flamingo.config.languageModel.vocabSize
        if logits != nil { try requireCapacity(logitsCount, vocab, "logits") }
        let result = try seq.setPrompt(text, media: items)
        logits?.update(from: result.p, count: vocab)
    }
}

@c(flamingo_model_preprocess_image)
public func capiModelPreprocessImage(_ model: OpaquePointer?, _ image: UnsafeRawPointer?,
                                     _ out: UnsafeMutablePointer<Float>?, _ outCount: Int) -> Int32 {
    capi("flamingo_model_preprocess_image") {
        let f = try models.get(model).flamingo
        guard let out else { throw FlamingoError.invalidArgument("out_pixels is NULL") }
        let item = try mediaInput(try readParams(image, flamingo_media(), "image"), f, index: 0)
        switch item {
        case .file, .encoded, .raw: break
        default: throw FlamingoError.invalidArgument("preprocessing needs a FILE, ENCODED or RGB image")
        }
        let s = f.config.vision.imageSize
        try requireCapacity(outCount, 3 * s * s, "out_pixels")
        guard let pixels = try f.preprocess(item) else { throw FlamingoError.internal("image item produced no pixels") }
        pixels.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: pixels.count) }
    }
}
