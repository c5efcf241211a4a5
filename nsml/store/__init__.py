"""Storage: metadata (nsml.store.sql) and bytes (nsml.store.blobs). Kept import-light on purpose:
the CLI uses nsml.store.archive without paying for SQLAlchemy."""
