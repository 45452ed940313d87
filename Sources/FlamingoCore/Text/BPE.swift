// The BPE model of a tokenizer.json ("model": {"type": "BPE", ...}),
// reproducing HF `tokenizers` (models/bpe/model.rs and word.rs):
//   - a word is split into characters; each is a vocabulary id, else (with
//     byte_fallback) its UTF-8 bytes as "<0xNN>" tokens, else the unk token
//     (consecutive unknowns fused into one when fuse_unk), else dropped;
//   - pairs are merged lowest rank first, leftmost among equal ranks, with
//     the same priority queue HF uses;
//   - ignore_merges: a word that is itself in the vocabulary is one token.
// Results are cached per word. A long word (LLaMA's pre-tokeniser keeps a
// whole sentence as one word) is first cut where no merge can ever join its
// two sides, so its pieces are cached and merged independently.

final class BPEModel {
    /// Token bytes → id.
    let vocab: ByteTable
    /// id → token bytes (nil for ids the vocabulary skips).
    let tokens: [[UInt8]?]
    /// Number of vocabulary entries (HF's get_vocab_size, which numbers added tokens).
    let entryCount: Int
    private let merges: PairTable
    private let unkToken: [UInt8]?
    private let fuseUnk: Bool
    private let byteFallback: Bool
    private let ignoreMerges: Bool
    private let subwordPrefix: [UInt8]?
    private let wordSuffix: [UInt8]?
    /// id of "<0xNN>" for each byte, -1 when missing.
    private let byteTokens: [Int32]
    /// Character pairs (last scalar of a merge's left side, first scalar of
    /// its right side): a word may be cut between two characters only when
    /// their pair is absent, because no merge can then ever join the sides.
    private let joinable: PairTable
    private let canCut: Bool

    /// Characters of the Basic Multilingual Plane that are vocabulary entries
    /// (a long word is only cut between such characters).
    private let bmpInVocab: [Bool]

    /// Mutable state (word cache, scratch buffers), guarded by the owning
    /// Tokenizer's lock. withState moves it into a local for a whole encode
    /// call: touching class properties in the inner loops would cost a
    /// dynamic exclusivity check per access.
    struct State {
        var cache = ByteTable(capacity: 4096)
        var cacheIds: [Int32] = []
        var symbolIds: [Int32] = []
        var symbolLen: [Int32] = []
        var symbolPrev: [Int32] = []
        var symbolNext: [Int32] = []
        var heap: [UInt64] = []
        var piece: [UInt8] = []
        /// The pre-tokeniser's copy of the current piece.
        var text: [UInt8] = []
    }
    private var state: State? = State()

    /// Cached words before the cache is emptied (about 10 MB at most).
    private let cacheLimit = 200_000
    /// Words longer than this are not cached (HF: 256 characters).
    private static let maxCachedWord = 256
    /// Words at least this long are cut before merging (tests disable it to
    /// check the cut changes nothing).
    var cutThreshold = 48

