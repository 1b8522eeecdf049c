"""Zhike offers service: decisioning (eligibility, arbitration, contact policy)."""
