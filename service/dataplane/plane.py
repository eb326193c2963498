"""The one inference core every route family and transport calls: resolve, encode, batch, run.

A call names a model, optionally a version, and its work: a function that encodes the request's
decoded inputs with the codec of whichever version answers (`Work`). The version is chosen first
(`resolve`), then the work runs through that version's batcher (`run`); `infer` does both. What
the caller needs comes back as a value (`Inference`): the outputs, the version that computed
them, and the encoded inputs. Nothing here knows HTTP or gRPC.

A model with a running rollout has a router (`repository/routing.py`): `resolve` asks it which
side answers (the caller's rollout key keeps a client on one side), and `run` hands it the answer,
for the counts and the other side's shadow work. Answers are kept for feedback (`feedback/`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numpy as np

from service.errors import ArtifactError, UnavailableError
from service.feedback.recorder import Recorder, Served
from service.model.codecs import Codec, Encoded
from service.observability import metrics
from service.observability.logs import REQUEST_ID
from service.observability.signals import Signals
from service.repository.repository import ModelRepository, ServedVersion
from service.repository.routing import OTHER, Router, counts_as_failure
from service.settings import Settings

ROLLOUT_KEY = "x-rollout-key"  # a client's key (a user id, …): the same side answers it always

C = TypeVar("C", bound=Codec)

Work = Callable[[Codec], Encoded]
"""A request's inputs, encoded with the answering version's codec (called once, when admitted).

A function of the codec rather than rows made in advance: each version encodes with its own
vocabulary and preprocessing, so the same work can run on any version of the model.
"""


class Inference(NamedTuple):  # a tuple: immutable, and made in a third of a frozen dataclass' time
    """The answer of one call: outputs in row order, and the version that computed them."""

    served: ServedVersion  # the version that answered: its name, number, codec and manifest
    outputs: np.ndarray
    inputs: Encoded  # the rows the model saw (and what the signals read from the inputs)

    @property
    def model(self) -> str:
        return self.served.name

    @property
    def version(self) -> int:
        return self.served.version


class DataPlane:
    def __init__(
        self, repository: ModelRepository, settings: Settings, recorder: Recorder | None = None
    ) -> None:
        self.repository = repository
        self.settings = settings
        self.signals = Signals() if settings.signals else None
        self.recorder = recorder

    def resolve(
        self, model: str, version: int | None = None, rollout_key: str | None = None
    ) -> ServedVersion:
        """The version that answers for `model` (or exactly `version`); 404/503 with a reason.

        During a canary rollout, the side its router draws (by `rollout_key`, the client's
        `X-Rollout-Key`, when given). Pass it to `run` with no `await` in between: a swap could
        otherwise retire the version before its batcher admits the request.
        """
        router = self.repository.router(model) if version is None else None
        if router is not None:
            return router.sides[router.choose(rollout_key)]
        return self.repository.live(model, version)

    async def infer(
        self,
        model: str,
        version: int | None,
        work: Work,
        count: int | None = None,
        observe: bool = True,
    ) -> Inference:
        """`run(resolve(model, version), ...)`, for a caller that needs nothing in between."""
        return await self.run(self.resolve(model, version), work, count, observe)

    async def run(
        self, served: ServedVersion, work: Work, count: int | None = None, observe: bool = True
    ) -> Inference:
        """Run `work(served.codec)`'s rows through `served`'s batcher; outputs in row order.

        `count`, the rows the request will encode to where the caller knows it from the parsed
        body, lets the batcher admit (or refuse) the request before paying for the encoding.
        `observe=False` keeps rows that are not the client's inputs (explanations' occlusion
        variants) out of the input and prediction signals. A request refused for want of room
        (503) is counted in `dlwp_rejected_total` here, whichever transport it came by.
        """
        encoded: Encoded | None = None

        def encode() -> np.ndarray:
            nonlocal encoded
            encoded = work(served.codec)
            return encoded.rows

        router = self.repository.router(served.name) if observe else None
        role = router.role_of(served) if router is not None else None
        started = time.perf_counter()
        try:
            outputs = await served.batcher.predict(encode, self.settings.request_timeout_s, count)
        except UnavailableError:
            metrics.REJECTED.labels(served.name).inc()
            raise
        except Exception as error:
            if router is not None and role is not None and counts_as_failure(error):
                router.failed(role, count or 1)
            raise
        assert encoded is not None  # the batcher answers only rows it was given
        if observe and self.signals is not None:
            self.signals.observe(served.name, served.codec, encoded, outputs)
        if router is not None and role is not None:
            router.observed(role, time.perf_counter() - started, outputs)
            self._compare(router, role, work, encoded, outputs)
        elif observe and self.recorder is not None and self.recorder.keeps_every_answer:
            self.recorder.add(Served(
                REQUEST_ID.get() or "", served.name, served.manifest.task, "serving", None,
                {"serving": served.version}, {"serving": served.codec}, {"serving": outputs},
                encoded if self.recorder.keep_inputs else None, time.time(),
            ))  # fmt: skip
        return Inference(served, outputs, encoded)

    def _compare(
        self, router: Router, role: str, work: Work, encoded: Encoded, outputs: np.ndarray
    ) -> None:
        """Hand a rollout's answer to its router: the other side computes it (if drawn); once
        both are in, the other side's outputs count in its version's signals and both answers
        are kept for feedback."""
        recorder = self.recorder if self.recorder is not None and self.recorder.enabled else None
        signals = self.signals
        sides = router.sides
        other = OTHER[role]
        shadow_inputs = [encoded if router.same_encoding else None]

        def encode(codec: Codec) -> np.ndarray:
            shadow_inputs[0] = own = work(codec)  # the shadow's own encoding, for its signals
            return own.rows

        request_id = REQUEST_ID.get() or ""  # read now: the shadow finishes after the request
        created = time.time()

        def done(serving: np.ndarray | None, candidate: np.ndarray | None) -> None:
            shadow = serving if other == "serving" else candidate
            if shadow is not None and signals is not None and shadow_inputs[0] is not None:
                signals.observe(sides[other].name, sides[other].codec, shadow_inputs[0], shadow)
            if recorder is None:
                return
            computed: dict[str, int | None] = {role: sides[role].version}
            if shadow is not None:
                computed[other] = sides[other].version
            recorder.add(Served(
                request_id, sides[role].name, router.task, role, router.record.id, computed,
                router.codecs,
                {"serving": serving, "candidate": candidate},
                encoded if recorder.keep_inputs else None, created,
            ))  # fmt: skip

        router.answered(role, encode, outputs, self.settings.request_timeout_s,
                        router.shadows(role), done, encoded.rows)  # fmt: skip


def expect_codec(codec: Codec, kind: type[C]) -> C:
    """The codec as the task-specific class a task endpoint needs."""
    if not isinstance(codec, kind):
        raise ArtifactError(f"the served model's task does not fit this endpoint ({kind.__name__})")
    return codec
