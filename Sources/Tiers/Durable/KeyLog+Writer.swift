import Reactor

/// The key log's writer thread: it appends what the marks queued (and the records jobs carry),
/// covers them with one `fdatasync` when the sync policy asks for it (group commit), rewrites
/// the file when dead records dominate, and then completes the marks that waited.
extension KeyLog {
    /// What one pass of the writer writes.
    struct WriterBatch {
        var encoded = [UInt8]()
        var records = 0
        var compactAsked = false
        /// Only marks are waited for; a batch of nothing but "done" records needs no fdatasync.
        var mustSync = false
    }

    /// Rewrites the file now with one record per pending key; `done` runs on `loop`.
    public func compact(on loop: EventLoop, _ done: @escaping (Result<Void, TierError>) -> Void) {
        if !writer.submit(Job(encoded: [], records: 0, compact: true, loop: loop, done: done)) {
            let failure = closedError
            loop.execute { done(.failure(failure)) }
        }
    }

    func suspendWriter() { writer.suspend() }
    func resumeWriter() { writer.resume() }

    func writeBatch(_ jobs: [Job]) {
        var batch = WriterBatch()
        for job in jobs {
            batch.encoded += job.encoded
            batch.records += job.records
            batch.compactAsked = batch.compactAsked || job.compact
            batch.mustSync = batch.mustSync || (job.done != nil && !job.compact) || job.sync
        }
        if options.sync != .always { takeQueued(into: &batch) }
        let (appendResult, compactResult) = write(batch)
        var completions = CompletionBatch()
        for job in jobs {
            guard let loop = job.loop, let done = job.done else { continue }
            let result = job.compact ? compactResult : appendResult
            completions.add(loop) { done(result) }
        }
        completions.deliver()
    }

    /// Under `.everysec` and `.no`: the records marks queued since the last pass, and whether a
    /// second has passed since the last sync.
    private func takeQueued(into batch: inout WriterBatch) {
        let now = wallClockMillis()
        let due: Bool = withLock {
            batch.encoded += queued
            batch.records += queuedRecords
            queued.removeAll(keepingCapacity: true)
            queuedRecords = 0
            wakeSubmitted = false
            return syncDue(unsynced || batch.records > 0, now: now)
        }
        batch.mustSync = batch.mustSync || due
    }

    /// Writes `batch`: a rewrite of the file with one record per pending key when asked or when
    /// dead records dominate (then the batch's records are covered by it), else an append.
    /// Returns the results of the append and of the compaction.
    private func write(_ batch: WriterBatch) -> (append: Result<Void, TierError>, compact: Result<Void, TierError>) {
        // The snapshot may include marks queued after this batch: re-applying their records
        // later yields the same state, so that is harmless.
        let (snapshot, failure): ([KeyLogRecord]?, TierError?) = withLock {
            if let broken { return (nil, broken) }
            let total = file.records + batch.records
            let dead = total - pending.count
            let compact = batch.compactAsked
                || (total >= options.compactMinRecords && Double(dead) >= options.compactDeadFraction * Double(total))
            return (compact ? pending.snapshot() : nil, nil)
        }
        if let failure { return (.failure(failure), .failure(failure)) }
        var appendResult = Result<Void, TierError>.success(())
        var compactResult = appendResult
        var compacted = false
        if let snapshot {
            do throws(TierError) {
                try file.rewrite(snapshot)
                compacted = true
            } catch {
                compactResult = .failure(error)  // the old file is intact: append to it instead
            }
        }
        var synced = compacted
        if !compacted && (batch.records > 0 || batch.mustSync) {
            do throws(TierError) {
                if batch.records > 0 { try file.append(batch.encoded, records: batch.records, sync: batch.mustSync) } else { try file.sync() }
                synced = batch.mustSync
            } catch {
                appendResult = .failure(error)
            }
        }
        note(records: batch.records, compacted: compacted, synced: synced, appendResult)
        return (appendResult, compactResult)
    }

    /// The counters and sync state after a pass; a failed append breaks the log for good.
    private func note(records: Int, compacted: Bool, synced: Bool, _ appendResult: Result<Void, TierError>) {
        withLock {
            if compacted || appendResult.isSuccess { counters.written += records }
            if compacted { counters.compactions += 1 }
            if synced {
                counters.syncs += 1
                unsynced = false
                lastSyncMillis = wallClockMillis()
            } else if records > 0 {
                unsynced = true
            }
            if case .failure(let e) = appendResult { broken = e }
            counters.fileRecords = file.records
            counters.fileBytes = file.bytes
        }
    }
}
