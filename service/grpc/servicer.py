"""The RPCs of `inference.GRPCInferenceService`: each decodes, calls the DataPlane, encodes.

As thin as the REST routes, and sharing the protocol's semantics with them
(`service.protocols.v2`): the same models, versions, tensors, answers, and error messages.
Errors get their gRPC status code from the one table (`service.errors.STATUS`); every measured
call is counted in the same metrics as REST, with the HTTP code the same error gets on REST, so
one alert covers both protocols.

grpcio receives each call on one of its threads, which hands the handler to the server's event
loop (where the DataPlane and the batchers live) and waits. Measured on one core, housing at
64 calls in flight: grpc.aio admits calls one by one through several loop hops each, so the
batcher found ~1.35 rows queued per model call (1.5k req/s); threads that hand over their calls
as they arrive gave batches of 5.5 and 2.3k req/s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc

from service.dataplane.plane import ROLLOUT_KEY, DataPlane
from service.errors import DlwpError, UnavailableError, status_of
from service.grpc import converters, protocol
from service.model.codecs import Codec, Encoded
from service.observability import metrics
from service.observability.requestid import HEADER as REQUEST_ID_HEADER
from service.observability.requestid import accept_or_new, bound
from service.protocols import v2
from service.protocols.versions import optional_version

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Call:
    """One RPC as its handler sees it: the method's route, and the model label once known."""

    route: str
    model: str = ""  # the served model the call is for, set once the DataPlane resolved it
    rollout_key: str | None = None  # x-rollout-key metadata: keeps a client on one rollout side


Handler = Callable[[Any, Call], Coroutine[Any, Any, Any]]


def handlers(plane: DataPlane, loop: asyncio.AbstractEventLoop) -> grpc.GenericRpcHandler:
    """The service's method handlers, bound to `plane`, running on `loop` (plane's loop)."""
    repository = plane.repository

    async def server_live(message: Any, call: Call) -> Any:
        return protocol.ServerLiveResponse(live=True)

    async def server_ready(message: Any, call: Call) -> Any:
        # The readiness decision /v2/health/ready answers with, not a second one.
        return protocol.ServerReadyResponse(ready=repository.ready)

    async def model_ready(message: Any, call: Call) -> Any:
        try:
            repository.live(message.name, optional_version(message.version))
        except UnavailableError:  # known, but not serving yet: "not ready" is the answer
            return protocol.ModelReadyResponse(ready=False)
        return protocol.ModelReadyResponse(ready=True)

    async def server_metadata(message: Any, call: Call) -> Any:
        return converters.server_metadata()

    async def model_metadata(message: Any, call: Call) -> Any:
        served = repository.live(message.name, optional_version(message.version))
        return converters.model_metadata(served)

    async def model_infer(message: Any, call: Call) -> Any:
        name = message.model_name
        version = optional_version(message.model_version)
        values, datatypes = converters.decode_inputs(message)
        wanted = [output.name for output in message.outputs]

        def encode(codec: Codec) -> Encoded:
            return v2.encode_inputs(codec, name, values, datatypes)

        served = plane.resolve(name, version, call.rollout_key)
        call.model = served.name
        inference = await plane.run(served, encode)
        output_name = v2.check_outputs(inference.served, wanted)
        raw = bool(message.raw_input_contents)  # answer raw to a client that sent raw
        return converters.infer_response(inference, output_name, raw, message.id)

    rpcs: dict[str, tuple[Handler, Any, bool]] = {
        # name: (handler, request class, measured like the REST route it mirrors)
        "ServerLive": (server_live, protocol.ServerLiveRequest, False),
        "ServerReady": (server_ready, protocol.ServerReadyRequest, False),
        "ModelReady": (model_ready, protocol.ModelReadyRequest, True),
        "ServerMetadata": (server_metadata, protocol.ServerMetadataRequest, True),
        "ModelMetadata": (model_metadata, protocol.ModelMetadataRequest, True),
        "ModelInfer": (model_infer, protocol.ModelInferRequest, True),
    }
    return grpc.method_handlers_generic_handler(
        protocol.SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                _rpc(f"/{protocol.SERVICE}/{name}", handler, measured, loop),
                request_deserializer=request_class.FromString,
                response_serializer=_serialize,
            )
            for name, (handler, request_class, measured) in rpcs.items()
        },
    )


def _serialize(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _rpc(
    route: str, handler: Handler, measured: bool, loop: asyncio.AbstractEventLoop
) -> Callable[[Any, grpc.ServicerContext], Any]:
    """`handler` as a gRPC method: run on `loop`, errors → status codes, metrics like REST."""

    def method(message: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        key = _metadata(context, ROLLOUT_KEY)
        call = Call(route, rollout_key=key.decode("latin-1") if isinstance(key, bytes) else key)
        # The client's x-request-id metadata (or a new id) goes back as trailing metadata; the
        # coroutine copies this thread's context, so its log lines carry the id too.
        request_id = accept_or_new(_metadata(context, REQUEST_ID_HEADER))
        with bound(request_id):
            return run(message, call, context, request_id, started)

    def run(
        message: Any, call: Call, context: grpc.ServicerContext, request_id: str, started: float
    ) -> Any:
        status = 200
        trailing: tuple[tuple[str, str], ...] = ((REQUEST_ID_HEADER, request_id),)
        future: concurrent.futures.Future[Any] = asyncio.run_coroutine_threadsafe(
            handler(message, call), loop
        )
        # Called when the RPC ends for any reason: a client that cancelled or passed its
        # deadline stops its call, and its queued rows are skipped (a no-op once answered).
        context.add_callback(future.cancel)
        try:
            answer = future.result()
            context.set_trailing_metadata(trailing)
            return answer
        except concurrent.futures.CancelledError:
            status = 499  # the client went away or its deadline passed, as REST counts it
            context.abort(grpc.StatusCode.CANCELLED, "the call was cancelled")
        except Exception as error:
            status, code, details, extra = _status(error, call)
            context.set_trailing_metadata(trailing + extra)
            context.abort(code, details)
        finally:
            if measured:
                metrics.observe_request(call.model, route, status, time.perf_counter() - started)

    return method


def _metadata(context: grpc.ServicerContext, key: str) -> str | bytes | None:
    """The value of the call's metadata `key` (keys arrive lower-case), or None."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value  # type: ignore[no-any-return]
    return None


def _status(error: Exception, call: Call) -> tuple[int, grpc.StatusCode, str, Any]:
    """An exception as (the HTTP code REST would answer, gRPC code, message, trailers)."""
    if not isinstance(error, DlwpError):
        log.error("unexpected error on %s", call.route, exc_info=error)
        return 500, grpc.StatusCode.INTERNAL, "internal error; the server logged it", ()
    status = status_of(error)
    trailing: tuple[tuple[str, str], ...] = ()
    if isinstance(error, UnavailableError):
        trailing = (("retry-after", str(error.retry_after_s)),)
    elif status.http >= 500:
        log.error("%s: %s", call.route, error.message)
    return status.http, grpc.StatusCode[status.grpc], error.message, trailing
