"""The one inference core every route family and transport calls: resolve, encode, batch, run.

A call names a model, optionally a version, and its work: a function that encodes the request's
decoded inputs with the codec of whichever version answers (`Work`). The version is chosen first
(`resolve`), then the work runs through that version's batcher (`run`); `infer` does both. What
the caller needs comes back as a value (`Inference`): the outputs, the version that computed
them, and the encoded inputs. Nothing here knows HTTP or gRPC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

import numpy as np

from service.errors import ArtifactError, UnavailableError
from service.model.codecs import Codec, Encoded
from service.observability import metrics
from service.observability.signals import Signals
from service.repository.repository import ModelRepository, ServedVersion
from service.settings import Settings

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
    def __init__(self, repository: ModelRepository, settings: Settings) -> None:
        self.repository = repository
        self.settings = settings
        self.signals = Signals() if settings.signals else None

    def resolve(self, model: str, version: int | None = None) -> ServedVersion:
        """The version that answers for `model` (or exactly `version`); 404/503 with a reason.

        Pass it to `run` with no `await` in between: a swap could otherwise retire the version
        before its batcher admits the request.
        """
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

        try:
            outputs = await served.batcher.predict(encode, self.settings.request_timeout_s, count)
        except UnavailableError:
            metrics.REJECTED.labels(served.name).inc()
            raise
        assert encoded is not None  # the batcher answers only rows it was given
        if observe and self.signals is not None:
            self.signals.observe(served.name, served.codec, encoded, outputs)
        return Inference(served, outputs, encoded)


def expect_codec(codec: Codec, kind: type[C]) -> C:
    """The codec as the task-specific class a task endpoint needs."""
    if not isinstance(codec, kind):
        raise ArtifactError(f"the served model's task does not fit this endpoint ({kind.__name__})")
    return codec
