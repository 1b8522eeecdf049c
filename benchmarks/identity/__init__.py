"""Identity resolution benchmarks: quality (generated set and FEBRL4) and batch throughput,
each next to a Splink baseline on the same CSV. Figures only; nothing passes or fails."""
