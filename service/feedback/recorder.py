"""Answers kept for their labels, and the labels that come back (`POST /v1/feedback`).

Answers wait in the memory of the worker that gave them, not in the store: writing every answer
to a database cost the serving core 10-20 µs per answer (an SQLite insert into a table of up to
100,000 rows), a tenth of what answering an MNIST request costs, on the core that answers.
The request path appends what it already holds (request id, versions, outputs, codecs) to a
list; every `FLUSH_S` the event loop turns those into rows (answers in the answers' own words,
one numpy call per model version for all of them) and keeps them, oldest first, within the
window (`DLWP_FEEDBACK_MAX_ANSWERS` per worker, `DLWP_FEEDBACK_MAX_AGE_S`).

An answer goes to the store when a label asks for it. The worker that receives the label writes
its own answer there at once; an answer another worker (or replica) gave is asked for through
the store (`want`): every worker looks at what is wanted each `FLUSH_S` and writes the answers it
holds, and the labelling worker waits up to `LOOKUP_RETRY_S` for the row. Labelled rows stay in
the store: they are the examples `dlwp feedback export` writes and what the gates read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
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
ABSORB_AT_ONCE = 64  # answers turned into rows in one go on the event loop (~0.2 ms)
LOOKUP_RETRY_S = 1.5  # how long a label waits for the worker that gave the answer to write it


Row = tuple[Any, ...]  # one answer as the store writes it (`store.COLUMNS`)


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
        return [repr(round(price, 4)) for price in outputs.reshape(-1).tolist()]
    if task == "sentiment":
        return [
            "positive" if high else "negative" for high in (outputs.reshape(-1) >= 0.5).tolist()
        ]
    best = outputs.argmax(axis=-1).tolist()
    if task == "topics":
        labels = codec.labels or [str(i) for i in range(outputs.shape[-1])]
        return [labels[i] for i in best]
    return [str(i) for i in best]


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
        # Keeping every answer costs each one a few µs of conversion (and the memory of the
        # window), so by default only rollouts, whose gates read the labels, pay for it.
        self.keeps_every_answer = self.enabled and (
            settings.feedback is True or settings.feedback_keep_inputs
        )
        self.keep_inputs = settings.feedback_keep_inputs
        self._settings = settings
        self._state_dir = state_dir
        self._pending: list[Served] = []
        # request id → its rows (`store.COLUMNS`, one per input), oldest first. Tuples of
        # strings and numbers only: the garbage collector stops tracking them, where 100,000
        # lists would be walked by every full collection (a pause of tens of ms).
        self._kept: OrderedDict[str, tuple[Row, ...]] = OrderedDict()
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
        """One round, every FLUSH_S (supervised): keep the answers given since the last one,
        write those another worker's labels asked for, and every PRUNE_S prune the store."""
        while self._pending:  # a few at a time: one stretch for them all would delay answers
            self.absorb(ABSORB_AT_ONCE)
            await asyncio.sleep(0)
        if self._store is None:
            return
        store = self._store
        wanted = await self._run(store.wanted)
        if wanted:
            await self._write(wanted)
        if time.monotonic() - self._pruned > PRUNE_S:
            self._pruned = time.monotonic()
            await self._run(store.prune)

    async def close(self) -> None:
        if self._store is not None:
            await self._run(self._store.close)
        self._thread.shutdown(wait=True)

    # ------------------------------------------------------------------ request path

    def add(self, served: Served) -> None:
        """Keep one request's answer (no-op when feedback is off or the request had no id)."""
        if self._store is not None and served.request_id:
            self._pending.append(served)

    def absorb(self, most: int | None = None) -> None:
        """Turn the answers added since the last call (the `most` oldest of them) into rows,
        and keep them in the window."""
        pending = self._pending[:most]
        del self._pending[:most]
        kept = self._kept
        by_request: dict[str, list[Row]] = {}
        for row in self._rows(pending):
            by_request.setdefault(row[0], []).append(row)
        for request_id, rows in by_request.items():
            kept.pop(request_id, None)  # a request id answered again: its newest answer counts
            kept[request_id] = tuple(rows)
        oldest = time.time() - self._settings.feedback_max_age_s
        while kept and (
            len(kept) > self._settings.feedback_max_answers
            or next(iter(kept.values()))[0][3] < oldest
        ):
            kept.popitem(last=False)

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
                  f"{self._settings.feedback_max_answers} per worker at most")  # fmt: skip
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
        """The stored answer `request_id`: this worker's own is written at once; one that
        another worker gave is asked for, and waited for up to LOOKUP_RETRY_S."""
        assert self._store is not None
        store = self._store
        self.absorb()
        if request_id in self._kept:
            await self._write([request_id])
        found = await self._run(store.find, request_id, item)
        if found is not None:
            return found  # type: ignore[no-any-return]
        await self._run(store.want, request_id)
        try:
            deadline = time.monotonic() + LOOKUP_RETRY_S
            while found is None and time.monotonic() < deadline:
                await asyncio.sleep(FLUSH_S / 2)
                found = await self._run(store.find, request_id, item)
        finally:
            await self._run(store.unwant, request_id)
        return found  # type: ignore[no-any-return]

    async def _write(self, request_ids: list[str]) -> None:
        """Move the answers among `request_ids` that this worker holds into the store (they
        leave memory, so a second ask cannot overwrite a label given meanwhile)."""
        rows = [row for rid in request_ids for row in self._kept.pop(rid, ())]
        if rows and self._store is not None:
            await self._run(self._store.record, rows)

    def _rows(self, pending: list[Served]) -> list[Row]:
        """The store's rows (`store.COLUMNS`) for the answers kept since the last flush."""
        words = {role: self._words(pending, role) for role in ROLES}
        rows: list[Row] = []
        for at, served in enumerate(pending):
            self._tasks[served.model] = served.task
            serving, candidate = words["serving"][at], words["candidate"][at]
            answering = serving if served.answered_by == "serving" else candidate
            inputs = None
            if self.keep_inputs and served.inputs is not None:
                encoded = served.inputs
                inputs = keepable_inputs(served.task, served.codecs[served.answered_by],
                                         encoded.rows, encoded.texts)  # fmt: skip
            versions = served.versions
            for item in range(len(answering or ())):
                rows.append((
                    served.request_id, item, served.model, served.created, served.answered_by,
                    served.rollout, versions.get("serving"), _at(serving, item),
                    versions.get("candidate"), _at(candidate, item),
                    json.dumps(inputs[item]) if inputs is not None else None,
                ))  # fmt: skip
        return rows

    @staticmethod
    def _words(pending: list[Served], role: str) -> list[list[str] | None]:
        """Each kept answer's words on one side (None where that side did not compute it),
        computed once per model and version over the whole flush rather than per answer."""
        words: list[list[str] | None] = [None] * len(pending)
        groups: dict[tuple[str, int], list[int]] = {}
        for at, served in enumerate(pending):
            if served.outputs.get(role) is not None and role in served.codecs:
                groups.setdefault((served.model, id(served.codecs[role])), []).append(at)
        for members in groups.values():
            first = pending[members[0]]
            outputs = [_present(pending[at].outputs[role]) for at in members]
            said = answer_words(first.task, first.codecs[role], np.concatenate(outputs))
            start = 0
            for at, output in zip(members, outputs, strict=True):
                words[at] = said[start : start + len(output)]
                start += len(output)
        return words

    async def _run(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)


def _present(outputs: np.ndarray | None) -> np.ndarray:
    assert outputs is not None  # grouped only where present
    return outputs


def _at(words: list[str] | None, item: int) -> str | None:
    return None if words is None or item >= len(words) else words[item]
