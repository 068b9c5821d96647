"""The services this deployment knows, with their published event registries."""

from __future__ import annotations

from cunzhi_meetings import events as meetings
from cunzhi_platform.events import EventRegistry
from cunzhi_rectification import events as rectification
from cunzhi_topics import events as topics

SERVICES: dict[str, tuple[EventRegistry, str]] = {
    "topics": (topics.registry, "Calls for topics, submissions, selection, speak-up issues"),
    "meetings": (meetings.registry, "The monthly village cadre forum from plan to close"),
    "rectification": (rectification.registry, "Rectification tasks (contract only so far)"),
}
