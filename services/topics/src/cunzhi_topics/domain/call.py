"""The call for topics (征集议题) of one township for one forum: stream ``call:{township}:{forum}``.

Decisions the application layer relies on:

- **Opening.** The call is scheduled when meetings publishes ``ForumPlanned`` and opens at the
  start of the 10th day before the forum (D−10, 00:00 Asia/Shanghai): the party-building office
  then asks every station and village for topics. If ``ForumPlanned`` arrives later than that,
  the call opens at once. A long holiday can pull the deadline back to before D−10 (a forum
  at the end of February 2026 closes on 13 February, before the Spring Festival break, while D−10
  is the 17th); then the call opens earlier, at the start of the working day before the
  deadline, so that it is never open for less than two working days.
- **Closing.** Submissions close at 17:30 on the 5th working day before the forum. Meetings
  notices the attendees at 09:00 on the 3rd working day before it, and cannot without a
  topic: so the office and the committee always keep one whole working day in between to
  consolidate and select. (Counting calendar days instead, as a first version did, put the
  deadline after the notice for every forum held on a Monday to Wednesday.)
- **Late submissions are refused** (409) with a message naming the deadline: the topic can go
  to the township's next call, which opens 10 days before its next forum. Topics the committee
  defers are carried into that next call (``Topic.carry_over``) when it opens.
- A forum planned less than five days ahead gets a call already past its deadline when it
  opens: nothing new can be submitted, but deferred topics are still carried into it and the
  committee can select among them.
- The committee selects only after the deadline, so that no submission is left out; selecting
  closes the call if the closing timer has not done so yet.
- **A postponed forum** moves its call: opening and deadline are computed again from the new
  date. A call already closed whose new deadline is still ahead is open again (villages get
  the extra time the postponement gives); a decided call keeps its topic. (Ours: the reports
  do not say what a postponement does to the call.)
- **A cancelled forum** cancels its call; its topics, the selected one included, go back to
  the township's next call with their history (``cancel_forum_call``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from cunzhi_platform.aggregate import Aggregate, InvalidTransition
from cunzhi_platform.clock import SHANGHAI, working_days_before
from cunzhi_platform.events import Event

from ..events import (
    CallForTopicsCancelled,
    CallForTopicsClosed,
    CallForTopicsDecided,
    CallForTopicsOpened,
    CallForTopicsRescheduled,
    CallForTopicsScheduled,
)

OPENS_DAYS_BEFORE_FORUM = 10
CLOSES_WORKING_DAYS_BEFORE_FORUM = 5
CLOSING_TIME = dt.time(17, 30)
MIN_WORKING_DAYS_OPEN = 2


class CallState(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"
    CLOSED = "closed"
    DECIDED = "decided"
    CANCELLED = "cancelled"


def shanghai_time(moment: dt.datetime) -> str:
    """How a deadline reads in a message: ``2026-09-30 17:30``, Shanghai time."""
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class CallTimes:
    """When a forum's call for topics opens and closes (see the module docstring)."""

    forum_date: dt.date
    opens_at: dt.datetime
    closes_at: dt.datetime

    @classmethod
    def for_forum(cls, forum_date: dt.date) -> CallTimes:
        deadline_day = working_days_before(forum_date, CLOSES_WORKING_DAYS_BEFORE_FORUM)
        opening_day = min(
            forum_date - dt.timedelta(days=OPENS_DAYS_BEFORE_FORUM),
            working_days_before(deadline_day, MIN_WORKING_DAYS_OPEN - 1),
        )
        return cls(
            forum_date=forum_date,
            opens_at=dt.datetime.combine(opening_day, dt.time(0), tzinfo=SHANGHAI),
            closes_at=dt.datetime.combine(deadline_day, CLOSING_TIME, tzinfo=SHANGHAI),
        )


def call_stream_id(township_id: str, forum_id: str) -> str:
    if ":" in township_id:
        raise ValueError(f"township id {township_id!r} must not contain ':'")
    return f"call:{township_id}:{forum_id}"


