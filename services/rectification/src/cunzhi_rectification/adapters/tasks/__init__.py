"""Adapters of tracked work items: HTTP, read model, resolution policy, deadline timer."""
