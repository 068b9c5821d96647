"""Personal data (个人信息): phone numbers and e-mail addresses, masked for the others.

Only the person and the notification administrators see them whole; everyone else (the
township office looking at its roster, the county) sees enough to recognise them.
"""

from __future__ import annotations


def mask_phone(phone: str | None) -> str | None:
    """13812345678 → 138****5678."""
    if not phone:
        return phone
    return phone[:3] + "*" * max(len(phone) - 7, 1) + phone[-4:] if len(phone) > 7 else "****"


def mask_email(email: str | None) -> str | None:
    """wang.shuji@example.cn → w***@example.cn."""
    if not email:
        return email
    local, at, domain = email.partition("@")
    return f"{local[:1]}***{at}{domain}"


def mask_url(url: str | None) -> str | None:
    """A robot's webhook URL carries its access token: show where it goes, not the token."""
    if not url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/')[0]}/…"
