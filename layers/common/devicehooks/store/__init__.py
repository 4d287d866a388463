"""Storage behind small protocols: DynamoDB for real, in-memory doubles for tests and benchmarks."""
