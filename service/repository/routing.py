"""A running rollout inside one worker: which side answers a request, the shadow work, the counts.

The data plane asks a model's `Router` (if it has one) which side answers (`choose`), runs the
request there, and hands the answer back (`answered`); the router then has the other side
compute the same inputs as a shadow, off the answer's path and only when that side has room in
its next batch (shadow rows are the first work dropped when the server is busy; they are
counted, never an error to the client). Both sides' predictions are compared row for row.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from service.errors import DlwpError, UnavailableError
from service.observability import metrics
from service.observability.signals import class_names, predicted_classes
from service.repository.comparison import RolloutStats
from service.repository.desired_state import RolloutRecord

if TYPE_CHECKING:
    from service.model.codecs import Codec
    from service.repository.served import ServedVersion

log = logging.getLogger(__name__)

OTHER = {"serving": "candidate", "candidate": "serving"}
# Housing: two prices agree within $1,000 (the gate itself judges the mean difference).
PRICE_AGREEMENT = 1.0

# Called once both sides answered (or the shadow was dropped or failed: None for that side).
Compared = Callable[[np.ndarray | None, np.ndarray | None], None]


def draw(rollout_id: str, key: str | None) -> float:
    """A number in [0, 1): the same for the same key in one rollout (in every worker and
    replica: a hash, not Python's per-process `hash`), random without a key."""
    if key is None:
        return random.random()
    digest = hashlib.blake2b(f"{rollout_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def counts_as_failure(error: BaseException) -> bool:
    """A side's own failure: not a client's bad input (4xx), not a full queue (503)."""
    if isinstance(error, DlwpError):
        return error.status_code >= 500 and not isinstance(error, UnavailableError)
    return not isinstance(error, asyncio.CancelledError)


def agreement(task: str, serving: np.ndarray, candidate: np.ndarray) -> tuple[int, int, float]:
    """(agreed, compared, Σ|price difference|) for the rows both sides computed."""
    rows = min(len(serving), len(candidate))
    serving, candidate = serving[:rows], candidate[:rows]
    if task == "housing":
        differences = np.abs(serving.reshape(-1) - candidate.reshape(-1))
        agreed = int((differences <= PRICE_AGREEMENT).sum())
        return agreed, rows, float(differences.sum())
    if task == "sentiment":
        same = (serving.reshape(-1) >= 0.5) == (candidate.reshape(-1) >= 0.5)
    else:  # topics (top topic), digits
        same = serving.argmax(axis=-1) == candidate.argmax(axis=-1)
    return int(same.sum()), rows, 0.0


class Router:
    """One model's running rollout in this worker: the split, the shadow work, the counts."""

    def __init__(
        self, record: RolloutRecord, task: str, serving: ServedVersion, candidate: ServedVersion
    ) -> None:
        self.record = record
        self.task = task
        self.sides = {"serving": serving, "candidate": candidate}
        self.codecs = {role: served.codec for role, served in self.sides.items()}
        self.stats = RolloutStats()
        self.dirty = False  # counts changed since they were last published
        # Both versions turn inputs into the same rows (a retrain on the same preprocessing and
        # vocabulary): the shadow reuses the answer's rows instead of encoding them again.
        self.same_encoding = same_encoding(serving.codec, candidate.codec)
        self._tasks: set[asyncio.Task[None]] = set()
        self._outputs: dict[str, list[np.ndarray]] = {role: [] for role in self.sides}
        self._names = {role: class_names(served.codec) for role, served in self.sides.items()}
        self._series = {
            role: _Series(served.name, str(served.version), role)
            for role, served in self.sides.items()
        }
        for role, served in self.sides.items():
            metrics.ROLLOUT_INFO.labels(served.name, str(served.version), role,
                                        record.mode).set(1)  # fmt: skip

    def choose(self, key: str | None) -> str:
        """The role that answers a request: in canary mode the candidate for a share of them
        (the same for the same key), else the serving version."""
        if self.record.mode == "canary" and draw(self.record.id, key) < self.record.share:
            return "candidate"
        return "serving"

    def shadows(self, role: str) -> bool:
        """Whether the other side computes this request too. Canary: always, so agreement is
        measured on every request whichever side answered; shadow: a share of requests."""
        return self.record.mode == "canary" or random.random() < self.record.share

    def role_of(self, served: ServedVersion) -> str | None:
        """The role of `served` in this rollout (None if it is neither side)."""
        for role, side in self.sides.items():
            if side is served:
                return role
        return None

    def observed(self, role: str, seconds: float, outputs: np.ndarray) -> None:
        """`role` computed `outputs` in `seconds` (their classes are counted at the next
        snapshot, many requests' at once)."""
        self.stats.sides[role].observe(seconds, len(outputs))
        self._series[role].observe(seconds, len(outputs))
        self._outputs[role].append(outputs)
        self.dirty = True

    def failed(self, role: str, rows: int) -> None:
        self.stats.sides[role].fail(rows)
        self._series[role].fail(rows)
        self.dirty = True

    def _drop(self, role: str, rows: int) -> None:
        """`role`'s shadow work for `rows` rows was dropped (the server had no room for it)."""
        self.stats.shadow_dropped += rows
        self._series[role].dropped.inc(rows)
        self.dirty = True

    def answered(
        self,
        role: str,
        encode: Callable[[Codec], np.ndarray],
        outputs: np.ndarray,
        timeout_s: float,
        shadow: bool,
        done: Compared | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        """The answering side's outputs are in: start the other side's shadow work (if asked
        and there is room for it), off the answer's path. `rows`: the answer's encoded rows,
        reused by the shadow when both versions encode alike."""
        if not shadow:
            if done is not None:
                done(*((outputs, None) if role == "serving" else (None, outputs)))
            return
        if self.sides[role].batcher.occupied:  # dropped at once, without a task to say so
            self._drop(OTHER[role], len(outputs))
            if done is not None:
                done(*((outputs, None) if role == "serving" else (None, outputs)))
            return
        if rows is not None and self.same_encoding:
            encode = _rows_again(rows)
        task = asyncio.get_running_loop().create_task(
            self._shadow(OTHER[role], encode, outputs, timeout_s, done)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shadow(
        self,
        role: str,
        encode: Callable[[Codec], np.ndarray],
        answer: np.ndarray,
        timeout_s: float,
        done: Compared | None,
    ) -> None:
        side = self.sides[role]
        rows = len(answer)
        started = time.perf_counter()
        outputs: np.ndarray | None = None
        try:
            # Only while the answering side is idle: a shadow batch computed beside its work takes
            # the same cores, and at saturation would grow every answer's latency.
            busy = self.sides[OTHER[role]].batcher.occupied
            if not busy:
                outputs = await side.batcher.predict_spare(
                    lambda: encode(side.codec), timeout_s, rows
                )
            if outputs is None:
                self._drop(role, rows)
        except Exception as error:
            if counts_as_failure(error):
                log.warning("%s version %s (%s) failed a shadow prediction: %s", side.name,
                            side.version, role, error)  # fmt: skip
                self.failed(role, rows)
            else:
                self._drop(role, rows)
        if outputs is not None:
            self.observed(role, time.perf_counter() - started, outputs)
            serving, candidate = (answer, outputs) if role == "candidate" else (outputs, answer)
            agreed, compared, difference = agreement(self.task, serving, candidate)
            self.stats.compare(agreed, compared, difference)
            self._series["candidate"].compare(agreed, compared, difference)
        if done is not None:
            if role == "candidate":
                done(answer, outputs)
            else:
                done(outputs, answer)

    def snapshot(self) -> dict[str, Any]:
        """This worker's counts as JSON (and no longer dirty)."""
        self.dirty = False
        for role, pending in self._outputs.items():
            if pending:
                codec = self.sides[role].codec
                outputs = np.concatenate(pending)
                pending.clear()
                classes, confidence = predicted_classes(codec, outputs)
                self.stats.sides[role].count_classes(self._names[role], classes, confidence)
        return self.stats.as_json()

    def close(self) -> None:
        for role, served in self.sides.items():
            metrics.ROLLOUT_INFO.labels(served.name, str(served.version), role,
                                        self.record.mode).set(0)  # fmt: skip


def same_encoding(one: Codec, other: Codec) -> bool:
    """Whether two versions' codecs turn the same inputs into the same rows."""
    return (
        type(one) is type(other)
        and one.manifest.preprocessing == other.manifest.preprocessing
        and getattr(one, "vocabulary", None) == getattr(other, "vocabulary", None)
    )


def _rows_again(rows: np.ndarray) -> Callable[[Codec], np.ndarray]:
    return lambda codec: rows


class _Series:
    """One side's metric series, looked up once (labels() locks and validates on each call)."""

    def __init__(self, model: str, version: str, role: str) -> None:
        self.predictions = metrics.ROLLOUT_PREDICTIONS.labels(model, version, role)
        self.errors = metrics.ROLLOUT_ERRORS.labels(model, version, role)
        self.latency = metrics.ROLLOUT_LATENCY.labels(model, version, role)
        self.dropped = metrics.ROLLOUT_SHADOW_DROPPED.labels(model, version, role)
        self._compared = metrics.ROLLOUT_COMPARED.labels(model, version, role)
        self._agreed = metrics.ROLLOUT_AGREED.labels(model, version, role)
        self._difference = metrics.ROLLOUT_PRICE_DIFFERENCE.labels(model, version, role)

    def observe(self, seconds: float, rows: int) -> None:
        self.predictions.inc(rows)
        self.latency.observe(seconds)

    def fail(self, rows: int) -> None:
        self.predictions.inc(rows)
        self.errors.inc(rows)

    def compare(self, agreed: int, compared: int, difference: float) -> None:
        self._compared.inc(compared)
        self._agreed.inc(agreed)
        if difference:
            self._difference.inc(difference)
