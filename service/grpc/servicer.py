"""The RPCs of `inference.GRPCInferenceService`: each decodes, calls the DataPlane, encodes.

As thin as the REST routes in `service/rest/routes/v2.py`, and sharing their functions: the same
models, versions, tensors, answers, and error messages. Errors become gRPC status codes in one
place (`_status`); every measured call is counted in the same metrics as REST, with the HTTP
code the same error gets on REST, so one alert covers both protocols.

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
from typing import Any

import grpc
from starlette.requests import Request

from service.dataplane.plane import DataPlane
from service.errors import DlwpError, UnavailableError
from service.grpc import converters, protocol
from service.observability import metrics
from service.observability.requestid import HEADER as REQUEST_ID_HEADER
from service.observability.requestid import accept_or_new, bound
from service.rest.routes import v2

log = logging.getLogger(__name__)

Handler = Callable[[Any, Request], Coroutine[Any, Any, Any]]

# HTTP status (as REST answers) → gRPC code; DESIGN.md "One server, many processes".
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def handlers(plane: DataPlane, loop: asyncio.AbstractEventLoop) -> grpc.GenericRpcHandler:
    """The service's method handlers, bound to `plane`, running on `loop` (plane's loop)."""
    repository = plane.repository

    async def server_live(message: Any, call: Request) -> Any:
        return protocol.ServerLiveResponse(live=True)

    async def server_ready(message: Any, call: Request) -> Any:
        # The readiness decision /v2/health/ready answers with, not a second one.
        return protocol.ServerReadyResponse(ready=repository.ready)

    async def model_ready(message: Any, call: Request) -> Any:
        try:
            repository.live(message.name, converters.version_of(message.version))
        except UnavailableError:  # known, but not serving yet: "not ready" is the answer
            return protocol.ModelReadyResponse(ready=False)
        return protocol.ModelReadyResponse(ready=True)

    async def server_metadata(message: Any, call: Request) -> Any:
        return converters.server_metadata()

    async def model_metadata(message: Any, call: Request) -> Any:
        served = repository.live(message.name, converters.version_of(message.version))
        return converters.model_metadata(served)

    async def model_infer(message: Any, call: Request) -> Any:
        name = message.model_name
        version = converters.version_of(message.model_version)
        values, datatypes = converters.decode_inputs(message)
        wanted = [output.name for output in message.outputs]

        def encode(codec: Any) -> Any:
            return v2.rows_from_inputs(codec, name, values, datatypes)

        served, outputs = await plane.predict(call, name, version, encode)
        output_name = v2.check_outputs(served, wanted)
        raw = bool(message.raw_input_contents)  # answer raw to a client that sent raw
        return converters.infer_response(served, output_name, outputs, raw, message.id)

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
        call = _call(route, context)
        # The client's x-request-id metadata (or a new id) goes back as trailing metadata; the
        # coroutine copies this thread's context, so its log lines carry the id too.
        request_id = accept_or_new(call.headers.get(REQUEST_ID_HEADER))
        with bound(request_id):
            return run(message, call, context, request_id, started)

    def run(
        message: Any, call: Request, context: grpc.ServicerContext, request_id: str, started: float
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
                model = call.scope["state"].get("model", "")
                metrics.observe_request(model, route, status, time.perf_counter() - started)

    return method


def _call(route: str, context: grpc.ServicerContext) -> Request:
    """The call as the request the core takes: gRPC metadata in, as the headers.

    The DataPlane, the logs and anything keyed on headers (a request id) then see a gRPC call
    and an HTTP request alike.
    """
    headers = [
        (key.encode("latin-1"), value if isinstance(value, bytes) else value.encode("latin-1"))
        for key, value in context.invocation_metadata() or ()
    ]
    return Request({"type": "http", "method": "POST", "path": route, "headers": headers,
                    "query_string": b"", "state": {}})  # fmt: skip


def _status(error: Exception, call: Request) -> tuple[int, grpc.StatusCode, str, Any]:
    """The one mapping from exceptions to (HTTP-style code, gRPC code, message, trailers)."""
    if not isinstance(error, DlwpError):
        log.error("unexpected error on %s", call.url.path, exc_info=error)
        return 500, grpc.StatusCode.INTERNAL, "internal error; the server logged it", ()
    trailing: tuple[tuple[str, str], ...] = ()
    if isinstance(error, UnavailableError):
        trailing = (("retry-after", str(error.retry_after_s)),)
        model = call.scope["state"].get("model")
        if model:
            metrics.REJECTED.labels(model).inc()
    elif error.status_code >= 500:
        log.error("%s: %s", call.url.path, error.message)
    code = _CODES.get(error.status_code, grpc.StatusCode.INTERNAL)
    return error.status_code, code, error.message, trailing
