"""The services this deployment knows, with their published event registries."""

from __future__ import annotations

from collections.abc import Callable

from cunzhi_meetings.events import registry as meetings_events
from cunzhi_meetings.service import DESCRIPTION as MEETINGS
from cunzhi_meetings.service import build_service as build_meetings
from cunzhi_notifications.events import registry as notifications_events
from cunzhi_notifications.service import DESCRIPTION as NOTIFICATIONS
from cunzhi_notifications.service import build_service as build_notifications
from cunzhi_platform.events import EventRegistry
from cunzhi_platform.runtime import Service
from cunzhi_rectification.events import registry as rectification_events
from cunzhi_rectification.service import DESCRIPTION as RECTIFICATION
from cunzhi_rectification.service import build_service as build_rectification
from cunzhi_topics.events import registry as topics_events
from cunzhi_topics.service import DESCRIPTION as TOPICS
from cunzhi_topics.service import build_service as build_topics

SERVICES: dict[str, tuple[EventRegistry, str]] = {
    "topics": (topics_events, TOPICS),
    "meetings": (meetings_events, MEETINGS),
    "rectification": (rectification_events, RECTIFICATION),
    "notifications": (notifications_events, NOTIFICATIONS),
}

RUNNABLE: dict[str, Callable[[], Service]] = {
    "topics": build_topics,
    "meetings": build_meetings,
    "rectification": build_rectification,
    "notifications": build_notifications,
}
