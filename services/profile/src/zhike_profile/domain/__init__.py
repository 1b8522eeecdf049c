"""Profile domain: pure rules and use cases (no grpc, database or NATS imports)."""
