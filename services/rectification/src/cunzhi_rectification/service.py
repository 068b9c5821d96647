"""The rectification service as the platform runs it: events, read models, policies, routes,
timers. Tracked work items (``adapters.tasks``) and the weak-village campaign each bring theirs.
"""

from __future__ import annotations

from cunzhi_platform.runtime import Service

from .adapters.campaign.http import CAMPAIGN_ROUTERS
from .adapters.campaign.policies import CAMPAIGN_POLICIES, campaign_timer
from .adapters.campaign.projections import CAMPAIGN_PROJECTIONS
from .adapters.tasks.http import router as tasks_router
from .adapters.tasks.policy import ResolutionTasksPolicy
from .adapters.tasks.projection import TasksProjection
from .adapters.tasks.timer import CALENDAR_YEARS, deadline_timer
from .events import SERVICE, registry
from .inbound import readers
from .settings import TaskSettings

DESCRIPTION = (
    "Every tracked work item (任务) — the tasks of forum resolutions and the targets of the "
    "weak-village campaign (薄弱村集中整顿攻坚) — from assignment to completion: progress "
    "reports with evidence, due dates in Chinese working days, overdue tasks escalated from "
    "the village to the township and the county."
)


def build_service(task_settings: TaskSettings | None = None) -> Service:
    tasks = task_settings or TaskSettings()
    return Service(
        name=SERVICE,
        registry=registry,
        consumes=[readers],
        consumers=[
            TasksProjection(),
            ResolutionTasksPolicy(),
            *CAMPAIGN_PROJECTIONS,
            *CAMPAIGN_POLICIES,
        ],
        routers=[tasks_router, *CAMPAIGN_ROUTERS],
        background=[deadline_timer(tasks.escalation()), campaign_timer],
        migrations=[CALENDAR_YEARS],
        description=DESCRIPTION,
    )
