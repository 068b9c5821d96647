"""The service's one event registry; each module of this package registers into it."""

from __future__ import annotations

from cunzhi_platform.events import EventRegistry

SERVICE = "rectification"
registry = EventRegistry()
