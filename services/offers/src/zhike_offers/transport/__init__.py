"""Offers transport."""
