"""Zhike identity resolution service: links source records from every system into one party."""
