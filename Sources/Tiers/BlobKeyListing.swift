extension BlobTier {
    /// List Blobs with metadata, `limit` per page (at most 5000), the NextMarker as continuation.
    /// Database 0's keys have readable names without a common prefix, so its listing walks the
    /// whole container and keeps the blobs whose `tp_db` says 0; another database's names all
    /// start with `~tp~<db>~`, so its listing asks for that prefix only.
    public func list(db: Int, after: String?, limit: Int, _ done: @escaping (Result<KeyPage, TierError>) -> Void) {
        let prefix = db == 0 ? nil : TierNames.reservedPrefix + "\(db)~"
        listBlobs(after, prefix: prefix, pageSize: limit) { r in
            done(r.map { listing in
                let keys = listing.blobs.compactMap { blob in
                    blob.name.isEmpty ? nil : EntryMetadata.listed(name: blob.name, db: db) { blob.metadata[$0] }
                }
                return KeyPage(keys: keys, next: listing.nextMarker)
            })
        }
    }
}
