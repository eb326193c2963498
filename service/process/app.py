"""The app one serving process runs: the HTTP app with the gRPC front served beside it.

The one place the two transports meet (`service.rest` and `service.grpc` never import each
other). `dlwp serve` runs this factory in every worker, and the tests' in-process apps come from
here too, so they serve what a user gets.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from service.grpc import server as grpc_server
from service.rest import app as rest_app
from service.settings import Settings


def create_app(settings: Settings | None = None) -> ASGIApp:
    """`service.rest.app.create_app` with gRPC on `settings.grpc_port` (0: HTTP alone)."""
    return rest_app.create_app(settings, fronts=[grpc_server.serving])
