// flamingo_session_set_prompt with arbitrary UTF-8 (or not) and media counts on the
// mpt_tiny fixture: byte 0 gives the number of media items (0-7), byte 1 one bit per item
// choosing visual tokens of the right size or one float short; the rest is the prompt
// (up to its first NUL). Each input runs in a new session, which must stay usable.
import CFlamingoSupport
import FlamingoCAPI
import FuzzSupport
import Glibc

private let tokenFloats = Int(tinyInfo.num_latents) * Int(tinyInfo.visual_dim)
private let visual = [Float](repeating: 0.25, count: tokenFloats)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = input(data, size)
    guard bytes.count >= 2 else { return 0 }
    let count = Int(bytes[0] & 7), shortMask = bytes[1]
    var prompt = Array(bytes[2...].prefix { $0 != 0 }).map { CChar(bitPattern: $0) }
    prompt.append(0)
    var session: OpaquePointer?
    guard capiSessionInit(tinyModel, nil, &session) == 0, let session else { abort() }
    defer { capiSessionFree(session) }
    var logits = [Float](repeating: 0, count: Int(tinyInfo.vocab_size))
    visual.withUnsafeBufferPointer { v in
        var media = (0..<count).map { i in
            var m = flamingo_media()
            m.struct_size = UInt32(MemoryLayout<flamingo_media>.size)
            m.kind = flamingo_media_kind(FLAMINGO_MEDIA_VISUAL_TOKENS)
            m.data = UnsafeRawPointer(v.baseAddress)
            m.size = tokenFloats - Int((shortMask >> i) & 1)
            return m
        }
        let status = capiSessionSetPrompt(session, prompt, &media, count, &logits, logits.count)
        expectDocumentedStatus(status, "flamingo_session_set_prompt")
        // Still usable: a one-token continuation evaluates or fails cleanly.
        var token: Int32 = 1
        expectDocumentedStatus(capiSessionEval(session, &token, 1, 0, &logits, logits.count), "flamingo_session_eval")
    }
    return 0
}
