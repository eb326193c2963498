"""Answers kept for their labels, and the labels that come back (`POST /v1/feedback`).

The request path only appends what it already holds (request id, version, outputs, codec) to a
list; every `FLUSH_S` one thread turns them into rows (answers in the answers' own words) and
writes them to the store, and prunes the store now and then. So keeping answers costs a request
one list append; a label sent within a moment of its answer is found because a lookup that
misses flushes and retries briefly (another worker may not have written it yet).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.errors import ConflictError, InvalidInputError, ModelNotFoundError
from service.feedback.store import Answer, FeedbackStore, open_store
from service.model.codecs import Codec, Encoded, HousingCodec
from service.observability import metrics
from service.repository.comparison import ROLES, Labelled
from service.settings import Settings

log = logging.getLogger(__name__)

FLUSH_S = 0.2
PRUNE_S = 60.0
LOOKUP_RETRY_S = 1.5  # a label may arrive before the worker that answered has written it


@dataclass
class Served:
    """One request's answer as the request path hands it over (converted in the thread)."""

    request_id: str
    model: str
    task: str
    answered_by: str
    rollout: str | None
    versions: dict[str, int | None]  # role → version that computed it (None: not computed)
    codecs: dict[str, Codec]
    outputs: dict[str, np.ndarray | None]
    inputs: Encoded | None  # only when inputs are kept
    created: float


def answer_words(task: str, codec: Codec, outputs: np.ndarray) -> list[str]:
    """Each row's answer as the task's answers say it (and as a label is given back)."""
    if task == "housing":
        return [repr(round(float(price), 4)) for price in outputs.reshape(-1)]
    if task == "sentiment":
        return ["positive" if score >= 0.5 else "negative" for score in outputs.reshape(-1)]
    best = outputs.argmax(axis=-1)
    if task == "topics":
        labels = codec.labels or [str(i) for i in range(outputs.shape[-1])]
        return [labels[int(i)] for i in best]
    return [str(int(i)) for i in best]


def check_label(task: str, codec: Codec, body: dict[str, Any]) -> str:
    """The label in `body` as stored, or 422 saying what this model's labels are."""
    if task == "housing":
        price = body.get("price", body.get("label"))
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not (
            math.isfinite(price) and price >= 0
        ):  # fmt: skip
            raise InvalidInputError(f'housing feedback needs "price": a number ≥ 0 in $1000s, '
                                    f"got {price!r}")  # fmt: skip
        return repr(float(price))
    label = body.get("label")
    if task == "digits":
        if isinstance(label, int) and not isinstance(label, bool):
            label = str(label)
        if not (isinstance(label, str) and label in {str(d) for d in range(10)}):
            raise InvalidInputError(f'mnist feedback needs "label": a digit 0-9, got {label!r}')
        return label
    if task == "sentiment":
        if label not in ("positive", "negative"):
            raise InvalidInputError(
                f'imdb feedback needs "label": "positive" or "negative", got {label!r}'
            )
        return str(label)
    names = codec.labels or []
    if not isinstance(label, str) or label not in names:
        raise InvalidInputError(f'reuters feedback needs "label": one of the topic names '
                                f"({', '.join(names[:6])}, …), got {label!r}")  # fmt: skip
    return label


def score(task: str, answer: str, label: str) -> tuple[bool, float]:
    """(right, absolute error): the error for housing prices, 0/1 otherwise."""
    if task == "housing":
        error = abs(float(answer) - float(label))
        return error <= 0, error
    right = answer == label
    return right, 0.0 if right else 1.0


def keepable_inputs(
    task: str, codec: Codec, rows: np.ndarray, texts: Sequence[str] | None
) -> list[Any]:
    """What `dlwp feedback export` needs of each input: the text, the 784 grey values (0-255),
    or the 13 named features."""
    if texts is not None:
        return list(texts)
    if task == "housing" and isinstance(codec, HousingCodec):
        values = rows.astype(np.float64) * codec.std + codec.mean
        return [dict(zip(codec.feature_names, (round(float(v), 6) for v in row), strict=True))
                for row in values]  # fmt: skip
    return [np.rint(row * 255).astype(int).tolist() for row in rows]


