import Tiers

/// `tiers-create yes`: creates the Cosmos DB database and container and the Blob container when
/// missing, once at start (after secrets resolved), so a fresh emulator or account works without
/// a setup step. Existing ones are left as they are.
enum TierBootstrap {
    static func create(warm: Tier?, cold: Tier?) {
        if let cosmos = warm as? CosmosTier {
            cosmos.createDatabaseAndContainer { result in report("warm", cosmos.name, result) }
        }
        if let blob = cold as? BlobTier {
            blob.createContainer { result in report("cold", blob.name, result) }
        }
    }

    private static func report(_ role: String, _ name: String, _ result: Result<Void, TierError>) {
        switch result {
        case .success: Log.notice("Tiers: \(role) \(name) ready (created if it was missing)")
        case .failure(let e): Log.warning("Tiers: could not create \(role) \(name): \(e)")
        }
    }
}
