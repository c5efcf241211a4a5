"""The NSML server: a FastAPI app over the store, the scheduler and the blob store."""
