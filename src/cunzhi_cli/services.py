"""The services this deployment knows, with their published event registries."""

from __future__ import annotations

from cunzhi_meetings import service as meetings
from cunzhi_meetings.events import registry as meetings_events
from cunzhi_platform.events import EventRegistry
from cunzhi_rectification import events as rectification
from cunzhi_topics import service as topics
from cunzhi_topics.events import registry as topics_events

SERVICES: dict[str, tuple[EventRegistry, str]] = {
    "topics": (topics_events, topics.DESCRIPTION),
    "meetings": (meetings_events, meetings.DESCRIPTION),
    "rectification": (rectification.registry, rectification.__doc__ or ""),
}
