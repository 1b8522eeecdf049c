"""The event backbone on NATS JetStream: outbox, relay, idempotent consumers, dead letters."""
