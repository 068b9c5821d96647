"""Adapters: HTTP routes, read-model projections, policies and timers."""
