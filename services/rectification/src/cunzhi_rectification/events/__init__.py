"""Events the rectification service publishes on ``cunzhi.rectification.events``.

Grouped by subject: ``tasks``, every tracked work item (forum resolution tasks and campaign
targets); ``campaign``, the weak-village campaign (薄弱村整顿攻坚).
"""

from __future__ import annotations

from . import campaign
from .base import SERVICE, registry
from .tasks import TaskCompleted

__all__ = ["SERVICE", "TaskCompleted", "campaign", "registry"]
