"""Settings of the rectification service, from the environment (prefix ``CUNZHI_TASKS_``).

The escalation of overdue tasks is **our** rule (the seeds say only that tasks have deadlines):
the village answers for a task from the end of its due day, the township party committee after
``ESCALATE_TO_TOWNSHIP_AFTER`` working days (default 3), the county organisation department
after ``ESCALATE_TO_COUNTY_AFTER`` working days (default 8), counted from the deadline.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .domain.tasks import EscalationPolicy


class TaskSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CUNZHI_TASKS_", extra="ignore")

    escalate_to_township_after: int = Field(3, ge=1, le=60)
    escalate_to_county_after: int = Field(8, ge=2, le=250)

    def escalation(self) -> EscalationPolicy:
        return EscalationPolicy(self.escalate_to_township_after, self.escalate_to_county_after)
