"""Notifications domain: arrives with the notifications feature issue."""
