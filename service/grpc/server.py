"""Start and stop the gRPC server beside the HTTP one, in the same process and event loop.

grpcio's threads receive the calls; each call then runs on the HTTP server's event loop,
beside the REST requests, through the same DataPlane and batchers (see `servicer`).

Every worker process of one server serves gRPC on the same port: grpcio binds with
SO_REUSEPORT when `workers > 1`, and the kernel spreads connections over the workers. That
option would also let a second, unrelated server join the port silently, so `dlwp serve` first
checks (`service.process.ports.check_port_free`) that no other process holds it, and fails
loudly if one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from service.dataplane.plane import DataPlane
from service.grpc import servicer
from service.process.budget import shutdown_budget
from service.process.drain import DRAIN
from service.process.ports import in_use
from service.settings import Settings

log = logging.getLogger(__name__)

# Calls in flight per worker process; more wait in grpcio's queue, health calls included, so
# keep it well above a model's batch. Each thread only waits for its call's answer from the
# event loop. Housing at 64 calls in flight, one core: 16 threads gave batches of 5.5 and 2.3k
# req/s, 64 threads batches of 10.6 and 2.2k req/s. A full queue answers UNAVAILABLE at once,
# so overload does not hold threads.
CALL_THREADS = 64

_STOP_WITH_HTTP: dict[int, Callable[[], object]] = {}  # by id() of each started server


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start(plane: DataPlane, settings: Settings) -> grpc.Server | None:
    """A started gRPC server on `settings.grpc_port` (None when it is 0: gRPC off)."""
    if settings.grpc_port == 0:
        return None
    server = grpc.server(
        ThreadPoolExecutor(CALL_THREADS, thread_name_prefix="grpc-call"),
        options=[
            # The same limit as an HTTP body; larger messages get RESOURCE_EXHAUSTED.
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.max_send_message_length", settings.max_body_bytes),
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ],
    )
    server.add_generic_rpc_handlers([servicer.handlers(plane, asyncio.get_running_loop())])
    where = address(settings.host, settings.grpc_port)
    try:
        server.add_insecure_port(where)
    except RuntimeError:
        raise in_use(settings.host, settings.grpc_port, "bind failed") from None
    server.start()
    log.info("gRPC (Open Inference Protocol) serving on %s", where)
    # When this process stops accepting (its drain window over), gRPC stops taking calls at
    # the same moment as HTTP, and both finish what they accepted side by side.
    grace_s = shutdown_budget(settings).grpc_grace_s
    _STOP_WITH_HTTP[id(server)] = functools.partial(server.stop, grace_s)
    DRAIN.on_stop_accepting(_STOP_WITH_HTTP[id(server)])
    return server


async def stop(server: grpc.Server | None, grace_s: float) -> None:
    """Refuse new calls and let the calls in flight finish, for at most `grace_s`."""
    if server is not None:
        DRAIN.forget(_STOP_WITH_HTTP.pop(id(server), None))
        # Wait off the loop: the calls in flight need it to finish.
        await asyncio.to_thread(server.stop(grace_s).wait)


@contextlib.asynccontextmanager
async def serving(plane: DataPlane, settings: Settings) -> AsyncIterator[grpc.Server | None]:
    """gRPC beside HTTP for as long as the app runs: a front for `service.rest.app.create_app`
    (wired by `service.process.app`), started once the models are warm, stopped before them."""
    server = await start(plane, settings)
    try:
        yield server
    finally:
        await stop(server, settings.request_timeout_s)
