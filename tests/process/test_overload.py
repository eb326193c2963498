"""Overload and slow clients on a real server: refusals with Retry-After, deadlines, a cap.

Behaviour only, at a small scale and without timing assertions: `make bench` measures goodput.
The batcher's admission before work is specified in tests/model/test_admission.py.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import COMMITTED_MODELS
from tests.support.servers import ServerProcess

QUEUE_ROWS = 8
MAX_CONNECTIONS = 48


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
