"""The batcher: batches under load, no wait when alone, exact rows back, bounded queue."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import DeadlineExceededError, UnavailableError
from service.model.batching import Batcher, BatchStats

WEIGHTS = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)


def linear_model(rows: np.ndarray) -> np.ndarray:
    """A stand-in model: row-wise, so batched and unbatched answers must agree exactly."""
    if np.isnan(rows).any():
        raise ValueError("NaN in the batch")
    time.sleep(0.002)
    return rows @ WEIGHTS


def run(coroutine_factory, **options):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        batches: list[BatchStats] = []
        with ThreadPoolExecutor(1) as executor:
            limits = {"max_batch_size": 64, "max_queue_rows": 1024, **options}
            batcher = Batcher(linear_model, executor, on_batch=batches.append, **limits)
            result = await coroutine_factory(batcher)
            await batcher.drain()
        return result, batches

    return asyncio.run(main())


def test_concurrent_requests_share_model_calls():
    requests = [np.full((1, 4), i, dtype=np.float32) for i in range(40)]

    async def send(batcher):  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(batcher.submit(r, 5) for r in requests))

    outputs, batches = run(send)

    assert max(b.rows for b in batches) > 1
    assert len(batches) < len(requests)
    for request, output in zip(requests, outputs, strict=True):
        np.testing.assert_allclose(output, linear_model(request), rtol=1e-6)


def test_a_lone_request_runs_at_once_without_a_timer():
    async def send(batcher):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        await batcher.submit(np.ones((1, 4), dtype=np.float32), 5)
        return time.perf_counter() - started

    _, batches = run(send)

    assert [b.rows for b in batches] == [1]
    assert batches[0].queue_waits_s[0] < 0.05


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=70), min_size=1, max_size=12))
def test_batched_results_equal_unbatched_results_row_for_row(row_counts):
    rng = np.random.default_rng(len(row_counts))
    requests = [rng.normal(size=(n, 4)).astype(np.float32) for n in row_counts]

    async def send(batcher):  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(batcher.submit(r, 5) for r in requests))

    outputs, batches = run(send, max_batch_size=32)

    assert sum(b.rows for b in batches) == sum(row_counts)
    for request, output in zip(requests, outputs, strict=True):
        assert output.shape == (len(request), 3)
        # Equal up to float32 rounding: BLAS may sum in another order for another batch size.
        np.testing.assert_allclose(output, linear_model(request), rtol=1e-5, atol=1e-6)


def test_rows_count_toward_the_cap_not_requests():
    requests = [np.ones((10, 4), dtype=np.float32) for _ in range(8)]

    async def send(batcher):  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(batcher.submit(r, 5) for r in requests))

    _, batches = run(send, max_batch_size=25)

    assert all(b.rows <= 25 for b in batches)


def test_one_failing_request_does_not_fail_its_batch_mates():
    good = [np.ones((2, 4), dtype=np.float32) for _ in range(6)]
    bad = np.full((1, 4), np.nan, dtype=np.float32)

    async def send(batcher):  # type: ignore[no-untyped-def]
        return await asyncio.gather(*(batcher.submit(r, 5) for r in [*good[:3], bad, *good[3:]]),
                                    return_exceptions=True)  # fmt: skip

    outputs, _ = run(send)

    assert isinstance(outputs[3], RuntimeError)
    assert all(isinstance(o, np.ndarray) and o.shape == (2, 3) for i, o in enumerate(outputs)
               if i != 3)  # fmt: skip


def test_a_full_queue_answers_unavailable_with_retry_after():
    async def send(batcher):  # type: ignore[no-untyped-def]
        return await asyncio.gather(
            *(batcher.submit(np.ones((4, 4), dtype=np.float32), 5) for _ in range(30)),
            return_exceptions=True,
        )

    outputs, _ = run(send, max_queue_rows=16)

    refused = [o for o in outputs if isinstance(o, UnavailableError)]
    assert refused and refused[0].retry_after_s >= 1
    assert sum(isinstance(o, np.ndarray) for o in outputs) >= 4


def test_past_the_deadline_a_request_gets_deadline_exceeded():
    def slow_model(rows: np.ndarray) -> np.ndarray:
        time.sleep(0.3)
        return rows

    async def main():  # type: ignore[no-untyped-def]
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(slow_model, executor, max_batch_size=1, max_queue_rows=10)
            first = asyncio.ensure_future(batcher.submit(np.ones((1, 4), np.float32), 5))
            await asyncio.sleep(0.01)
            with pytest.raises(DeadlineExceededError, match="deadline"):
                await batcher.submit(np.ones((1, 4), np.float32), 0.05)
            await first
            await batcher.drain()

    asyncio.run(main())


def test_spare_work_runs_when_there_is_room_and_is_dropped_at_once_when_busy():
    row = np.ones((1, 4), dtype=np.float32)

    async def send(batcher):  # type: ignore[no-untyped-def]
        alone = await batcher.predict_spare(lambda: row, 5, 1)
        backlog = [asyncio.ensure_future(batcher.submit(np.ones((8, 4), np.float32), 5))
                   for _ in range(40)]  # fmt: skip
        await asyncio.sleep(0)  # queued: more than a batch waits
        encoded: list[int] = []
        started = time.perf_counter()
        busy = await batcher.predict_spare(lambda: encoded.append(1) or row, 5, 1)
        waited = time.perf_counter() - started
        answered = await asyncio.gather(*backlog)
        return alone, busy, waited, encoded, answered

    (alone, busy, waited, encoded, answered), _ = run(send, max_batch_size=16)

    np.testing.assert_allclose(alone, linear_model(row), rtol=1e-6)
    assert busy is None and encoded == [], "dropped before any encoding"
    assert waited < 0.01, "spare work never waits for room"
    assert len(answered) == 40, "the client work is untouched"
