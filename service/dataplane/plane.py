"""The one inference core every route family calls: resolve the version, encode, batch, run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
from fastapi import Request

from service.errors import ArtifactError
from service.model.codecs import Codec
from service.observability.signals import Signals
from service.repository.repository import ModelRepository, ServedVersion
from service.repository.routing import Router, counts_as_failure
from service.settings import Settings

ROLLOUT_KEY = "x-rollout-key"  # a client's key (e.g. a user id): the same side answers it always

C = TypeVar("C", bound=Codec)


class DataPlane:
    def __init__(self, repository: ModelRepository, settings: Settings) -> None:
        self.repository = repository
        self.settings = settings
        self.signals = Signals() if settings.signals else None

    async def predict(
        self,
        request: Request,
        name: str,
        version: int | None,
        encode: Callable[[Codec], np.ndarray],
        count: int | None = None,
        observe: bool = True,
    ) -> tuple[ServedVersion, np.ndarray]:
        """Run `encode(codec)`'s rows through the live version's batcher; outputs in row order.

        `count`, the rows the request will encode to where the route knows it from the parsed
        body, lets the batcher admit (or refuse) the request before paying for the encoding.
        `observe=False` keeps rows that are not the client's inputs (explanations' occlusion
        variants) out of the input and prediction signals.
        """
        router = self.repository.router(name) if version is None else None
        if router is not None:
            request.state.model = name
            return await self._routed(router, request.headers.get(ROLLOUT_KEY), encode, count)
        served = self.repository.live(name, version)
        request.state.model = name
        # No await between resolving the version and being admitted by its batcher: a swap in
        # between could otherwise retire the version this request holds.
        if self.signals is None or not observe:
            outputs = await served.batcher.predict(
                lambda: encode(served.codec), self.settings.request_timeout_s, count
            )
            return served, outputs
        encoded: list[np.ndarray] = []

        def encode_rows() -> np.ndarray:
            rows = encode(served.codec)
            encoded.append(rows)  # kept for the signals, computed on the rows already built
            return rows

        outputs = await served.batcher.predict(encode_rows, self.settings.request_timeout_s, count)
        self.signals.observe(name, served.codec, encoded[0], outputs)
        return served, outputs

    async def _routed(
        self,
        router: Router,
        key: str | None,
        encode: Callable[[Codec], np.ndarray],
        count: int | None,
    ) -> tuple[ServedVersion, np.ndarray]:
        """A request to a model with a running rollout: the side the router chooses answers;
        the other computes it as a shadow if asked (off this request's path)."""
        role, shadow = router.choose(key)
        served = router.sides[role]
        timeout_s = self.settings.request_timeout_s
        started = time.perf_counter()
        try:
            outputs = await served.batcher.predict(lambda: encode(served.codec), timeout_s, count)
        except Exception as error:
            if counts_as_failure(error):
                router.failed(role, count or 1)
            raise
        router.observed(role, time.perf_counter() - started, len(outputs))
        router.answered(role, encode, outputs, timeout_s, shadow)
        return served, outputs


def expect_codec(codec: Codec, kind: type[C]) -> C:
    """The codec as the task-specific class a task endpoint needs."""
    if not isinstance(codec, kind):
        raise ArtifactError(f"the served model's task does not fit this endpoint ({kind.__name__})")
    return codec
