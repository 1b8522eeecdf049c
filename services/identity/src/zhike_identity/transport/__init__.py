"""Identity transport: gRPC handlers and the proto ↔ domain codec. Thin on purpose."""
