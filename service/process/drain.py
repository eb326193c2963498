"""Whether this process is stopping, and what must happen when it stops accepting.

Process-wide because a signal is: the worker that receives it and every front that answers
readiness (REST, gRPC) live in the same process and must agree. `begin()` starts the drain
window (readiness 503, still serving); `stop_accepting()` ends it: each registered front
(e.g. the gRPC server) stops taking new calls at the same moment HTTP does, so their grace
periods run side by side instead of one after the other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class DrainState:
    def __init__(self) -> None:
        self.since: float | None = None
        self._lock = threading.Lock()
        self._on_stop: list[Callable[[], object]] = []
        self._stopped = False

    @property
    def draining(self) -> bool:
        return self.since is not None

    def begin(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def on_stop_accepting(self, callback: Callable[[], object]) -> None:
        """Call `callback` (from any thread) when this process stops accepting new work."""
        with self._lock:
            if not self._stopped:
                self._on_stop.append(callback)
                return
        callback()

    def forget(self, callback: Callable[[], object] | None) -> None:
        with self._lock:
            if callback is not None and callback in self._on_stop:
                self._on_stop.remove(callback)

    def stop_accepting(self) -> None:
        """Run every registered callback, once."""
        self.begin()
        with self._lock:
            callbacks, self._on_stop, self._stopped = self._on_stop, [], True
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one front failing to stop must not keep the others accepting
                log.exception("stopping %r failed", callback)


DRAIN = DrainState()
