"""Evaluation of identity resolution: a generated evaluation set, FEBRL4, pairwise metrics.

- `dataset`: the batch CSV formats (`records.csv`, `truth.csv`, a resolver's output).
- `generator`: a seeded generator of Chinese retail-bank customer records with known truth.
- `febrl`: the public FEBRL4 benchmark mapped onto the same input format.
- `metrics`: pairwise precision, recall and F1 from cluster contingency counts.

See docs/identity-evaluation.md. Nothing here is used by the service at run time.
"""
