"""The meetings service as the platform runs it: events, read models, policies, routes, timer."""

from __future__ import annotations

from cunzhi_platform.runtime import Service

from .adapters.http import router
from .adapters.policies import POLICIES, notice_timer
from .adapters.projections import PROJECTIONS
from .events import SERVICE, registry
from .inbound import readers

DESCRIPTION = (
    "The monthly village cadre forum (乡村干部论坛) of each township from plan to close — "
    "roster, plan, topic, notice, held, resolutions, tasks, close — and the other recurring "
    "meetings: speak-up sessions (逢五说事) and the quarterly contest of village heads (擂台比武)."
)


def build_service() -> Service:
    return Service(
        name=SERVICE,
        registry=registry,
        consumes=[readers],
        consumers=[*PROJECTIONS, *POLICIES],
        routers=[router],
        background=[notice_timer],
        description=DESCRIPTION,
    )