class Recorder:
    def __init__(self, settings: Settings, state_dir: Any) -> None:
        self.enabled = settings.feedback is not False
        # Writing every answer costs the serving path about a tenth of its throughput (the
        # writer thread contends with the event loop), so by default only rollouts pay for it.
        self.keeps_every_answer = self.enabled and (
            settings.feedback is True or settings.feedback_keep_inputs
        )
        self.keep_inputs = settings.feedback_keep_inputs
        self._settings = settings
        self._state_dir = state_dir
        self._pending: list[Served] = []
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feedback")
        self._store: FeedbackStore | None = None
        self._tasks: dict[str, str] = {}  # model → task, for scoring stored answers
        self._pruned = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.enabled:
            self._store = await self._run(
                open_store,
                self._settings.feedback_db,
                self._state_dir,
                self._settings.feedback_max_answers,
                self._settings.feedback_max_age_s,
            )

    async def step(self) -> None:
        """One round, every FLUSH_S (supervised): write the answers kept since the last one,
        and every PRUNE_S forget those past the window."""
        await self.flush()
        if time.monotonic() - self._pruned > PRUNE_S and self._store is not None:
            self._pruned = time.monotonic()
            await self._run(self._store.prune)

    async def close(self) -> None:
        await self.flush()
        if self._store is not None:
            await self._run(self._store.close)
        self._thread.shutdown(wait=True)

    # ------------------------------------------------------------------ request path

    def add(self, served: Served) -> None:
        """Keep one request's answer (no-op when feedback is off or the request had no id)."""
        if self._store is not None and served.request_id:
            self._pending.append(served)

    async def flush(self) -> None:
        if not self._pending or self._store is None:
            return
        pending, self._pending = self._pending, []
        store = self._store
        await self._run(lambda: store.record(self._rows(pending)))

    # ------------------------------------------------------------------ feedback

    async def label(self, body: Any, codecs: dict[str, Codec]) -> dict[str, Any]:
        """Record the label in `body` for an earlier answer; the answer scored on each side."""
        if self._store is None:
            raise ModelNotFoundError("feedback is off on this server (DLWP_FEEDBACK=false)")
        if not isinstance(body, dict):
            raise InvalidInputError('expected {"request_id": "...", "label": ...} '
                                    '(or "price" for housing)')  # fmt: skip
        request_id, item = body.get("request_id"), body.get("item", 0)
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInputError("request_id must be the X-Request-ID of an earlier answer")
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise InvalidInputError(f"item must be an input's position (0, 1, …), got {item!r}")
        answer = await self._find(request_id, item)
        window = (f"answers are kept for {self._settings.feedback_max_age_s:g} s, the newest "
                  f"{self._settings.feedback_max_answers} at most")  # fmt: skip
        if not self.keeps_every_answer:
            window += ("; only answers given during a rollout are kept (DLWP_FEEDBACK=true keeps "
                       "every answer)")  # fmt: skip
        if answer is None or answer.created < time.time() - self._settings.feedback_max_age_s:
            raise ModelNotFoundError(f"unknown or expired request id {request_id!r} (item "
                                     f"{item}); {window}")  # fmt: skip
        codec = codecs.get(answer.model)
        if codec is None:
            raise ModelNotFoundError(f"model {answer.model!r} is not served now")
        task = self._tasks.get(answer.model, codec.manifest.task)
        label = check_label(task, codec, body)
        store = self._store
        if not await self._run(store.label, request_id, item, label):
            raise ConflictError(f"request {request_id!r} (item {item}) is labelled already")
        return self._count(answer, task, label)

    async def rollout_labels(self, model: str, rollout: str, task: str) -> Labelled:
        """Live accuracy (or MAE) of both sides of a rollout, from the labels that came back
        (whichever worker answered or received them)."""
        result = Labelled()
        if self._store is None:
            return result
        for serving, candidate, label in await self._run(self._store.rollout_labels, rollout):
            result.count += 1
            for role, answer in zip(ROLES, (serving, candidate), strict=True):
                right, error = score(task, answer, label)
                result.correct[role] += right
                result.abs_error_sum[role] += error
        return result

    async def labelled(self, model: str) -> list[tuple[str | None, str]]:
        if self._store is None:
            return []
        found: list[tuple[str | None, str]] = await self._run(self._store.labelled, model)
        return found

    # ------------------------------------------------------------------ internals

    def _count(self, answer: Answer, task: str, label: str) -> dict[str, Any]:
        sides: dict[str, Any] = {}
        for role in ROLES:
            version = getattr(answer, f"{role}_version")
            said = getattr(answer, f"{role}_answer")
            if version is None or said is None:
                continue
            right, error = score(task, said, label)
            if task == "housing":
                metrics.FEEDBACK.labels(answer.model, str(version), role, "labelled").inc()
                metrics.FEEDBACK_ABS_ERROR.labels(answer.model, str(version), role).inc(error)
                sides[role] = {"version": version, "answer": float(said), "error": round(error, 4)}
            else:
                outcome = "correct" if right else "wrong"
                metrics.FEEDBACK.labels(answer.model, str(version), role, outcome).inc()
                sides[role] = {"version": version, "answer": said, "correct": right}
        return {"request_id": answer.request_id, "item": answer.item, "model": answer.model,
                "label": float(label) if task == "housing" else label,
                "answered_by": answer.answered_by, "sides": sides}  # fmt: skip

    async def _find(self, request_id: str, item: int) -> Answer | None:
        assert self._store is not None
        deadline = time.monotonic() + LOOKUP_RETRY_S
        while True:
            await self.flush()
            found = await self._run(self._store.find, request_id, item)
            if found is not None or time.monotonic() > deadline:
                return found  # type: ignore[no-any-return]
            await asyncio.sleep(FLUSH_S / 2)

    def _rows(self, pending: list[Served]) -> list[Answer]:
        rows: list[Answer] = []
        for served in pending:
            self._tasks[served.model] = served.task
            words: dict[str, list[str] | None] = {}
            for role in ROLES:
                outputs = served.outputs.get(role)
                codec = served.codecs.get(role)
                words[role] = None if outputs is None or codec is None else answer_words(
                    served.task, codec, outputs
                )  # fmt: skip
            answering = words[served.answered_by] or []
            inputs = None
            if self.keep_inputs and served.inputs is not None:
                codec = served.codecs[served.answered_by]
                encoded = served.inputs
                inputs = keepable_inputs(served.task, codec, encoded.rows, encoded.texts)
            for item in range(len(answering)):
                rows.append(Answer(
                    served.request_id, item, served.model, served.created, served.answered_by,
                    served.rollout, served.versions.get("serving"),
                    _at(words["serving"], item), served.versions.get("candidate"),
                    _at(words["candidate"], item),
                    json.dumps(inputs[item]) if inputs is not None else None,
                ))  # fmt: skip
        return rows

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)


def _at(words: list[str] | None, item: int) -> str | None:
    return None if words is None or item >= len(words) else words[item]
