"""Zhike's shared service runtime: one place for the plumbing every service uses."""
