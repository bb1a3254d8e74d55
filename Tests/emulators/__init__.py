"""Wire-level emulators of Azure Cosmos DB, Blob Storage and Entra ID for tierproxy tests (see README.md)."""
