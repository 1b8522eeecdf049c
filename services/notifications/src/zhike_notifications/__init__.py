"""Zhike notifications service: multi-channel dispatch (consent, quiet hours, caps, retries)."""
