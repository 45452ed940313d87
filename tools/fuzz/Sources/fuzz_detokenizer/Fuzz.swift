// The streaming detokenizer of the mpt_tiny fixture: the input, read as little-endian
// 16-bit values, is a stream of token ids (ids past the vocabulary included), pushed one
// by one into small and large output buffers, then flushed; the whole list also goes
// through flamingo_detokenize. Byte 0 chooses skip-special and the buffer size.
import CFlamingoSupport
import FlamingoCAPI
import FuzzSupport
import Glibc

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let bytes = input(data, size)
    guard bytes.count >= 1 else { return 0 }
    let flags = UInt32(bytes[0] & 1), capacity = bytes[0] & 2 != 0 ? 3 : 256
    var ids: [Int32] = []
    var i = 1
    while i + 1 < bytes.count { ids.append(Int32(Int16(bitPattern: UInt16(bytes[i]) | UInt16(bytes[i + 1]) << 8))); i += 2 }
    var d: OpaquePointer?
    guard capiDetokenizerInit(tinyModel, flags, &d) == 0, let d else { abort() }
    defer { capiDetokenizerFree(d) }
    var out = [CChar](repeating: 0, count: capacity)
    var length = 0
    for id in ids {
        expectDocumentedStatus(capiDetokenizerPush(d, id, &out, capacity, &length), "flamingo_detokenizer_push")
    }
    expectDocumentedStatus(capiDetokenizerFlush(d, &out, capacity, &length), "flamingo_detokenizer_flush")
    var all = [CChar](repeating: 0, count: 4 * ids.count + 16)
    expectDocumentedStatus(capiDetokenize(tinyModel, ids, ids.count, flags, &all, all.count, &length), "flamingo_detokenize")
    return 0
}
