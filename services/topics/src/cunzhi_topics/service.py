"""The topics service as the platform runs it: events, read models, policies, routes, timers."""

from __future__ import annotations

from cunzhi_platform.eventstore import lookup_index
from cunzhi_platform.runtime import Service

from .adapters.http import router
from .adapters.policies import CarryOver, ForumCalendar, ForumOutcomes
from .adapters.projections import ReadModels
from .adapters.timeline import SpeakUpLinks, Timeline
from .adapters.timers import call_timers
from .events import SERVICE, registry
from .inbound import readers

DESCRIPTION = (
    "Calls for topics of each township's monthly village cadre forum (征集议题), submission, "
    "consolidation and selection of topics, villagers' speak-up issues (逢五说事) and their "
    "claims by party members (党员领办)."
)


def build_service() -> Service:
    return Service(
        name=SERVICE,
        registry=registry,
        consumes=[readers],
        consumers=[
            ReadModels(),
            Timeline(),
            SpeakUpLinks(),
            CarryOver(),
            ForumCalendar(),
            ForumOutcomes(),
        ],
        # Selection and cancellation read every topic of a call from the store.
        migrations=[lookup_index("forum_id", "township_id")],
        routers=[router],
        background=[call_timers],
        description=DESCRIPTION,
    )