    init(json m: TokenizerJSON) throws {
        if let d = m.field("dropout"), let p = d.value.double, p > 0 {
            throw FlamingoError.unsupported("tokenizer.json: model.dropout = \(p): BPE dropout is random, only 0 or null is supported")
        }
        guard let vocabObject = m.field("vocab")?.value.object else {
            throw FlamingoError.invalidFormat("tokenizer.json: model.vocab must be an object")
        }
        var vocab = ByteTable(capacity: vocabObject.count)
        var maxId = -1
        for (token, value) in vocabObject {
            guard let id = value.int, id >= 0, id < Int(Int32.max) else {
                throw FlamingoError.invalidFormat("tokenizer.json: model.vocab[\"\(token)\"] must be a non-negative integer id")
            }
            vocab.insert(Array(token.string.utf8), Int32(id))
            maxId = max(maxId, id)
        }
        guard maxId < 1 << 22 else {
            throw FlamingoError.invalidFormat("tokenizer.json: model.vocab id \(maxId) is implausibly large")
        }
        var tokens = [[UInt8]?](repeating: nil, count: maxId + 1)
        for (token, value) in vocabObject { if let id = value.int { tokens[id] = Array(token.string.utf8) } }
        self.vocab = vocab
        self.tokens = tokens
        self.entryCount = vocabObject.count

        unkToken = try m.optionalString("unk_token").map { Array($0.utf8) }
        fuseUnk = try m.bool("fuse_unk", default: false)
        byteFallback = try m.bool("byte_fallback", default: false)
        ignoreMerges = try m.bool("ignore_merges", default: false)
        subwordPrefix = try m.optionalString("continuing_subword_prefix").map { Array($0.utf8) }
        wordSuffix = try m.optionalString("end_of_word_suffix").map { Array($0.utf8) }

        var byteTokens = [Int32](repeating: -1, count: 256)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in 0..<256 {
            let name: [UInt8] = [0x3C, 0x30, 0x78, hex[b >> 4], hex[b & 15], 0x3E]  // "<0xNN>"
            byteTokens[b] = vocab.find(name) ?? -1
        }
        self.byteTokens = byteTokens

        // Merges: ["a b", ...] (the older format) or [["a", "b"], ...].
        guard let list = m.field("merges")?.value.array else {
            throw FlamingoError.invalidFormat("tokenizer.json: model.merges must be an array")
        }
        let merges = PairTable(capacity: list.count)
        let joinable = PairTable(capacity: list.count)
        let prefixLength = subwordPrefix?.count ?? 0
        var rank = 0
        for (index, item) in list.enumerated() {
            let a: [UInt8], b: [UInt8]
            if let s = item.string {
                // HF skips "#version" lines (merges.txt heritage), splits on
                // every space and wants exactly two parts.
                if s.utf8.starts(with: "#version".utf8) { continue }
                let parts = s.utf8.split(separator: 0x20, omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw FlamingoError.invalidFormat("tokenizer.json: model.merges[\(index)] = \"\(s)\" is not two tokens separated by one space")
                }
                a = Array(parts[0])
                b = Array(parts[1])
            } else if let pair = item.array, pair.count == 2, let x = pair[0].string, let y = pair[1].string {
                a = Array(x.utf8)
                b = Array(y.utf8)
            } else {
                throw FlamingoError.invalidFormat("tokenizer.json: model.merges[\(index)] must be \"a b\" or [\"a\", \"b\"]")
            }
            guard let ia = vocab.find(a), let ib = vocab.find(b), b.count >= prefixLength else {
                throw FlamingoError.invalidFormat("tokenizer.json: model.merges[\(index)] uses a token missing from the vocabulary")
            }
            let merged = a + b[prefixLength...]
            guard let im = vocab.find(merged) else {
                throw FlamingoError.invalidFormat("tokenizer.json: model.merges[\(index)]: the merged token \"\(makeString(merged))\" is not in the vocabulary")
            }
            merges.insert(PairTable.key(UInt32(ia), UInt32(ib)), (Int32(rank), im))
            rank += 1
            if let last = scalars(a).last, let first = scalars(b).first {
                joinable.insert(PairTable.key(last, first), (0, 0))
            }
        }
        self.merges = merges
        self.joinable = joinable
        var bmp = [Bool](repeating: false, count: 0x10000)
        for t in tokens {
            guard let t, !t.isEmpty, t.count == scalarLength(leadByte: t[0]) else { continue }
            let v = scalars(t)[0]
            if v < 0x10000 { bmp[Int(v)] = true }
        }
        bmpInVocab = bmp
        // With a subword prefix or word suffix a character's symbol depends on
        // its position in the word, so cutting would change the result.
        canCut = subwordPrefix == nil && wordSuffix == nil
    }

    /// Runs `body` with the mutable state moved into a local (the caller holds the lock).
    func withState<R>(_ body: (inout State) throws -> R) rethrows -> R {
        var st = state ?? State()
        state = nil
        defer { state = st }
        return try body(&st)
    }

    func clearCache() {
        state?.cache.removeAll()
        state?.cacheIds.removeAll(keepingCapacity: true)
    }

