"""Ids and stream ids of the campaign's aggregates (see ``events.campaign`` for the split)."""

from __future__ import annotations


def campaign_id(county_id: str, round_number: int) -> str:
    """``bincheng-R3`` for Bincheng's third round."""
    return f"{county_id}-R{round_number}"


def campaign_stream_id(campaign_id: str) -> str:
    return f"campaign:{campaign_id}"


def village_stream_id(campaign_id: str, village_id: str) -> str:
    return f"campaign-village:{campaign_id}:{village_id}"


def team_stream_id(campaign_id: str, team_id: str) -> str:
    return f"campaign-team:{campaign_id}:{team_id}"


def light_stream_id(campaign_id: str, village_id: str) -> str:
    return f"campaign-light:{campaign_id}:{village_id}"


def _parts(value: str, prefix: str) -> tuple[str, str]:
    kind, _, rest = value.partition(":")
    first, sep, second = rest.partition(":")
    if kind != prefix or not sep or not first or not second:
        raise ValueError(f"{value!r} is not a {prefix} stream id like '{prefix}:bincheng-R3:x'")
    return first, second


def parse_village_stream_id(value: str) -> tuple[str, str]:
    return _parts(value, "campaign-village")


def parse_team_stream_id(value: str) -> tuple[str, str]:
    return _parts(value, "campaign-team")


def parse_light_stream_id(value: str) -> tuple[str, str]:
    return _parts(value, "campaign-light")
