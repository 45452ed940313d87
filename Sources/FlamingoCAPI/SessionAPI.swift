// Sessions, media and generation through the C ABI (include/flamingo.h).
import CFlamingoSupport
import FlamingoCore

/// What a flamingo_session* points to. The sequence keeps the model graph
/// (and so the mapped weights) alive on its own.
final class SessionHandle {
    let sequence: TokenSequence
    init(_ s: TokenSequence) { sequence = s }
}

let sessions = HandleRegistry<SessionHandle>("flamingo_session")

/// Checks a caller buffer of `count` floats against `needed`.
func requireCapacity(_ count: Int, _ needed: Int, _ what: String) throws {
    guard count >= needed else {
        throw FlamingoError.bufferTooSmall("\(what) holds \(count) values, \(needed) are needed")
    }
}

/// Validates and copies pixels of `n` images for `flamingo`.
func encode(_ f: Flamingo, _ pixels: UnsafePointer<Float>?, _ n: Int) throws -> Buffer {
    guard let pixels else { throw FlamingoError.invalidArgument("pixels is NULL") }
    guard n > 0 && n <= 1024 else { throw FlamingoError.invalidArgument("n_images \(n) must be in 1…1024") }
    let s = f.config.vision.imageSize, count = n * 3 * s * s
    for i in 0..<count where !pixels[i].isFinite {
        throw FlamingoError.invalidArgument("pixel value \(i) is not finite")
    }
    return try f.encodeImages(pixels, count: n)
}

@c(flamingo_model_encode_images)
public func capiModelEncodeImages(_ model: OpaquePointer?, _ pixels: UnsafePointer<Float>?, _ n: Int,
                                  _ out: UnsafeMutablePointer<Float>?, _ outCount: Int) -> Int32 {
    capi("flamingo_model_encode_images") {
        let f = try models.get(model).flamingo
        guard let out else { throw FlamingoError.invalidArgument("out is NULL") }
        try requireCapacity(outCount, n * f.latentsPerMedia * f.visualWidth, "out")
        let visual = try encode(f, pixels, n)
        out.update(from: visual.p, count: visual.count)
    }
}

func defaultSessionParams() -> flamingo_session_params {
    var p = flamingo_session_params()
    p.struct_size = UInt32(MemoryLayout<flamingo_session_params>.size)
    p.n_ctx = 0
    return p
}

@c(flamingo_session_default_params)
public func capiSessionDefaultParams(_ params: UnsafeMutableRawPointer?, _ structSize: Int) -> Int32 {
    capi("flamingo_session_default_params") {
        try fillDefaults(params, structSize, defaultSessionParams(), "flamingo_session_params")
    }
}

@c(flamingo_session_init)
public func capiSessionInit(_ model: OpaquePointer?, _ params: UnsafeRawPointer?,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi("flamingo_session_init") {
        let f = try models.get(model).flamingo
        guard let out else { throw FlamingoError.invalidArgument("out_session is NULL") }
        let p = try readParams(params, defaultSessionParams(), "params")
        let maxLen = f.config.languageModel.maxSeqLen
        guard Int(p.n_ctx) <= maxLen else {
            throw FlamingoError.invalidArgument("n_ctx \(p.n_ctx) exceeds the model's max_seq_len \(maxLen)")
        }
        out.pointee = sessions.register(SessionHandle(try f.makeSequence(capacity: p.n_ctx == 0 ? maxLen : Int(p.n_ctx))))
    }
}

@c(flamingo_session_free)
public func capiSessionFree(_ session: OpaquePointer?) { sessions.release(session) }

@c(flamingo_session_copy)
public func capiSessionCopy(_ session: OpaquePointer?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    capi("flamingo_session_copy") {
        let s = try sessions.get(session)
        guard let out else { throw FlamingoError.invalidArgument("out_copy is NULL") }
        out.pointee = sessions.register(SessionHandle(try s.sequence.copy()))
    }
}

