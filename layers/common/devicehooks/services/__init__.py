"""Use cases: what the APIs and the dispatcher do, independent of HTTP and of storage."""
