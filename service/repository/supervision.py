"""Background loops that cannot fail silently.

Each loop runs one round (an async step) every interval. A round that raises is logged, counted
in `dlwp_background_failures_total{loop}` and tried again after a back-off that doubles up to
`MAX_BACKOFF_S` (never more often than the loop's own interval). `trouble` names a loop that
has failed `UNREADY_AFTER` rounds in a row, or one that stopped without being asked: readiness
answers 503 with it, so a probe notices, and turns back to 200 at the first round that succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.errors import DlwpError
from service.observability import metrics

log = logging.getLogger(__name__)

UNREADY_AFTER = 3  # rounds failed in a row: with the sync loop's 0.1 s, within a second
MAX_BACKOFF_S = 10.0

Step = Callable[[], Awaitable[None]]


@dataclass
class _Loop:
    name: str
    interval_s: float
    failures: int = 0  # in a row
    last_error: str = ""
    stopped: bool = False


class Supervisor:
    """Starts named loops on the running event loop and knows whether each is healthy."""

    def __init__(self, unready_after: int = UNREADY_AFTER) -> None:
        self.unready_after = unready_after
        self._loops: list[_Loop] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self, name: str, step: Step, interval_s: float) -> None:
        loop = _Loop(name, interval_s)
        task = asyncio.get_running_loop().create_task(self._run(loop, step), name=f"dlwp-{name}")
        task.add_done_callback(lambda done: self._ended(loop, done))
        self._loops.append(loop)
        self._tasks.append(task)

    @property
    def trouble(self) -> str | None:
        """Why a loop cannot be relied on now, or None."""
        for loop in self._loops:
            if loop.stopped:
                return f"the background {loop.name} loop stopped: {loop.last_error}"
            if loop.failures >= self.unready_after:
                return (
                    f"the background {loop.name} loop failed {loop.failures} times in a row "
                    f"(last: {loop.last_error}); retrying"
                )
        return None

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, loop: _Loop, step: Step) -> None:
        delay = loop.interval_s
        while True:
            await asyncio.sleep(delay)
            try:
                await step()
            except Exception as error:
                loop.failures += 1
                loop.last_error = _describe(error)
                metrics.BACKGROUND_FAILURES.labels(loop.name).inc()
                delay = min(loop.interval_s * 2**loop.failures,
                            max(loop.interval_s, MAX_BACKOFF_S))  # fmt: skip
                log.error("background %s loop failed (%d in a row), next try in %.1f s: %s",
                          loop.name, loop.failures, delay, loop.last_error)  # fmt: skip
                continue
            if loop.failures:
                log.info("background %s loop recovered after %d failures",
                         loop.name, loop.failures)  # fmt: skip
            loop.failures = 0
            delay = loop.interval_s

    def _ended(self, loop: _Loop, task: asyncio.Task[None]) -> None:
        if self._stopping:
            return
        # Only something that is not an Exception (or a cancel from elsewhere) gets here.
        loop.stopped = True
        error = None if task.cancelled() else task.exception()
        loop.last_error = "cancelled" if error is None else _describe(error)
        log.error("background %s loop stopped: %s", loop.name, loop.last_error)


def _describe(error: BaseException) -> str:
    if isinstance(error, DlwpError):
        return error.message
    return f"{type(error).__name__}: {error}"
