"""The FastAPI application factory: settings in, a wired app out.

`service.process.app.create_app` (what `dlwp serve` runs) builds one app per worker process,
with the gRPC front passed in: this transport never imports the other. Each loads and warms
every model before it takes its first connection.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from service.dataplane.plane import DataPlane
from service.errors import DlwpError
from service.feedback.recorder import FLUSH_S, Recorder
from service.model.runtime import configure_backend, configure_threads
from service.observability import metrics
from service.observability.logs import configure_logging
from service.protocols.schemas import with_error_bodies
from service.protocols.v2 import SERVER_VERSION
from service.repository.repository import ModelRepository
from service.repository.rollout import PUBLISH_S, Rollouts
from service.rest.control import ControlGuard
from service.rest.hotpath import HotRoutes, response_for_error
from service.rest.http import error_response
from service.rest.middleware import BodyLimitMiddleware, RequestMiddleware
from service.rest.routes import explain as explain_routes
from service.rest.routes import feedback as feedback_routes
from service.rest.routes import page as page_routes
from service.rest.routes import repository as repository_routes
from service.rest.routes import tasks, tfserving, v2
from service.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """
Predictions from the four classic models of *Deep Learning with Python*:
movie-review sentiment (IMDB), newswire topics (Reuters), handwritten digits (MNIST) and
Boston house prices. Task endpoints take friendly JSON; the same models also speak the
Open Inference Protocol (KServe V2) and TF Serving's REST API. Errors are always
`{"error": "..."}`.
"""


# Another transport served beside HTTP while the app runs, given the data plane: entered once the
# models are warm, left first at shutdown (`service.grpc.server.serving`).
Front = Callable[[DataPlane, Settings], contextlib.AbstractAsyncContextManager[object]]


def create_app(settings: Settings | None = None, fronts: Sequence[Front] = ()) -> ASGIApp:
    """The server's ASGI app: metrics, body limit and the control guard around the hot routes
    and FastAPI."""
    settings = settings or Settings()
    api = create_api(settings, fronts)
    hot = HotRoutes(api, [tasks.router, v2.router, explain_routes.router, tfserving.router])
    guarded = ControlGuard(hot, settings)
    return RequestMiddleware(BodyLimitMiddleware(guarded, settings.max_body_bytes),
                             settings.access_log)  # fmt: skip


def create_api(settings: Settings, fronts: Sequence[Front] = ()) -> FastAPI:
    """The FastAPI app: every route, the lifespan that loads the models, error handlers."""
    configure_threads(settings.compute_threads)
    configure_logging(settings.log_level)
    repository = ModelRepository(settings)
    recorder = Recorder(settings, repository.state.folder)
    rollouts = Rollouts(repository, recorder.rollout_labels)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_backend(settings.backend, settings.compute_threads)
        # Loading before start-up completes keeps this worker off the shared socket until its
        # models are warm, so with several workers no request reaches one that is still loading.
        await repository.load_all()
        await recorder.start()
        log.info("ready: serving %s", ", ".join(
            f"{s.name}/{s.version}" for s in repository.live_models()) or "nothing")  # fmt: skip
        # Everything allocated so far (TensorFlow, the models) lives as long as the process: move
        # it out of the collector's sight, so full collections stop scanning it (p99 spikes).
        gc.collect()
        gc.freeze()
        beside = contextlib.AsyncExitStack()
        for front in fronts:
            await beside.enter_async_context(front(app.state.plane, settings))
        repository.start_background()
        repository.background.start("rollouts", rollouts.step, PUBLISH_S)  # counts, gates
        repository.background.start("feedback", recorder.step, FLUSH_S)  # answers kept
        try:
            yield
        finally:
            await beside.aclose()
            rollouts.publish(force=True)  # what this worker saw still counts once it is gone
            await repository.close()
            await recorder.close()

    app = FastAPI(
        title="dlwp-serving",
        version=SERVER_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by service.rest.routes.page
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.plane = DataPlane(repository, settings, recorder)
    app.state.rollouts = rollouts
    app.state.recorder = recorder
    app.include_router(tasks.router)
    app.include_router(v2.router)
    app.include_router(explain_routes.router)  # before tfserving: its /{target} takes any verb
    app.include_router(tfserving.router)
    app.include_router(repository_routes.router)
    app.include_router(feedback_routes.router)
    app.include_router(page_routes.router)
    app.add_api_route("/metrics", _metrics, methods=["GET"], tags=["metrics"],
                      summary="Prometheus metrics (text format)",
                      response_class=PlainTextResponse)  # fmt: skip
    _add_error_handlers(app)
    openapi = app.openapi
    app.openapi = lambda: with_error_bodies(openapi())  # type: ignore[method-assign]
    return app


async def _metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


def _add_error_handlers(app: FastAPI) -> None:
    async def dlwp_error(request: Request, error: Exception) -> Response:
        return response_for_error(request, error)

    app.add_exception_handler(DlwpError, dlwp_error)
    app.add_exception_handler(Exception, dlwp_error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()[:3]
        )
        return error_response(problems or "invalid request", 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        headers = getattr(error, "headers", None)
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path}: see /docs"
        elif error.status_code == 405:  # Starlette names only the first route on the path
            methods = {
                method
                for route in app.routes
                if isinstance(route, APIRoute) and route.path_regex.match(request.scope["path"])
                for method in route.methods or ()
            }
            headers = {"Allow": ", ".join(sorted(methods))}
        return error_response(message, error.status_code, headers)
