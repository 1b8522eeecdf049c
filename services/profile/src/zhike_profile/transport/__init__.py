"""Profile transport: gRPC handlers, identity event handlers and the codec."""
