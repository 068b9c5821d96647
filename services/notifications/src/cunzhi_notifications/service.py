"""The notifications service as the platform runs it: readers, ledger, sender, reminders, API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cunzhi_platform.runtime import Service

from .adapters.http import router
from .adapters.inbox import InboxChannel
from .adapters.ledger import Ledger
from .adapters.planner import Planner, RosterDirectory
from .adapters.reminders import reminder_timer
from .adapters.schema import MIGRATIONS
from .adapters.sender import Sender
from .channels.base import Channel
from .events import SERVICE, registry
from .readers import meetings, rectification, topics

DESCRIPTION = (
    "Every notice, reminder and alert of the other services delivered once, on the channels "
    "people use (in-app inbox, SMS, WeCom/DingTalk group robots, e-mail, outbound webhooks): "
    "a delivery ledger exactly once per (source event, recipient, kind, channel), preferences, "
    "quiet hours, digests and durable reminders. Recipients are person ids: phone numbers and "
    "e-mail addresses never appear in these events.\n\n"
    "Rules that are ours, not the source reports': reminders go out at 09:00 Asia/Shanghai on "
    "working days (tasks 3 and 1 working days before they are due, a call for topics the "
    "working day before it closes, a forum the working day before it is held, a speak-up issue "
    "nobody claimed after 3 working days; a reminder moved to a moment already passed, by a due "
    "date or forum brought forward, is dropped and recorded, not sent late), and a call for "
    "topics opened past its deadline asks nobody; the departments asked about a campaign's "
    "candidate villages, and the county organisation department told of a red light or an "
    "escalation, are the county's of the campaign or township (as CampaignOpened said), never a "
    "person whose county the directory does not say; a caller gives and takes away only "
    "directory roles at or below its own level, and a county only its own; the daily digest is "
    "at 18:00 unless a person chooses "
    "another time; a send is tried 6 times, 30 s apart doubling to at most 1 hour, with jitter, "
    "a provider's own wait honoured when longer; SMS status reports are asked for every 5 "
    "minutes for a day; the role notifications_admin (county IT) manages and previews templates, "
    "manages endpoints and anyone's directory entry, and with the person alone sees phone "
    "numbers and e-mail addresses whole; a template renders within 20,000 steps, a second and "
    "20,000 characters, and one that cannot render its kind's sample so is refused."
)


@dataclass
class NotificationsService(Service):
    channels: Mapping[str, Channel] = field(default_factory=dict)
    """The adapters, for the API to refuse an address they would never send to."""


def build_service(
    channels: Mapping[str, Channel] | None = None,
    *,
    name: str = SERVICE,
    sender: Sender | None = None,
) -> Service:
    """``channels``: the adapters by channel name; the inbox is always there."""
    adapters: dict[str, Channel] = {"inbox": InboxChannel(), **(channels or {})}
    sender = sender or Sender(name, adapters)
    return NotificationsService(
        name=name,
        registry=registry,
        consumes=[topics, meetings, rectification],
        consumers=[RosterDirectory(), Planner(sorted(adapters))],
        migrations=MIGRATIONS,
        routers=[router],
        background=[sender.loop(), reminder_timer(Ledger(name, adapters))],
        description=DESCRIPTION,
        channels=adapters,
    )
