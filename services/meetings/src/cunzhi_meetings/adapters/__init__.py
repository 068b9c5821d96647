"""Adapters of the meetings service: HTTP routes, projections, queries, policies, timers."""
