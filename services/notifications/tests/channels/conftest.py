"""Fake providers for the channel tests: real servers on loopback, one set per module."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from cunzhi_notifications.fakes import FakeProviders


@pytest_asyncio.fixture(scope="module")
async def fakes() -> AsyncIterator[FakeProviders]:
    async with FakeProviders() as started:
        yield started
