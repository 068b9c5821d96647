"""The topics service's domain: pure decisions, no I/O.

Aggregates (each a fold of its own stream) and the operations that span several of them:

- ``CallForTopics`` (call.py): a township's call for topics for one forum.
- ``Topic`` (topic.py): a topic from submission to resolution; ``merge_topics`` and
  ``select_topic`` span several topics and the call.
- ``Issue`` (issue.py): a speak-up issue and its claim; ``promote_issue`` makes it a topic.
- ``TownshipCategories`` (categories.py): the topic categories a township adds to the built-in
  ones.
- ``ForumTaskLedger`` (forum_tasks.py): when a forum's work is all done.
"""

from .call import CallForTopics, CallState, CallTimes, call_stream_id
from .categories import (
    CODE_PATTERN,
    Category,
    TownshipCategories,
    categories_stream_id,
    check_category,
)
from .forum_tasks import ForumTaskLedger
from .issue import Claimant, Issue, IssueState, issue_stream_id, promote_issue
from .topic import (
    Decline,
    Defer,
    Disposition,
    Refer,
    StationHead,
    Submitter,
    Topic,
    TopicState,
    VillageSecretary,
    cancel_forum_call,
    merge_topics,
    select_topic,
    topic_stream_id,
)

__all__ = [
    "CODE_PATTERN",
    "CallForTopics",
    "CallState",
    "CallTimes",
    "Category",
    "Claimant",
    "Decline",
    "Defer",
    "Disposition",
    "ForumTaskLedger",
    "Issue",
    "IssueState",
    "Refer",
    "StationHead",
    "Submitter",
    "Topic",
    "TopicState",
    "TownshipCategories",
    "VillageSecretary",
    "call_stream_id",
    "cancel_forum_call",
    "categories_stream_id",
    "check_category",
    "issue_stream_id",
    "merge_topics",
    "promote_issue",
    "select_topic",
    "topic_stream_id",
]