@c(flamingo_session_set_media)
public func capiSessionSetMedia(_ session: OpaquePointer?, _ visual: UnsafePointer<Float>?, _ n: Int) -> Int32 {
    capi("flamingo_session_set_media") {
        let seq = try sessions.get(session).sequence
        guard n >= 0 && n <= 1024 else { throw FlamingoError.invalidArgument("n_media \(n) must be in 0…1024") }
        if n == 0 { try seq.setMedia(nil, count: 0); return }
        guard let visual else { throw FlamingoError.invalidArgument("visual_tokens is NULL") }
        let count = n * seq.flamingo.latentsPerMedia * seq.flamingo.visualWidth
        for i in 0..<count where !visual[i].isFinite {
            throw FlamingoError.invalidArgument("visual token value \(i) is not finite")
        }
        try seq.setMedia(visual, count: n)
    }
}

@c(flamingo_session_set_images)
public func capiSessionSetImages(_ session: OpaquePointer?, _ pixels: UnsafePointer<Float>?, _ n: Int) -> Int32 {
    capi("flamingo_session_set_images") {
        let seq = try sessions.get(session).sequence
        let visual = try encode(seq.flamingo, pixels, n)
        try seq.setMedia(visual.p, count: n)
    }
}

@c(flamingo_session_eval)
public func capiSessionEval(_ session: OpaquePointer?, _ tokens: UnsafePointer<Int32>?, _ n: Int, _ flags: UInt32,
                            _ logits: UnsafeMutablePointer<Float>?, _ logitsCount: Int) -> Int32 {
    capi("flamingo_session_eval") {
        let seq = try sessions.get(session).sequence
        guard let tokens else { throw FlamingoError.invalidArgument("tokens is NULL") }
        guard n > 0 else { throw FlamingoError.invalidArgument("n_tokens is 0") }
        let all = flags & UInt32(FLAMINGO_EVAL_ALL_LOGITS) != 0
        guard flags & ~UInt32(FLAMINGO_EVAL_ALL_LOGITS) == 0 else { throw FlamingoError.invalidArgument("unknown flags \(flags)") }
        let vocab = seq.flamingo.config.languageModel.vocabSize
        if logits != nil { try requireCapacity(logitsCount, (all ? n : 1) * vocab, "logits") }
        let result = try seq.evaluate((0..<n).map { Int(tokens[$0]) }, allLogits: all && logits != nil)
        logits?.update(from: result.p, count: result.count)
    }
}

@c(flamingo_session_length)
public func capiSessionLength(_ session: OpaquePointer?, _ out: UnsafeMutablePointer<Int>?) -> Int32 {
    capi("flamingo_session_length") {
        let seq = try sessions.get(session).sequence
        guard let out else { throw FlamingoError.invalidArgument("out_length is NULL") }
        out.pointee = seq.length
    }
}

@c(flamingo_session_truncate)
public func capiSessionTruncate(_ session: OpaquePointer?, _ length: Int) -> Int32 {
    capi("flamingo_session_truncate") {
        let seq = try sessions.get(session).sequence
        guard length >= 0 && length <= seq.length else {
            throw FlamingoError.invalidArgument("length \(length) is beyond the sequence length \(seq.length)")
        }
        seq.truncate(to: length)
    }
}

func defaultGenerateParams() -> flamingo_generate_params {
    var p = flamingo_generate_params()
    p.struct_size = UInt32(MemoryLayout<flamingo_generate_params>.size)
    p.max_new_tokens = 20
    p.temperature = 1
    p.top_p = 1
    p.num_beams = 1
    p.length_penalty = 1
    p.repetition_penalty = 1
    p.stop_at_endofchunk = 1
    p.stop_at_eos = 1
    return p
}

@c(flamingo_generate_default_params)
public func capiGenerateDefaultParams(_ params: UnsafeMutableRawPointer?, _ structSize: Int) -> Int32 {
    capi("flamingo_generate_default_params") {
        try fillDefaults(params, structSize, defaultGenerateParams(), "flamingo_generate_params")
    }
}

