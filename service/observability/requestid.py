"""Request ids: every response carries `X-Request-ID`, and every log line about a request holds it.

The id is the client's `X-Request-ID` when it sent a usable one (1–128 visible ASCII characters,
so nothing can forge log lines or grow them without bound), else a new random one. It lives in a
context variable for the duration of the request, where the JSON log lines (logs.py)
find it. Any transport can do the same: `accept_or_new(incoming)` then `with bound(request_id):`
around the call, and send the id back (HTTP: a response header; gRPC: trailing metadata).
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Iterator

from service.observability.logs import REQUEST_ID

HEADER = "x-request-id"
HEADER_BYTES = HEADER.encode()
_USABLE = re.compile(r"[!-~]{1,128}")

# Ids need to be unique, not secret: a PRNG seeded from the OS is 4x cheaper than os.urandom.
_random = random.Random()


def accept_or_new(incoming: str | bytes | None) -> str:
    """The client's id when usable, else a new one (32 hex digits)."""
    if isinstance(incoming, bytes):
        incoming = incoming.decode("latin-1")
    if incoming and _USABLE.fullmatch(incoming):
        return incoming
    return f"{_random.getrandbits(128):032x}"


@contextlib.contextmanager
def bound(request_id: str) -> Iterator[str]:
    """Make `request_id` the current request's id (for logs) until the block ends."""
    token = REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        REQUEST_ID.reset(token)
