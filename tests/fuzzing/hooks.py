"""Schemathesis hooks for ``tests/test_fuzz.py``: tokens of several roles, one per case.

The tokens come from ``CUNZHI_FUZZ_TOKENS`` (a JSON list the test signs with its settings); a
case gets one picked by a generator seeded from ``CUNZHI_FUZZ_SEED``, so a run repeats.
"""

from __future__ import annotations

import json
import os
import random

import schemathesis
from schemathesis.core.failures import Failure

_TOKENS: list[str] = json.loads(os.environ.get("CUNZHI_FUZZ_TOKENS", "[]"))
_PICK = random.Random(int(os.environ.get("CUNZHI_FUZZ_SEED", "0")))


@schemathesis.auth()
class Roles:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> list[str]:
        return _TOKENS

    def set(self, case: schemathesis.Case, data: list[str], ctx: schemathesis.AuthContext) -> None:
        headers = {**(case.headers or {}), "Authorization": f"Bearer {_PICK.choice(data)}"}
        if "Idempotency-Key" in headers:
            # A client draws a new key per command: one drawn twice for another request is
            # rightly refused (422), which is the retry tests' matter, not the schema's.
            headers["Idempotency-Key"] = f"fuzz-{_PICK.getrandbits(64):016x}"
        case.headers = headers


DOMAIN_RULES: dict[tuple[str, str], dict[str, str]] = {
    ("POST", "/topics/merge"): {
        "merged_topic_ids": "the surviving topic is not among those it absorbs",
    },
    ("POST", "/townships/{township_id}/contests"): {
        "participants": "each village takes part once",
        "ranking": "the ranking names exactly the villages taking part",
    },
    ("POST", "/townships/{township_id}/forums"): {
        "host_unit": "only a field visit has a host unit",
        "exchange_speaker_ids": "speakers are the township's village secretaries on its roster",
    },
    ("POST", "/townships/{township_id}/forums/history"): {
        "host_unit": "only a field visit has a host unit",
    },
    ("POST", "/villages/{village_id}/speak-up-sessions"): {
        "date": "a speak-up day: the 5th, 15th or 25th of a lunar month",
    },
    ("POST", "/forums/{forum_id}/postpone"): {"date": "a new date, not the forum's own"},
    ("POST", "/townships/{township_id}/roster.csv"): {"file": "the rows of the file"},
    ("POST", "/campaigns/{campaign_id}/villages"): {
        "township_id": "a township of the campaign",
    },
    ("POST", "/campaigns/{campaign_id}/villages.csv"): {"file": "the rows of the file"},
    ("POST", "/people/import"): {"file": "the rows of the file"},
    ("PUT", "/people/{person_id}/schedule"): {
        "quiet_end": "quiet hours have a start and an end, and they differ",
    },
    ("PUT", "/people/{person_id}/preferences/{kind_code}/{channel}"): {
        "enabled": "a mandatory kind stays on on its channels",
        "digest": "a time-critical kind, or the inbox, is never digested",
    },
    ("POST", "/templates/{kind_code}/{channel}/preview"): {
        "body": "the template renders with the data of its kind",
    },
    ("POST", "/tasks/{task_id}/progress"): {
        "note": "a report of no progress says why",
        "percent": "progress never goes back",
    },
    ("POST", "/campaigns/{campaign_id}/teams/{team_id}/on-duty"): {
        "on_duty_days": "the team's own members",
    },
    ("POST", "/townships/{township_id}/roster"): {
        "village_id": "a village secretary names their village",
    },
    ("PUT", "/endpoints/{endpoint_id}"): {"url": "an address a URL parser reads"},
    ("PUT", "/groups/{group_id}"): {"webhook_url": "an address a URL parser reads"},
    ("POST", "/campaigns/{campaign_id}/teams/{team_id}/targets/{target_id}/progress"): {
        "note": "a report of no progress says why",
        "percent": "progress never goes back",
    },
    ("POST", "/tasks/{task_id}/completion"): {"evidence": "evidence or a summary of the work"},
    ("POST", "/campaigns/{campaign_id}/teams/{team_id}/targets/{target_id}/completion"): {
        "evidence": "evidence or a summary of the work",
    },
    ("POST", "/tasks/{task_id}/due-date"): {"due_on": "not before the task starts"},
    ("POST", "/campaigns/{campaign_id}/villages/{village_id}/targets"): {
        "area": "an area of the round",
        "task_kind": "a task kind of the round",
        "due_date": "within the round",
    },
    ("POST", "/campaigns/{campaign_id}/teams/{team_id}/assessments"): {
        "common": "each indicator within the full marks its round set",
    },
}
"""Refusals of schema-valid data that a JSON Schema cannot state: a rule between fields, or one
that depends on what is stored. ``positive_data_acceptance`` lets these pass — only as the
domain's refusal (422 with no validation errors) on the field named — and flags every other
refusal of data the document admits (a rule of the schema missing from it)."""


@schemathesis.hook
def filter_failure(
    ctx: schemathesis.HookContext,
    failure: Failure,
    case: schemathesis.Case,
    response: schemathesis.Response,
) -> bool:
    if failure.code != "ST202" or response.status_code != 422:
        return True
    rules = DOMAIN_RULES.get((case.operation.method.upper(), case.operation.path), {})
    try:
        problem = response.json()
    except ValueError:
        return True
    return not (problem.get("field") in rules and not problem.get("errors"))
