"""Dynamic batching: one bounded queue of rows and one worker per served model version.

The worker takes everything queued, up to `max_batch_size` rows, as soon as the model is free,
so a lone request runs at once and batches grow by themselves under load. Rows, not requests,
count toward the cap and the queue bound. The model call runs in a thread (TensorFlow releases
the GIL), never on the event loop. Each request gets back exactly its own rows, in order; a model
failure is retried request by request, so one bad request never fails its batch-mates.

Admission comes before work: a request reserves its rows in the queue before it is encoded, so
a request that will be refused is refused before it costs any preprocessing, and one that was
admitted is never refused afterwards. When the queue is full, a request waits (FIFO, up to
`admission_wait_s`) for room instead of being refused at once: clients that retry at once
(most load generators, many client pools) would otherwise spin on cheap refusals and crowd the
admitted work off the event loop; held, each client costs at most one refusal per wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from service.errors import DeadlineExceededError, PayloadTooLargeError, UnavailableError
from service.model.runtime import Predictor

log = logging.getLogger(__name__)


@dataclass
class BatchStats:
    """What one model call did, reported to the metrics."""

    rows: int
    queue_waits_s: list[float]
    compute_s: float


@dataclass
class _Waiter:
    """A request waiting for room in the queue; its future resolves once its rows are reserved."""

    rows: int
    future: asyncio.Future[None]


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued_at: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(
        self,
        predictor: Predictor,
        executor: Executor,
        *,
        max_batch_size: int,
        max_queue_rows: int,
        batch_delay_s: float = 0.0,
        admission_wait_s: float = 0.0,
        on_batch: Callable[[BatchStats], None] | None = None,
        on_queue_change: Callable[[int], None] | None = None,
    ) -> None:
        self._predictor = predictor
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_queue_rows = max_queue_rows
        self._batch_delay_s = batch_delay_s
        self.admission_wait_s = admission_wait_s
        self._on_batch = on_batch
        self._on_queue_change = on_queue_change
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        # Rows admitted but not queued yet (their request is being encoded); they count toward
        # the queue bound, so admission is a promise the queue keeps.
        self._reserved_rows = 0
        self._waiters: deque[_Waiter] = deque()
        self._wakeup = asyncio.Event()
        self._busy = False
        self._closing = False
        self._worker = asyncio.get_running_loop().create_task(self._run())

    @property
    def idle(self) -> bool:
        return not (self._queue or self._busy or self._reserved_rows or self._waiters)

    async def submit(self, rows: np.ndarray, timeout_s: float) -> np.ndarray:
        """Queue rows for the model and wait for their outputs (same order, same count)."""
        return await self.predict(lambda: rows, timeout_s, len(rows))

    async def predict(
        self, encode: Callable[[], np.ndarray], timeout_s: float, count: int | None = None
    ) -> np.ndarray:
        """Admit `count` rows, then run `encode()` and queue its rows; outputs in row order.

        With `count` given, admission (a wait for room, or a 503) comes before `encode` runs;
        without it, the rows are encoded first and counted. Once admitted, a request is never
        refused. A request with more rows than the queue can ever hold gets 413 at once.
        """
        rows = None
        if count is None:
            rows = encode()
            count = len(rows)
        if count > self.max_queue_rows:
            raise PayloadTooLargeError(
                f"this request carries {count} rows; a model's queue holds at most "
                f"{self.max_queue_rows} (DLWP_MAX_QUEUE_ROWS): send at most that many per request"
            )
        if not self._try_reserve(count):
            await self._wait_for_room(count)
        if rows is None:
            rows = self._encode_reserved(encode, count)
        return await self._enqueue(rows, count, timeout_s)

    @property
    def occupied(self) -> bool:
        """The model is computing a batch or rows wait for it: spare work run now (another
        version's shadow batch, on the same cores) would delay answers."""
        return not self.idle

    async def predict_spare(
        self, encode: Callable[[], np.ndarray], timeout_s: float, count: int
    ) -> np.ndarray | None:
        """Work that may be dropped (a rollout's shadow rows): run only if its `count` rows fit
        in the next batch at once (and no request waits for room); None, with nothing encoded,
        when the model is busy."""
        waiting = self._queued_rows + self._reserved_rows
        if self._closing or self._waiters or waiting + max(count, 1) > self.max_batch_size:
            return None
        self._reserved_rows += count
        return await self._enqueue(self._encode_reserved(encode, count), count, timeout_s)

    def _encode_reserved(self, encode: Callable[[], np.ndarray], count: int) -> np.ndarray:
        """`encode()` for rows already reserved; the reservation is given back if it fails."""
        try:
            return encode()
        except BaseException:
            self._release(count)
            raise

    async def drain(self) -> None:
        """Stop admitting requests; return once everything admitted or running has finished."""
        self._closing = True
        while not self.idle:
            await asyncio.sleep(0.005)
        self._worker.cancel()

    def _try_reserve(self, count: int) -> bool:
        if self._closing:
            raise UnavailableError("this model version is shutting down; retry", retry_after_s=1)
        # Behind earlier waiters, never ahead of them: arrivals must not starve a waiting request.
        if self._waiters or self._queued_rows + self._reserved_rows + count > self.max_queue_rows:
            return False
        self._reserved_rows += count
        return True

    async def _wait_for_room(self, count: int) -> None:
        if self.admission_wait_s > 0:
            loop = asyncio.get_running_loop()
            waiter = _Waiter(count, loop.create_future())
            self._waiters.append(waiter)
            timer = loop.call_later(self.admission_wait_s, _give_up, waiter.future)
            try:
                await waiter.future
                return
            except asyncio.CancelledError:
                if waiter.future.done() and not waiter.future.cancelled():
                    self._release(count)  # admitted just as the client went away
                raise
            except _NoRoom:
                pass
            finally:
                timer.cancel()
                self._admit_waiters()  # drops this waiter if it is still at the head
        waited = (
            f" and no room freed within {self.admission_wait_s:g} s"
            if self.admission_wait_s
            else ""
        )
        raise UnavailableError(
            f"the queue is full ({self._queued_rows + self._reserved_rows} rows waiting, at most "
            f"{self.max_queue_rows}){waited}; retry later",
            retry_after_s=1,
        )

    def _release(self, count: int) -> None:
        self._reserved_rows -= count
        self._admit_waiters()

    def _admit_waiters(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():  # gave up or went away
                self._waiters.popleft()
                continue
            if self._queued_rows + self._reserved_rows + head.rows > self.max_queue_rows:
                return
            self._waiters.popleft()
            self._reserved_rows += head.rows
            head.future.set_result(None)

    async def _enqueue(self, rows: np.ndarray, reserved: int, timeout_s: float) -> np.ndarray:
        loop = asyncio.get_running_loop()
        pending = _Pending(rows, loop.create_future())
        self._queue.append(pending)
        # A request whose encoded rows differ from its count (a loose count) still runs: admitted
        # work is never refused, and the bound is off by at most that difference.
        self._reserved_rows -= reserved
        self._change_queue(len(rows))
        self._wakeup.set()
        # A plain timer, not asyncio.wait_for: no extra task per request on the hot path.
        timer = loop.call_later(timeout_s, _expire, pending.future, timeout_s)
        try:
            return await pending.future
        finally:
            timer.cancel()

    def _change_queue(self, delta: int) -> None:
        self._queued_rows += delta

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        rows = 0
        while self._queue:
            head = self._queue[0]
            if head.future.done():  # timed out or cancelled while waiting
                self._queue.popleft()
                self._change_queue(-len(head.rows))
                continue
            if batch and rows + len(head.rows) > self.max_batch_size:
                break
            self._queue.popleft()
            self._change_queue(-len(head.rows))
            batch.append(head)
            rows += len(head.rows)
        if self._waiters:
            self._admit_waiters()
        # Reported once a batch, not once a request: the gauge is a sample, and this is hot.
        if self._on_queue_change is not None:
            self._on_queue_change(self._queued_rows)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._batch_delay_s and self._queued_rows < self.max_batch_size:
                await asyncio.sleep(self._batch_delay_s)
            batch = self._take_batch()
            if not batch:
                continue
            self._busy = True
            try:
                await self._execute(loop, batch)
            finally:
                self._busy = False

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        started = time.perf_counter()
        inputs = batch[0].rows if len(batch) == 1 else np.concatenate([p.rows for p in batch])
        try:
            outputs = await loop.run_in_executor(self._executor, self._call, inputs)
        except Exception:
            if len(batch) == 1:
                log.exception("model call failed")
                _settle(batch[0], error=RuntimeError("the model call failed"))
                return
            log.warning("a batch of %d requests failed; retrying them one by one", len(batch))
            for pending in batch:
                await self._execute(loop, [pending])
            return
        compute_s = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(
                BatchStats(len(inputs), [started - p.enqueued_at for p in batch], compute_s)
            )
        offset = 0
        for pending in batch:
            count = len(pending.rows)
            _settle(pending, result=outputs[offset : offset + count])
            offset += count

    def _call(self, inputs: np.ndarray) -> np.ndarray:
        # A request larger than the cap runs alone, in chunks of at most max_batch_size rows.
        if len(inputs) <= self.max_batch_size:
            return self._predictor(inputs)
        return np.concatenate(
            [
                self._predictor(inputs[i : i + self.max_batch_size])
                for i in range(0, len(inputs), self.max_batch_size)
            ]
        )


class _NoRoom(Exception):
    """A waiter's admission wait ran out."""


def _give_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(_NoRoom())


def _expire(future: asyncio.Future[np.ndarray], timeout_s: float) -> None:
    # A request still queued is then skipped by the worker; one already running is dropped.
    if not future.done():
        future.set_exception(
            DeadlineExceededError(f"no answer within the request deadline of {timeout_s:g} s")
        )


def _settle(
    pending: _Pending, result: np.ndarray | None = None, error: Exception | None = None
) -> None:
    if pending.future.done():
        return
    if error is not None:
        pending.future.set_exception(error)
    else:
        pending.future.set_result(result)  # type: ignore[arg-type]
