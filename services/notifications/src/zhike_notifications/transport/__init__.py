"""Notifications transport."""
