"""Marker package: the generated modules live in the `zhike` package beside it (`make gen`)."""
