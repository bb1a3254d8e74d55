import Glibc

/// glibc's allocator, set for a server that reads into buffers it frees right after.
///
/// libevent frees an evbuffer's chains as soon as they are drained, so each read of a client's
/// request (and each TLS record decrypted) takes a fresh 16–32 KB block and gives it back a few
/// microseconds later. With glibc's defaults the free space at the top of the heap is handed
/// back to the kernel once it passes 128 KB (and its mmap threshold moves as large blocks come
/// and go), so the next burst of reads faults the same pages in again, zeroed: measured here as
/// 0.2 page faults per GET at -P 1 on a plain connection and 0.55 with TLS, about a microsecond
/// each. Keeping up to `trimThreshold` of free heap (and its pad) makes those reads reuse warm
/// pages: what a proxy holds after a burst stays bounded by these two figures, not by the
/// burst. Blocks from `mmapThreshold` up (large values, DUMP payloads) still get pages of their
/// own and give them back at once.
enum HeapSettings {
    static let trimThreshold: Int32 = 32 << 20
    static let topPad: Int32 = 4 << 20
    static let mmapThreshold: Int32 = 4 << 20

    static func apply() {
        // M_TRIM_THRESHOLD, M_TOP_PAD and M_MMAP_THRESHOLD from <malloc.h>.
        _ = glibcMallopt(-1, trimThreshold)
        _ = glibcMallopt(-2, topPad)
        _ = glibcMallopt(-3, mmapThreshold)
    }
}

/// `int mallopt(int, int)`: <malloc.h> is not part of Swift's Glibc module.
@_silgen_name("mallopt")
private func glibcMallopt(_ parameter: Int32, _ value: Int32) -> Int32