    /// Appends the ids of one pre-tokenised word.
    func tokenize(_ word: UnsafeBufferPointer<UInt8>, _ st: inout State, into out: inout [Int]) throws {
        guard word.count > 0 else { return }
        if ignoreMerges, let id = vocab.find(word) {
            out.append(Int(id))
            return
        }
        if canCut && word.count >= cutThreshold {
            var start = 0
            var prev: UInt32 = 0
            var prevKnown = false
            var i = 0
            while i < word.count {
                let (v, n) = decodeScalar(word, i)
                let known = v < 0x10000 ? bmpInVocab[Int(v)] : vocab.find(UnsafeBufferPointer(rebasing: word[i..<(i + n)])) != nil
                if i > start && prevKnown && known && joinable.find(PairTable.key(prev, v)) == nil {
                    try tokenizeCached(UnsafeBufferPointer(rebasing: word[start..<i]), &st, into: &out)
                    start = i
                }
                prev = v
                prevKnown = known
                i += n
            }
            try tokenizeCached(UnsafeBufferPointer(rebasing: word[start..<word.count]), &st, into: &out)
        } else {
            try tokenizeCached(word, &st, into: &out)
        }
    }

    private func tokenizeCached(_ word: UnsafeBufferPointer<UInt8>, _ st: inout State, into out: inout [Int]) throws {
        if let packed = st.cache.find(word) {
            let start = Int(packed >> 8), count = Int(packed & 0xFF)
            st.cacheIds.withUnsafeBufferPointer { c in
                if count == 0xFF {
                    // Long results are stored as (start, count) in two slots.
                    let s = Int(c[start]), n = Int(c[start + 1])
                    for k in 0..<n { out.append(Int(c[s + k])) }
                } else {
                    for k in 0..<count { out.append(Int(c[start + k])) }
                }
            }
            return
        }
        let first = out.count
        try mergeWord(word, &st, into: &out)
        guard word.count <= BPEModel.maxCachedWord else { return }
        if st.cache.count >= cacheLimit || st.cacheIds.count > 8 * cacheLimit {
            st.cache.removeAll()
            st.cacheIds.removeAll(keepingCapacity: true)
        }
        let n = out.count - first
        let start = st.cacheIds.count
        guard start < (1 << 22) - 2 else { return }
        if n < 0xFF {
            for k in first..<out.count { st.cacheIds.append(Int32(out[k])) }
            st.cache.insert(word, Int32(start << 8 | n))
        } else {
            st.cacheIds.append(Int32(start + 2))
            st.cacheIds.append(Int32(n))
            for k in first..<out.count { st.cacheIds.append(Int32(out[k])) }
            st.cache.insert(word, Int32(start << 8 | 0xFF))
        }
    }


    private func unkId() throws -> Int32 {
        guard let unk = unkToken, let id = vocab.find(unk) else {
            throw FlamingoError.invalidFormat("tokenizer.json: model.unk_token \"\(makeString(unkToken ?? []))\" is not in the vocabulary")
        }
        return id
    }

    /// models/bpe/model.rs merge_word + word.rs merge_all.
    private func mergeWord(_ w: UnsafeBufferPointer<UInt8>, _ st: inout State, into out: inout [Int]) throws {
        st.symbolIds.removeAll(keepingCapacity: true)
        st.symbolLen.removeAll(keepingCapacity: true)
        func addSymbol(_ id: Int32, _ length: Int) {
            st.symbolIds.append(id)
            st.symbolLen.append(Int32(length))
        }
        var unk: (id: Int32, length: Int)? = nil
        var i = 0
        while i < w.count {
            let n = scalarLength(leadByte: w[i])
            let isFirst = i == 0, isLast = i + n >= w.count
            var id: Int32?
            if (isFirst || subwordPrefix == nil) && (!isLast || wordSuffix == nil) {
                id = vocab.find(UnsafeBufferPointer(rebasing: w[i..<(i + n)]))
            } else {
                st.piece.removeAll(keepingCapacity: true)
                if !isFirst, let p = subwordPrefix { st.piece.append(contentsOf: p) }
                st.piece.append(contentsOf: w[i..<(i + n)])
                if isLast, let s = wordSuffix { st.piece.append(contentsOf: s) }
                id = vocab.find(st.piece)
            }
            if let id {
                if let u = unk { addSymbol(u.id, u.length); unk = nil }
                addSymbol(id, n)
            } else {
                var handled = false
                if byteFallback {
                    // The fallback spells the character as it was looked up,
                    // prefix and suffix included.
                    let spelled: [UInt8]
                    if (isFirst || subwordPrefix == nil) && (!isLast || wordSuffix == nil) {
                        spelled = Array(w[i..<(i + n)])
                    } else {
                        spelled = st.piece
                    }
                    if spelled.allSatisfy({ byteTokens[Int($0)] >= 0 }) {
                        // HF adds the bytes without flushing a pending unk first.
                        for b in spelled { addSymbol(byteTokens[Int(b)], 1) }
                        handled = true
                    }
                }
                if !handled && unkToken != nil {
                    if let u = unk {
                        if fuseUnk {
                            unk = (u.id, u.length + n)
                        } else {
                            addSymbol(u.id, u.length)
                            unk = (try unkId(), n)
                        }
                    } else {
                        unk = (try unkId(), n)
                    }
                }
            }
            i += n
        }
        if let u = unk { addSymbol(u.id, u.length) }
        mergeSymbols(&st)
        for k in 0..<st.symbolIds.count where st.symbolLen[k] != 0 { out.append(Int(st.symbolIds[k])) }
    }

