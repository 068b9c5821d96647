"""Adapters of the rectification service, by subject (``tasks``, ``campaign``)."""
