"""Zhike profile service: the bank-wide 360° view of each party."""