    /// word.rs merge_all. The queue is a binary min-heap of
    /// (rank << 32 | position): HF's orders by rank, then position, and an
    /// entry is still valid when the pair now at its position has the same
    /// rank (a rank names one pair). Each merge pushes at most two entries,
    /// so 3n slots always suffice.
    private func mergeSymbols(_ st: inout State) {
        let n = st.symbolIds.count
        guard n > 1 else { return }
        if st.symbolPrev.count < n {
            st.symbolPrev = [Int32](repeating: 0, count: 2 * n)
            st.symbolNext = [Int32](repeating: 0, count: 2 * n)
        }
        if st.heap.count < 3 * n { st.heap = [UInt64](repeating: 0, count: 6 * n) }
        let merges = self.merges
        st.symbolIds.withUnsafeMutableBufferPointer { ids in
        st.symbolLen.withUnsafeMutableBufferPointer { len in
        st.symbolPrev.withUnsafeMutableBufferPointer { prev in
        st.symbolNext.withUnsafeMutableBufferPointer { next in
        st.heap.withUnsafeMutableBufferPointer { heap in
            var count = 0
            @inline(__always) func rank(_ a: Int32, _ b: Int32) -> (Int32, Int32)? {
                merges.find(PairTable.key(UInt32(bitPattern: a), UInt32(bitPattern: b)))
            }
            @inline(__always) func push(_ x: UInt64) {
                var c = count
                count += 1
                while c > 0 {
                    let p = (c - 1) >> 1
                    if heap[p] <= x { break }
                    heap[c] = heap[p]
                    c = p
                }
                heap[c] = x
            }
            @inline(__always) func pop() -> UInt64 {
                let top = heap[0]
                count -= 1
                let last = heap[count]
                var c = 0
                while true {
                    var k = 2 * c + 1
                    if k >= count { break }
                    if k + 1 < count && heap[k + 1] < heap[k] { k += 1 }
                    if heap[k] >= last { break }
                    heap[c] = heap[k]
                    c = k
                }
                heap[c] = last
                return top
            }
            for k in 0..<n {
                prev[k] = Int32(k - 1)
                next[k] = k + 1 < n ? Int32(k + 1) : -1
            }
            for k in 0..<(n - 1) {
                if let (r, _) = rank(ids[k], ids[k + 1]) { push(UInt64(UInt32(r)) << 32 | UInt64(k)) }
            }
            while count > 0 {
                let top = pop()
                let pos = Int(top & 0xFFFF_FFFF)
                if len[pos] == 0 { continue }
                let right = Int(next[pos])
                if right < 0 { continue }
                guard let (r, newId) = rank(ids[pos], ids[right]), r == Int32(truncatingIfNeeded: top >> 32) else { continue }
                ids[pos] = newId
                len[pos] += len[right]
                len[right] = 0
                let after = next[right]
                next[pos] = after
                if after >= 0 { prev[Int(after)] = Int32(pos) }
                let before = Int(prev[pos])
                if before >= 0, let (r2, _) = rank(ids[before], newId) {
                    push(UInt64(UInt32(r2)) << 32 | UInt64(before))
                }
                if after >= 0, let (r3, _) = rank(newId, ids[Int(after)]) {
                    push(UInt64(UInt32(r3)) << 32 | UInt64(pos))
                }
            }
        }}}}}
    }
}
