"""Test fixtures with real parts: a nats-server, a throwaway PostgreSQL cluster, services in-process."""
