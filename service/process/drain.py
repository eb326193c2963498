"""Whether this process is stopping: set once by the server on SIGTERM/SIGINT, read by readiness.

Process-wide because a signal is: the HTTP server that catches it and every front that answers
readiness (REST, gRPC) live in the same worker process and must agree.
"""

from __future__ import annotations

import time


class DrainState:
    def __init__(self) -> None:
        self.since: float | None = None

    @property
    def draining(self) -> bool:
        return self.since is not None

    def begin(self) -> None:
        if self.since is None:
            self.since = time.monotonic()


DRAIN = DrainState()
