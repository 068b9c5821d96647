"""Which tasks each forum's resolutions started, and when they are all done.

A forum's topic is resolved when the forum has been held and every task its resolutions
assigned is completed ("每解决一个问题就推进一项工作"). Resolutions and their tasks come from
meetings, completions (``TaskCompleted`` with the forum id) from rectification; the two arrive
in any order, so a completion may come before the task it completes is known.

A forum counts as done once its tasks are known (``expect`` was called, even with no tasks:
a resolution can be a policy document alone) and none is outstanding. The application layer
should call ``expect`` with all the tasks of the forum's outcomes at once; expecting more tasks
after the forum was found done would come too late, since its topic is already resolved.
"""

from __future__ import annotations

from collections.abc import Iterable


class ForumTaskLedger:
    def __init__(self) -> None:
        self._expected: dict[str, set[str]] = {}
        self._completed: dict[str, set[str]] = {}

    def expect(self, forum_id: str, task_ids: Iterable[str]) -> None:
        """The forum's resolutions assigned these tasks."""
        self._expected.setdefault(forum_id, set()).update(task_ids)

    def complete(self, forum_id: str, task_id: str) -> None:
        self._completed.setdefault(forum_id, set()).add(task_id)

    def outstanding(self, forum_id: str) -> frozenset[str]:
        return frozenset(self._expected.get(forum_id, set()) - self._completed.get(forum_id, set()))

    def is_done(self, forum_id: str) -> bool:
        return forum_id in self._expected and not self.outstanding(forum_id)
