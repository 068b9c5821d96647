"""Notification kinds (通知类别): who is told what, on which channels by default.

Each kind has its own templates (one per channel), default channels a person may change in
their preferences, and two flags: ``mandatory`` kinds cannot be switched off (the forum notice:
attendees must prepare remarks), ``urgent`` kinds go through quiet hours (a village turning red).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.errors import UnknownKind

PERSON_CHANNELS = ("inbox", "sms", "email", "wecom", "dingtalk")
"""Channels that reach one person. ``inbox`` needs no address: every person has one."""
GROUP_CHANNELS = ("wecom", "dingtalk")
"""Group robots (群机器人), one per township or village group."""
CHANNELS = (*PERSON_CHANNELS, "webhook")


@dataclass(frozen=True)
class Kind:
    code: str
    label: str
    """The kind in Chinese, as people see it in their preferences."""
    channels: tuple[str, ...]
    """Default channels for a person."""
    groups: bool = False
    """Also posted to the groups of the township (one message per group)."""
    mandatory: bool = False
    urgent: bool = False

    @property
    def digestible(self) -> bool:
        """Time-critical kinds are never held for a digest."""
        return not (self.mandatory or self.urgent)


KINDS: dict[str, Kind] = {
    k.code: k
    for k in (
        Kind("call_opened", "议题征集通知", ("inbox", "sms"), groups=True),
        Kind("call_closing", "议题征集截止提醒", ("inbox", "sms")),
        Kind("topic_progress", "议题进展", ("inbox",)),
        Kind("forum_notice", "论坛通知", ("inbox", "sms", "email"), groups=True, mandatory=True),
        Kind("forum_eve", "论坛前一日提醒", ("inbox", "sms"), mandatory=True),
        Kind("forum_postponed", "论坛延期通知", ("inbox", "sms"), groups=True, mandatory=True),
        Kind("forum_cancelled", "论坛取消通知", ("inbox", "sms"), groups=True, mandatory=True),
        Kind("issue_unclaimed", "群众诉求待领办", ("inbox", "sms")),
        Kind("issue_progress", "领办进展", ("inbox",)),
        Kind("task_due", "任务到期提醒", ("inbox", "sms")),
        Kind("task_overdue", "任务逾期", ("inbox", "sms"), mandatory=True),
        Kind("task_escalated", "任务督办", ("inbox", "sms"), mandatory=True),
        Kind("task_progress", "议题任务进展", ("inbox",)),
        Kind("red_light", "亮红灯", ("inbox", "sms"), groups=True, mandatory=True, urgent=True),
        Kind("report_late", "报告逾期", ("inbox", "sms"), mandatory=True),
        # To the team owing a campaign report, once its period ends (at 09:00 if that is in the
        # night) and again at 09:00 the working day before it is due (ours); no more once the
        # report is in or late.
        Kind("report_due", "报告提醒", ("inbox", "sms")),
        # To 纪委, 政法委 and 信访 (the roles asked) and the county organisation department when
        # the candidate villages are selected; ``respond_by`` is rectification's setting.
        Kind("verification_requested", "征求核查意见", ("inbox", "sms", "email")),
    )
}


def kind(code: str) -> Kind:
    try:
        return KINDS[code]
    except KeyError:
        raise UnknownKind(
            f"unknown notification kind {code!r}; known: {', '.join(sorted(KINDS))}",
            field="kind",
        ) from None
