"""The batcher's admission before work: a request reserves its rows before it is encoded, so a
refused request costs no preprocessing and an admitted one is never refused afterwards.

Behaviour only, at a small scale and without timing assertions: `make bench` measures goodput.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.errors import PayloadTooLargeError, UnavailableError
from service.model.batching import Batcher


def slow_model(rows: np.ndarray) -> np.ndarray:
    time.sleep(0.01)
    return rows * 2


def run_batcher(send: Callable[[Batcher], object], **options: float) -> object:
    async def main() -> object:
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(slow_model, executor, max_batch_size=4, max_queue_rows=4, **options)
            result = await send(batcher)  # type: ignore[misc]
            await batcher.drain()
        return result

    return asyncio.run(main())


def test_admitted_requests_are_never_refused_and_refused_ones_are_never_encoded():
    encoded: set[int] = set()

    def encoder(i: int) -> Callable[[], np.ndarray]:
        def encode() -> np.ndarray:
            encoded.add(i)
            return np.full((4, 2), i, dtype=np.float32)

        return encode

    async def send(batcher: Batcher) -> list[object]:
        return await asyncio.gather(
            *(batcher.predict(encoder(i), 10, count=4) for i in range(30)),
            return_exceptions=True,
        )

    outcomes = run_batcher(send, admission_wait_s=0.02)

    assert isinstance(outcomes, list)
    served = {i for i, outcome in enumerate(outcomes) if isinstance(outcome, np.ndarray)}
    refused = {i for i, outcome in enumerate(outcomes) if isinstance(outcome, UnavailableError)}
    assert served and refused and served | refused == set(range(30))
    assert encoded == served, "every request that was encoded was served; no refusal was encoded"
    for i in served:
        np.testing.assert_array_equal(outcomes[i], np.full((4, 2), 2 * i))


def test_a_full_queue_holds_requests_until_room_frees_instead_of_refusing():
    async def send(batcher: Batcher) -> list[np.ndarray]:
        rows = [np.full((4, 2), i, dtype=np.float32) for i in range(5)]
        return await asyncio.gather(*(batcher.submit(r, 10) for r in rows))

    outputs = run_batcher(send, admission_wait_s=10)

    assert isinstance(outputs, list) and len(outputs) == 5  # each filled the whole queue


def test_a_request_larger_than_the_queue_is_refused_at_once_and_not_encoded():
    def encode() -> np.ndarray:
        raise AssertionError("a request that can never fit must not be encoded")

    async def send(batcher: Batcher) -> None:
        await batcher.predict(encode, 10, count=5)

    with pytest.raises(PayloadTooLargeError, match="at most 4"):
        run_batcher(send, admission_wait_s=10)