/// The engine's decoding settings from the C params struct.
func generationConfig(_ p: flamingo_generate_params, _ f: Flamingo) -> GenerationConfig {
    let tokens = f.config.tokens
    var c = GenerationConfig()
    c.maxNewTokens = Int(p.max_new_tokens)
    c.minNewTokens = Int(p.min_new_tokens)
    c.doSample = p.do_sample != 0
    c.temperature = p.temperature
    c.topK = Int(p.top_k)
    c.topP = p.top_p
    c.seed = p.seed
    c.numBeams = Int(p.num_beams)
    c.lengthPenalty = p.length_penalty
    c.earlyStopping = p.early_stopping != 0
    c.noRepeatNgramSize = Int(p.no_repeat_ngram_size)
    c.repetitionPenalty = p.repetition_penalty
    if p.stop_at_endofchunk != 0 { c.stopTokens.append(tokens.endOfChunk) }
    if p.stop_at_eos != 0, let eos = tokens.eos, eos != tokens.endOfChunk { c.stopTokens.append(eos) }
    return c
}

@c(flamingo_batch_generate)
public func capiBatchGenerate(_ list: UnsafePointer<OpaquePointer?>?, _ n: Int, _ params: UnsafeRawPointer?,
                              _ out: UnsafeMutablePointer<Int32>?, _ capacity: Int,
                              _ outCounts: UnsafeMutablePointer<Int>?, _ outReasons: UnsafeMutablePointer<Int32>?) -> Int32 {
    capi("flamingo_batch_generate") {
        guard let list else { throw FlamingoError.invalidArgument("sessions is NULL") }
        guard n > 0 && n <= 4096 else { throw FlamingoError.invalidArgument("n_sessions \(n) must be in 1…4096") }
        let seqs = try (0..<n).map { try sessions.get(list[$0]).sequence }
        guard let first = seqs.first, seqs.allSatisfy({ $0.flamingo === first.flamingo }) else {
            throw FlamingoError.invalidArgument("the sessions belong to different models")
        }
        let p = try readParams(params, defaultGenerateParams(), "params")
        guard let out, let outCounts else { throw FlamingoError.invalidArgument("out_tokens or out_counts is NULL") }
        try requireCapacity(capacity, Int(p.max_new_tokens), "capacity per session")
        let results = try Generator.generate(batch: seqs, config: generationConfig(p, first.flamingo))
        for (i, r) in results.enumerated() {
            for (j, t) in r.tokens.enumerated() { out[i * capacity + j] = Int32(t) }
            outCounts[i] = r.tokens.count
            outReasons?[i] = r.stopReason.rawValue
        }
    }
}

@c(flamingo_session_generate)
public func capiSessionGenerate(_ session: OpaquePointer?, _ params: UnsafeRawPointer?,
                                _ out: UnsafeMutablePointer<Int32>?, _ capacity: Int,
                                _ outCount: UnsafeMutablePointer<Int>?, _ outReason: UnsafeMutablePointer<Int32>?) -> Int32 {
    capi("flamingo_session_generate") {
        let seq = try sessions.get(session).sequence
        let p = try readParams(params, defaultGenerateParams(), "params")
        guard let out, let outCount else { throw FlamingoError.invalidArgument("out_tokens or out_count is NULL") }
        try requireCapacity(capacity, Int(p.max_new_tokens), "out_tokens")
        let c = generationConfig(p, seq.flamingo)
        let callback = p.callback, user = p.callback_user_data
        let result = try Generator.generate(seq, config: c, onToken: callback.map { cb in { cb(Int32($0), user) == 0 } })
        for (i, t) in result.tokens.enumerated() { out[i] = Int32(t) }
        outCount.pointee = result.tokens.count
        outReason?.pointee = result.stopReason.rawValue
    }
}
