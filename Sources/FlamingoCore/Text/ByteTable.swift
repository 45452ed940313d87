// Hash tables for the tokenizer's hot paths. Lookups take buffer pointers, so
// finding a word, a vocabulary entry or a merge allocates nothing; keys are
// compared byte for byte (see UTF8.swift for why not String).

@inline(__always)
private func hashBytes(_ p: UnsafeBufferPointer<UInt8>) -> UInt64 {
    // FNV-1a, finished with a multiply-xorshift so the low bits used for the
    // slot index depend on every byte.
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in p { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
    h ^= h >> 29
    h = h &* 0xBF58_476D_1CE4_E5B9
    return h ^ (h >> 32)
}

/// Byte string → Int32, keys stored back to back in one arena.
struct ByteTable {
    private struct Slot {
        var hash: UInt32
        var start: Int32
        var length: Int32   // -1: empty
        var value: Int32
    }

    private var arena: [UInt8] = []
    private var slots: [Slot]
    private var mask: Int
    private(set) var count = 0

    init(capacity: Int = 16) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        slots = Array(repeating: Slot(hash: 0, start: 0, length: -1, value: 0), count: n)
        mask = n - 1
    }

    /// Bytes held by keys (the cache uses it to bound its memory).
    var arenaBytes: Int { arena.count }

    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let h = hashBytes(key)
        let tag = UInt32(truncatingIfNeeded: h >> 32)
        var i = Int(truncatingIfNeeded: h) & mask
        return arena.withUnsafeBufferPointer { a -> Int32? in
            slots.withUnsafeBufferPointer { slots -> Int32? in
                while true {
                    let s = slots[i]
                    if s.length < 0 { return nil }
                    if s.hash == tag && Int(s.length) == key.count {
                        var same = true
                        let base = Int(s.start)
                        for k in 0..<key.count where a[base + k] != key[k] { same = false; break }
                        if same { return s.value }
                    }
                    i = (i + 1) & mask
                }
            }
        }
    }

    func find(_ key: [UInt8]) -> Int32? {
        key.withUnsafeBufferPointer { find($0) }
    }

    /// Inserts or replaces (a later duplicate wins, like a Rust HashMap insert).
    mutating func insert(_ key: UnsafeBufferPointer<UInt8>, _ value: Int32) {
        if (count + 1) * 4 > slots.count * 3 { grow() }
        let h = hashBytes(key)
        let tag = UInt32(truncatingIfNeeded: h >> 32)
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let s = slots[i]
            if s.length < 0 { break }
            if s.hash == tag && Int(s.length) == key.count {
                let base = Int(s.start)
                var same = true
                for k in 0..<key.count where arena[base + k] != key[k] { same = false; break }
                if same { slots[i].value = value; return }
            }
            i = (i + 1) & mask
        }
        slots[i] = Slot(hash: tag, start: Int32(arena.count), length: Int32(key.count), value: value)
        arena.append(contentsOf: key)
        count += 1
    }

    mutating func insert(_ key: [UInt8], _ value: Int32) {
        key.withUnsafeBufferPointer { insert($0, value) }
    }

    mutating func removeAll() {
        arena.removeAll(keepingCapacity: true)
        for i in slots.indices { slots[i].length = -1 }
        count = 0
    }

    private mutating func grow() {
        let old = slots
        let n = slots.count * 2
        slots = Array(repeating: Slot(hash: 0, start: 0, length: -1, value: 0), count: n)
        mask = n - 1
        for s in old where s.length >= 0 {
            // Re-derive the slot from the stored key so probing stays exact.
            let h = arena.withUnsafeBufferPointer {
                hashBytes(UnsafeBufferPointer(rebasing: $0[Int(s.start)..<Int(s.start + s.length)]))
            }
            var i = Int(truncatingIfNeeded: h) & mask
            while slots[i].length >= 0 { i = (i + 1) & mask }
            slots[i] = s
        }
    }
}

/// UInt64 → (Int32, Int32): BPE merges keyed by the id pair, and the
/// "can a merge join these two characters" set. Built once, then read-only;
/// the entries live in one manually managed block so a lookup is plain
/// pointer arithmetic (no array retain or bounds check in the merge loop).
final class PairTable {
    private struct Entry {
        var key: UInt64      // emptyKey: free
        var a: Int32
        var b: Int32
    }
    private static let emptyKey = UInt64.max
    private var entries: UnsafeMutablePointer<Entry>
    private var capacity: Int
    private var mask: Int
    private(set) var count = 0

    init(capacity: Int) {
        var n = 16
        while n < capacity * 2 { n <<= 1 }
        self.capacity = n
        mask = n - 1
        entries = .allocate(capacity: n)
        entries.initialize(repeating: Entry(key: PairTable.emptyKey, a: 0, b: 0), count: n)
    }

    deinit {
        entries.deallocate()
    }

    /// (a, b) packed; ids and scalars are below 2^31, so never the empty key.
    @inline(__always)
    static func key(_ a: UInt32, _ b: UInt32) -> UInt64 { UInt64(a) << 32 | UInt64(b) }

    @inline(__always)
    private static func slot(_ k: UInt64) -> Int {
        // splitmix64 finaliser: every key bit reaches the low bits.
        var h = k
        h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
        return Int(truncatingIfNeeded: h ^ (h >> 31))
    }

    @inline(__always)
    func find(_ k: UInt64) -> (Int32, Int32)? {
        var i = PairTable.slot(k) & mask
        while true {
            let x = entries[i]
            if x.key == k { return (x.a, x.b) }
            if x.key == PairTable.emptyKey { return nil }
            i = (i + 1) & mask
        }
    }

    /// Inserts or replaces (a later duplicate wins).
    func insert(_ k: UInt64, _ v: (Int32, Int32)) {
        if (count + 1) * 4 > capacity * 3 { grow() }
        var i = PairTable.slot(k) & mask
        while entries[i].key != PairTable.emptyKey {
            if entries[i].key == k { entries[i].a = v.0; entries[i].b = v.1; return }
            i = (i + 1) & mask
        }
        entries[i] = Entry(key: k, a: v.0, b: v.1)
        count += 1
    }

    private func grow() {
        let old = entries, oldCapacity = capacity
        capacity *= 2
        mask = capacity - 1
        entries = .allocate(capacity: capacity)
        entries.initialize(repeating: Entry(key: PairTable.emptyKey, a: 0, b: 0), count: capacity)
        count = 0
        for k in 0..<oldCapacity where old[k].key != PairTable.emptyKey { insert(old[k].key, (old[k].a, old[k].b)) }
        old.deallocate()
    }
}
