"""Record matching: features, blocking, Fellegi–Sunter scoring, guardrails and clustering.

Pure code shared by the service (one record at a time, against a stored candidate index) and the
batch resolver (`zhike identity resolve-csv`): the same features, comparisons, weights and
clustering rules decide in both.
"""
