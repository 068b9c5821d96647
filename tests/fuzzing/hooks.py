"""Schemathesis hooks for ``tests/test_fuzz.py``: tokens of several roles, one per case.

The tokens come from ``CUNZHI_FUZZ_TOKENS`` (a JSON list the test signs with its settings); a
case gets one picked by a generator seeded from ``CUNZHI_FUZZ_SEED``, so a run repeats.
"""

from __future__ import annotations

import json
import os
import random

import schemathesis

_TOKENS: list[str] = json.loads(os.environ.get("CUNZHI_FUZZ_TOKENS", "[]"))
_PICK = random.Random(int(os.environ.get("CUNZHI_FUZZ_SEED", "0")))


@schemathesis.auth()
class Roles:
    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> list[str]:
        return _TOKENS

    def set(self, case: schemathesis.Case, data: list[str], ctx: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {_PICK.choice(data)}"}
