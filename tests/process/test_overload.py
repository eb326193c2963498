"""Overload and slow clients: admission before work, refusals with Retry-After, deadlines, a cap.

Behaviour only, at a small scale and without timing assertions: `make bench` measures goodput.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from loadtests.server_process import ServerProcess
from service.dataplane.batching import Batcher
from service.errors import PayloadTooLargeError, UnavailableError
from tests.conftest import COMMITTED_MODELS

QUEUE_ROWS = 8
MAX_CONNECTIONS = 48


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


# ------------------------------------------------------------------ a real server, small limits


@pytest.fixture(scope="module")
def small_server() -> Iterator[ServerProcess]:
    process = ServerProcess(
        {
            "DLWP_MODELS_DIR": str(COMMITTED_MODELS),
            "DLWP_MAX_QUEUE_ROWS": str(QUEUE_ROWS),
            "DLWP_MAX_BATCH_SIZE": "8",
            "DLWP_ADMISSION_WAIT_S": "0.05",
            "DLWP_HEADER_TIMEOUT_S": "1",
            "DLWP_BODY_TIMEOUT_S": "1",
            "DLWP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        },
        name="overload",
    ).wait_ready()
    yield process
    process.stop()


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_request_with_more_rows_than_the_queue_gets_413_on_an_idle_server(small_server):
    response = httpx.post(
        f"{small_server.url}/v1/sentiment", json={"texts": ["fine"] * (QUEUE_ROWS + 1)}
    )

    assert response.status_code == 413
    assert f"at most {QUEUE_ROWS}" in response.json()["error"]


def test_under_overload_refusals_carry_retry_after_and_health_answers(small_server):
    # Each request fills the whole queue, and encoding 8 long reviews takes a while.
    body = {"texts": ["a long and winding review of a film " * 200] * QUEUE_ROWS}

    def send(_: int) -> httpx.Response:
        return httpx.post(f"{small_server.url}/v1/sentiment", json=body, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(send, i) for i in range(48)]
        ready = httpx.get(f"{small_server.url}/v2/health/ready", timeout=10)
        scrape = httpx.get(f"{small_server.url}/metrics", timeout=10)
        responses = [f.result() for f in futures]

    assert ready.status_code == 200 and scrape.status_code == 200
    assert {r.status_code for r in responses} == {200, 503}
    for refused in (r for r in responses if r.status_code == 503):
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.json()["error"]


def test_an_idle_connection_is_closed(small_server):
    with connect(small_server) as idle:
        assert read_all(idle) == b""  # closed by the server, silently: nobody asked anything


def test_headers_that_do_not_arrive_in_time_get_408(small_server):
    with connect(small_server) as slow:
        slow.sendall(b"POST /v1/sentiment HTTP/1.1\r\nHost: test\r\n")  # and nothing more
        answer = read_all(slow)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'{"error":"the request\'s headers did not arrive within 1 s"}' in answer


def test_a_body_that_does_not_arrive_in_time_gets_408(small_server):
    with connect(small_server) as slow:
        slow.sendall(
            b"POST /v1/sentiment HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"text": "a trick'
        )
        answer = read_all(slow)

    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"body did not arrive within 1 s" in answer


def test_idle_connections_past_the_cap_do_not_lock_out_a_new_client(small_server):
    idle = [connect(small_server) for _ in range(MAX_CONNECTIONS + 10)]
    try:
        for _ in range(50):  # an idle connection is closed to make room once it has idled a while
            response = httpx.get(f"{small_server.url}/v2/health/live", timeout=10)
            if response.status_code == 200:
                break
            time.sleep(0.1)
    finally:
        for sock in idle:
            sock.close()

    assert response.status_code == 200


def test_past_the_cap_of_busy_connections_new_ones_get_503_until_the_slow_ones_time_out(
    small_server,
):
    slow = [connect(small_server) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in slow:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\n")  # a request begun, never finished
        with connect(small_server) as extra:
            refused = read_all(extra)
        # The slow ones are closed at their header deadline; then new clients get in again.
        for sock in slow:
            read_all(sock)
        response = httpx.get(f"{small_server.url}/v2/health/live", timeout=10)
    finally:
        for sock in slow:
            sock.close()

    assert refused.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in refused
    assert b"too many open connections" in refused
    assert response.status_code == 200


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="found through /proc (Linux)")
def test_the_second_acceptor_finds_the_servers_listening_socket():
    from service.process.transport import _listening_socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        found = _listening_socket(port, "127.0.0.1")

        assert found is not None
        duplicate, fd = found
        with duplicate:
            assert fd == listener.fileno() and duplicate.getsockname() == ("127.0.0.1", port)
