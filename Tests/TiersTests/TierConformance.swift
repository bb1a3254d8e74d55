import Glibc
import Reactor
import Testing
@testable import Tiers

/// The behaviour every warm/cold backend owes the cascade, written once and run on each backend.
///
/// Use it from a backend's tests as a parameterised test, one test case per scenario:
///
///     @Test(arguments: TierConformance.scenarios)
///     func cosmos(_ scenario: TierScenario) throws {
///         try TierConformance.run(scenario) { loop in try CosmosTier(..., loop: loop) }
///     }
///
/// Each run gets a fresh loop on its own thread and a random key prefix, so scenarios can share
/// a real container; those marked `ownStore` (purges) need one of their own. Completions are
/// awaited with deadlines; nothing sleeps and hopes.
enum TierConformance {
    static let scenarios: [TierScenario] = [
        TierScenario("empty value") { t in
            try t.put(t.key("empty"), Entry(value: []))
            #expect(try t.get(t.key("empty")) == Entry(value: []))
        },
        TierScenario("one-byte value") { t in
            try t.put(t.key("one"), Entry(value: [0x00]))
            #expect(try t.get(t.key("one")) == Entry(value: [0x00]))
        },
        TierScenario("5 MB value") { t in
            let value = TierConformance.bigValue(5_000_000)
            try t.put(t.key("big"), Entry(value: value))
            let back = try t.get(t.key("big"))
            #expect(back?.value.count == value.count)
            #expect(back?.value == value)
        },
        TierScenario("binary keys") { t in
            let keys: [[UInt8]] = [[0], [0, 0], [0xFF, 0xFE], Array(0...255), [0xC3, 0x28], [0x2F, 0x2E, 0x2E, 0x2F],
                                   Array("a\r\nb\t#?/\\ ".utf8)]
            for (i, k) in keys.enumerated() { try t.put(t.key(k), Entry(value: [UInt8(i)])) }
            for (i, k) in keys.enumerated() { #expect(try t.get(t.key(k))?.value == [UInt8(i)], "key \(k)") }
        },
        TierScenario("600-byte keys") { t in
            let a = [UInt8](repeating: 0x61, count: 600)
            var b = a
            b[599] = 0x62  // differs only in the last byte: a hash or truncation bug would merge them
            try t.put(t.key(a), Entry(value: [1]))
            try t.put(t.key(b), Entry(value: [2]))
            #expect(try t.get(t.key(a))?.value == [1])
            #expect(try t.get(t.key(b))?.value == [2])
        },
        TierScenario("unicode keys") { t in
            let keys = ["ключ", "日本語のキー", "emoji 🎉🚀", "e\u{301}", "\u{e9}", "Ünïcödé:42"]
            for (i, k) in keys.enumerated() { try t.put(t.key(k), Entry(value: [UInt8(i)])) }
            // "e\u{301}" and "\u{e9}" are canonically equivalent text but different bytes: two keys.
            for (i, k) in keys.enumerated() { #expect(try t.get(t.key(k))?.value == [UInt8(i)], "key \(k)") }
        },
        TierScenario("same key in two databases") { t in
            try t.put(t.key("shared", db: 0), Entry(value: [0]))
            try t.put(t.key("shared", db: 5), Entry(value: [5]))
            #expect(try t.get(t.key("shared", db: 0))?.value == [0])
            #expect(try t.get(t.key("shared", db: 5))?.value == [5])
            try t.delete(t.key("shared", db: 5))
            #expect(try t.get(t.key("shared", db: 0))?.value == [0])
            #expect(try t.get(t.key("shared", db: 5)) == nil)
        },
        TierScenario("expiry honoured on read") { t in
            let now = wallClockMillis()
            try t.put(t.key("past"), Entry(value: [1], expiresAtMillis: now - 1000))
            #expect(try t.get(t.key("past")) == nil)
            let future = Entry(value: [2], type: .string, expiresAtMillis: now + 3_600_000)
            try t.put(t.key("future"), future)
            #expect(try t.get(t.key("future")) == future)
        },
        TierScenario("entry expires while stored") { t in
            let expiry = wallClockMillis() + 1500
            let entry = Entry(value: [3], expiresAtMillis: expiry)
            try t.put(t.key("soon"), entry)
            let early = try t.get(t.key("soon"))
            if wallClockMillis() < expiry { #expect(early == entry) }
            // Waits for a condition of the clock, not for the tier.
            while wallClockMillis() <= expiry + 5 { usleep(20_000) }
            #expect(try t.get(t.key("soon")) == nil)
        },
        TierScenario("overwrite replaces value and metadata") { t in
            try t.put(t.key("k"), Entry(value: Array("first".utf8), type: .string, expiresAtMillis: wallClockMillis() + 3_600_000))
            let second = Entry(value: Array("second, longer".utf8), type: .hash)
            try t.put(t.key("k"), second)
            #expect(try t.get(t.key("k")) == second)
            let third = Entry(value: [])
            try t.put(t.key("k"), third)
            #expect(try t.get(t.key("k")) == third)
        },
        TierScenario("every value type round-trips") { t in
            for type in [ValueType.string, .list, .set, .zset, .hash, .stream] {
                let e = Entry(value: Array(type.rawValue.utf8), type: type)
                try t.put(t.key("type-" + type.rawValue), e)
                #expect(try t.get(t.key("type-" + type.rawValue)) == e)
            }
        },
        TierScenario("delete of an absent key succeeds") { t in
            try t.delete(t.key("never-written"))
            #expect(try t.get(t.key("never-written")) == nil)
        },
        TierScenario("delete removes") { t in
            try t.put(t.key("gone"), Entry(value: [1]))
            try t.delete(t.key("gone"))
            #expect(try t.get(t.key("gone")) == nil)
            try t.delete(t.key("gone"))
        },
        TierScenario("batched operations keep order") { t in
            let keys = (0..<40).map { t.key("batch-\($0)") }
            let items = keys.enumerated().filter { $0.offset % 2 == 0 }.map { ($0.element, Entry(value: Array("v\($0.offset)".utf8))) }
            for r in try t.putMany(items) { try r.get() }
            let got = try t.getMany(keys)
            #expect(got.count == keys.count)
            for (i, r) in got.enumerated() {
                #expect(try r.get() == (i % 2 == 0 ? Entry(value: Array("v\(i)".utf8)) : nil), "position \(i)")
            }
            for r in try t.deleteMany(keys) { try r.get() }
            #expect(try t.getMany(keys).allSatisfy { (try? $0.get()) == .some(nil) })
            #expect(try t.getMany([]).isEmpty)
            #expect(try t.putMany([]).isEmpty)
            #expect(try t.deleteMany([]).isEmpty)
        },
        TierScenario("check reports ok") { t in
            _ = try t.check()
        },
        TierScenario("purge one database", ownStore: true) { t in
            let entries = TierConformance.purgeEntries(t)
            for (k, e) in entries { try t.put(k, e) }
            let inDB1 = entries.filter { $0.0.db == 1 }.count
            #expect(inDB1 > 0)
            #expect(try t.purge(db: 1) == inDB1)
            for (k, e) in entries {
                #expect(try t.get(k) == (k.db == 1 ? nil : e), "db \(k.db), \(k.bytes.count)-byte key \(k.bytes.prefix(16))")
            }
            #expect(try t.purge(db: 1) == 0)
            #expect(try t.purge(db: 7) == 0)
            // The purged db takes writes again.
            let again = try #require(entries.first { $0.0.db == 1 }).0
            try t.put(again, Entry(value: [9]))
            #expect(try t.get(again)?.value == [9])
        },
        TierScenario("list a database page by page", ownStore: true) { t in
            let entries = TierConformance.purgeEntries(t)
            for (k, e) in entries { try t.put(k, e) }
            try t.delete(entries[1].0)
            for db in [0, 1] {
                var listed = [ListedKey]()
                var after: String?
                var pages = 0
                repeat {
                    let page = try t.list(db: db, after: after, limit: 2)
                    listed += page.keys
                    after = page.next
                    pages += 1
                } while after != nil && pages < 100
                let wanted = entries.enumerated().filter { $0.offset != 1 && $0.element.0.db == db }.map(\.element)
                #expect(listed.count == wanted.count, "db \(db): \(listed.count) listed, \(wanted.count) stored")
                #expect(Set(listed.map(\.key)) == Set(wanted.map(\.0)), "db \(db)")
                for (k, e) in wanted {
                    guard let l = listed.first(where: { $0.key == k }) else { continue }
                    // A sealed entry keeps its type inside the seal: nil is its honest answer.
                    #expect(l.type == nil || l.type == e.type, "type of \(k.bytes.prefix(16))")
                    #expect(l.expiresAtMillis == e.expiresAtMillis, "expiry of \(k.bytes.prefix(16))")
                }
            }
            #expect(try t.list(db: 7, after: nil, limit: 10).keys.isEmpty)
        },
        TierScenario("purge every database", ownStore: true) { t in
            let entries = TierConformance.purgeEntries(t)
            for (k, e) in entries { try t.put(k, e) }
            #expect(try t.purge(db: nil) == entries.count)
            for (k, _) in entries { #expect(try t.get(k) == nil, "db \(k.db), \(k.bytes.count)-byte key \(k.bytes.prefix(16))") }
            #expect(try t.purge(db: nil) == 0)
            try t.put(entries[0].0, Entry(value: [9]))
            #expect(try t.get(entries[0].0)?.value == [9])
        },
    ]

    /// The same keys in dbs 0, 1 and 2: readable names (db 0), base64/base32 names, binary, long
    /// keys that every backend stores under a hash name, with values, types and expiries that vary.
    static func purgeEntries(_ t: TierUnderTest) -> [(TierKey, Entry)] {
        let keys: [[UInt8]] = [Array("plain".utf8), Array("ключ".utf8), Array("a/b?c#d e".utf8), [0xFF, 0x00, 0x41],
                               [UInt8](repeating: 0x61, count: 600), [UInt8](repeating: 0x62, count: 1100)]
        let later = wallClockMillis() + 3_600_000
        var out = [(TierKey, Entry)]()
        for db in 0...2 {
            for (i, k) in keys.enumerated() {
                out.append((t.key(k, db: db), Entry(value: [UInt8(db), UInt8(i)], type: i % 2 == 0 ? .string : .hash,
                                                    expiresAtMillis: i == 3 ? later : nil)))
            }
        }
        return out
    }

    /// Runs `scenario` against a tier `makeTier` builds on a fresh loop (called on that loop's thread).
    static func run(_ scenario: TierScenario, makeTier: @escaping (EventLoop) throws -> Tier) throws {
        let harness = LoopHarness()
        let made: Result<Tier, any Error> = try harness.wait("make tier") { done in
            done(Result { try makeTier(harness.loop) })
        }
        try scenario.run(TierUnderTest(harness: harness, tier: try made.get()))
    }

    /// Compressible but not trivial: runs of text with a counter, like real JSON-ish values.
    static func bigValue(_ count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count + 64)
        var i = 0
        while out.count < count {
            out += Array("{\"item\":\(i),\"name\":\"n\(i &* 2654435761 % 1000)\"},".utf8)
            i += 1
        }
        return Array(out.prefix(count))
    }
}

/// One named conformance scenario.
struct TierScenario: Sendable, CustomStringConvertible {
    let name: String
    /// The scenario touches every entry of the store (purge): give it a store no other run shares.
    let ownStore: Bool
    let run: @Sendable (TierUnderTest) throws -> Void
    init(_ name: String, ownStore: Bool = false, _ run: @escaping @Sendable (TierUnderTest) throws -> Void) {
        self.name = name
        self.ownStore = ownStore
        self.run = run
    }
    var description: String { name }
}

/// A tier on a running loop, with blocking, deadline-bound calls for scenarios.
final class TierUnderTest {
    let harness: LoopHarness
    let tier: Tier
    /// Random per run, so runs sharing a real container never see each other's keys.
    let prefix: [UInt8]

    init(harness: LoopHarness, tier: Tier) {
        self.harness = harness
        self.tier = tier
        var rng = SplitMix(seed: UInt64(wallClockMillis()) &* 31 &+ UInt64(getpid()))
        prefix = Array("t\(rng.next() % 1_000_000_000)-".utf8)
    }

    func key(_ text: String, db: Int = 0) -> TierKey { TierKey(db: db, prefix + Array(text.utf8)) }
    func key(_ bytes: [UInt8], db: Int = 0) -> TierKey { TierKey(db: db, prefix + bytes) }

    func get(_ key: TierKey) throws -> Entry? {
        try harness.wait("get") { done in self.tier.get(key, done) }.get()
    }
    func put(_ key: TierKey, _ entry: Entry) throws {
        try harness.wait("put") { done in self.tier.put(key, entry, done) }.get()
    }
    func delete(_ key: TierKey) throws {
        try harness.wait("delete") { done in self.tier.delete(key, done) }.get()
    }
    func getMany(_ keys: [TierKey]) throws -> [Result<Entry?, TierError>] {
        try harness.wait("getMany") { done in self.tier.getMany(keys, done) }
    }
    func putMany(_ items: [(TierKey, Entry)]) throws -> [Result<Void, TierError>] {
        try harness.wait("putMany") { done in self.tier.putMany(items, done) }
    }
    func deleteMany(_ keys: [TierKey]) throws -> [Result<Void, TierError>] {
        try harness.wait("deleteMany") { done in self.tier.deleteMany(keys, done) }
    }
    func purge(db: Int?) throws -> Int {
        try harness.wait("purge") { done in self.tier.purge(db: db, done) }.get()
    }
    func list(db: Int, after: String?, limit: Int) throws -> KeyPage {
        try harness.wait("list") { done in self.tier.list(db: db, after: after, limit: limit, done) }.get()
    }
    func check() throws -> String {
        try harness.wait("check") { done in self.tier.check(done) }.get()
    }
}