class CallForTopics(Aggregate):
    """One township's call for topics for one forum, from planned to decided."""

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        prefix, _, rest = aggregate_id.partition(":")
        township_id, separator, forum_id = rest.partition(":")
        if prefix != "call" or not separator:
            raise ValueError(f"{aggregate_id!r} is not a call stream id; use call_stream_id()")
        self.township_id = township_id
        self.forum_id = forum_id
        self.times: CallTimes | None = None
        self.state: CallState | None = None
        self.selected_topic_id: str | None = None

    # -- commands -----------------------------------------------------------------------------

    def schedule(self, forum_date: dt.date, now: dt.datetime) -> list[Event]:
        """``ForumPlanned`` arrived: plan the call, and open it now if D−10 has passed."""
        times = CallTimes.for_forum(forum_date)
        if self.times == times:
            return []  # ForumPlanned delivered again
        if self.times is not None:
            raise InvalidTransition(
                f"the call for topics of forum {self.forum_id} is already planned for a forum "
                f"on {self.times.forum_date}; moving a planned forum is not supported"
            )
        events: list[Event] = [
            CallForTopicsScheduled(
                township_id=self.township_id,
                forum_id=self.forum_id,
                forum_date=forum_date,
                opens_at=times.opens_at,
                closes_at=times.closes_at,
            )
        ]
        if now >= times.opens_at:
            events.append(self._opened(times, now))
        return events

    def reschedule(self, forum_date: dt.date, reason: str, now: dt.datetime) -> list[Event]:
        """``ForumPostponed`` arrived: the call moves with its forum (see the module docstring)."""
        times = self._planned()
        self._require_not_cancelled()
        moved = CallTimes.for_forum(forum_date)
        if moved == times:
            return []  # ForumPostponed delivered again
        reopens = self.state is CallState.CLOSED and now < moved.closes_at
        events: list[Event] = [
            CallForTopicsRescheduled(
                township_id=self.township_id,
                forum_id=self.forum_id,
                previous_forum_date=times.forum_date,
                forum_date=forum_date,
                opens_at=moved.opens_at,
                closes_at=moved.closes_at,
                reopens=reopens,
                reason=reason,
                rescheduled_at=now,
            )
        ]
        if (self.state is CallState.SCHEDULED or reopens) and now >= moved.opens_at:
            events.append(self._opened(moved, now))
        return events

    def cancel(self, reason: str, now: dt.datetime) -> list[Event]:
        """``ForumCancelled`` arrived: the call takes nothing more."""
        times = self._planned()
        if self.state is CallState.CANCELLED:
            return []  # ForumCancelled delivered again
        return [
            CallForTopicsCancelled(
                township_id=self.township_id,
                forum_id=self.forum_id,
                forum_date=times.forum_date,
                reason=reason,
                cancelled_at=now,
            )
        ]

    def open(self, now: dt.datetime) -> list[Event]:
        times = self._planned()
        if self.state is not CallState.SCHEDULED:
            raise InvalidTransition(f"the call for topics of forum {self.forum_id} is {self.state}")
        if now < times.opens_at:
            raise InvalidTransition(
                f"the call for topics of forum {self.forum_id} opens at "
                f"{shanghai_time(times.opens_at)}, not before"
            )
        return [self._opened(times, now)]

    def close(self, now: dt.datetime) -> list[Event]:
        times = self._planned()
        if self.state is not CallState.OPEN:
            raise InvalidTransition(
                f"only an open call can close; the call for topics of forum {self.forum_id} "
                f"is {self.state}"
            )
        if now < times.closes_at:
            raise InvalidTransition(
                f"the call for topics of forum {self.forum_id} is open until "
                f"{shanghai_time(times.closes_at)}"
            )
        return [self._closed(times, now)]

    def decide(
        self,
        selected_topic_id: str,
        deferred_topic_ids: list[str],
        referred_topic_ids: list[str],
        declined_topic_ids: list[str],
        decided_by: str,
        now: dt.datetime,
    ) -> list[Event]:
        """Record the committee's choice; ``select_topic`` checks the topics themselves."""
        times = self._planned()
        self._require_not_cancelled()
        if self.state is CallState.DECIDED:
            raise InvalidTransition(
                f"forum {self.forum_id} already has its topic ({self.selected_topic_id}); "
                "a forum takes exactly one topic"
            )
        if self.state is CallState.SCHEDULED:
            raise InvalidTransition(
                f"the call for topics of forum {self.forum_id} has not opened yet; it opens at "
                f"{shanghai_time(times.opens_at)}"
            )
        if now < times.closes_at:
            raise InvalidTransition(
                f"the call for topics of forum {self.forum_id} is open until "
                f"{shanghai_time(times.closes_at)}; select the topic after it closes so that "
                "no submission is left out"
            )
        events: list[Event] = []
        if self.state is CallState.OPEN:
            events.append(self._closed(times, now))
        events.append(
            CallForTopicsDecided(
                township_id=self.township_id,
                forum_id=self.forum_id,
                forum_date=times.forum_date,
                selected_topic_id=selected_topic_id,
                deferred_topic_ids=deferred_topic_ids,
                referred_topic_ids=referred_topic_ids,
                declined_topic_ids=declined_topic_ids,
                decided_by=decided_by,
                decided_at=now,
            )
        )
        return events

    # -- checks other aggregates' commands make on the call --------------------------------------

    def require_open_for_submissions(self, now: dt.datetime) -> None:
        """Refuse unless topics can be submitted, revised or withdrawn at ``now``."""
        times = self._planned()
        self._require_not_cancelled()
        if self.state is CallState.SCHEDULED:
            raise InvalidTransition(
                f"the call for topics for the forum on {times.forum_date} opens at "
                f"{shanghai_time(times.opens_at)}; submit the topic then"
            )
        if self.state is not CallState.OPEN or now >= times.closes_at:
            raise InvalidTransition(
                f"the call for topics for the forum on {times.forum_date} closed at "
                f"{shanghai_time(times.closes_at)} (Asia/Shanghai); submit the topic to the "
                f"township's next call, which opens {OPENS_DAYS_BEFORE_FORUM} days before its "
                "next forum"
            )

    def require_taking_carried_over_topics(self) -> None:
        self._planned()
        if self.state not in (CallState.OPEN, CallState.CLOSED):
            raise InvalidTransition(
                f"deferred topics are carried into a call once it has opened and until its "
                f"topic is selected; the call for topics of forum {self.forum_id} is {self.state}"
            )

    # -- fold ---------------------------------------------------------------------------------

    def _on_CallForTopicsScheduled(self, event: CallForTopicsScheduled) -> None:
        self.times = CallTimes(event.forum_date, event.opens_at, event.closes_at)
        self.state = CallState.SCHEDULED

    def _on_CallForTopicsOpened(self, event: CallForTopicsOpened) -> None:
        self.state = CallState.OPEN

    def _on_CallForTopicsClosed(self, event: CallForTopicsClosed) -> None:
        self.state = CallState.CLOSED

    def _on_CallForTopicsDecided(self, event: CallForTopicsDecided) -> None:
        self.state = CallState.DECIDED
        self.selected_topic_id = event.selected_topic_id

    def _on_CallForTopicsRescheduled(self, event: CallForTopicsRescheduled) -> None:
        self.times = CallTimes(event.forum_date, event.opens_at, event.closes_at)
        if event.reopens:
            self.state = CallState.SCHEDULED

    def _on_CallForTopicsCancelled(self, event: CallForTopicsCancelled) -> None:
        self.state = CallState.CANCELLED

    # -- helpers ------------------------------------------------------------------------------

    def _planned(self) -> CallTimes:
        if self.times is None:
            raise InvalidTransition(
                f"township {self.township_id} has no call for topics for forum {self.forum_id}; "
                "a call is opened when its forum is planned"
            )
        return self.times

    def _require_not_cancelled(self) -> None:
        if self.state is CallState.CANCELLED:
            raise InvalidTransition(
                f"forum {self.forum_id} was cancelled, and its call for topics with it; topics "
                "go to the township's next call"
            )

    def _opened(self, times: CallTimes, now: dt.datetime) -> CallForTopicsOpened:
        return CallForTopicsOpened(
            township_id=self.township_id,
            forum_id=self.forum_id,
            forum_date=times.forum_date,
            opened_at=now,
            closes_at=times.closes_at,
        )

    def _closed(self, times: CallTimes, now: dt.datetime) -> CallForTopicsClosed:
        return CallForTopicsClosed(
            township_id=self.township_id,
            forum_id=self.forum_id,
            forum_date=times.forum_date,
            closed_at=now,
        )
