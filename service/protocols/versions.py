"""Model versions as clients name them: in a path, or in a message's `version` string."""

from __future__ import annotations

from service.errors import BadRequestError


def parse_version(text: str) -> int:
    """A version named by a client, as an integer (400 otherwise)."""
    if not (text.isascii() and text.isdigit()):
        raise BadRequestError(f"version must be a positive integer, got {text!r}")
    return int(text)


def optional_version(text: str) -> int | None:
    """A `version` field that may be empty: empty means the served one; otherwise as above."""
    return parse_version(text) if text else None
