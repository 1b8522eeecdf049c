"""Offers domain: arrives with the offers feature issue."""
