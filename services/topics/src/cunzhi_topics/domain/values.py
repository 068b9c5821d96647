"""Checks on the free text people type into topics and issues."""

from __future__ import annotations

from cunzhi_platform.aggregate import DomainError

TITLE_MAX_CHARS = 100


def title(value: str, field: str = "title") -> str:
    """A title of 1–100 characters once surrounding blanks are trimmed."""
    cleaned = value.strip()
    if not cleaned:
        raise DomainError("the title is empty; give a short title", field=field)
    if len(cleaned) > TITLE_MAX_CHARS:
        raise DomainError(
            f"the title has {len(cleaned)} characters; shorten it to {TITLE_MAX_CHARS} or fewer "
            "and put the detail in the description",
            field=field,
        )
    return cleaned


def required_text(value: str, field: str, what: str) -> str:
    """Non-blank text; ``what`` says in words what is missing."""
    cleaned = value.strip()
    if not cleaned:
        raise DomainError(f"{what} is missing; fill it in", field=field)
    return cleaned
