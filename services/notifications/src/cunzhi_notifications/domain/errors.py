"""Refusals of the notifications domain, answered by the platform's error handler."""

from __future__ import annotations

from cunzhi_platform.aggregate import DomainError


class UnknownKind(DomainError):
    status = 422


class InvalidPreference(DomainError):
    status = 422


class TemplateError(DomainError):
    """A template that does not parse, does not render with the sample data, or is too long."""

    status = 422
