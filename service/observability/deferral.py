"""Work done per many requests instead of per request: flushed by count, or soon after the first."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class FlushSoon:
    """Calls `flush()` once `limit` items are pending, or `delay_s` after the first one.

    For per-request bookkeeping (signals, access-log lines) whose fixed cost per call dwarfs the
    work per item: requests only queue, and the work runs in batches on the event loop.
    """

    def __init__(self, flush: Callable[[], None], limit: int, delay_s: float) -> None:
        self._flush = flush
        self.limit = limit
        self.delay_s = delay_s
        self._pending = 0
        self._timer: asyncio.TimerHandle | None = None

    def added(self, items: int = 1) -> None:
        """Count items just queued; flush now or make sure a flush is scheduled."""
        self._pending += items
        if self._pending >= self.limit:
            self._flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.delay_s, self._flush)
            except RuntimeError:  # no event loop (a direct call): nothing to wait for
                self._flush()

    def flushed(self) -> None:
        """Called by `flush()` itself: nothing is pending any more."""
        self._pending = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
