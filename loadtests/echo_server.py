"""The echo ceiling: the fastest a Python HTTP server can answer our bodies without a model.

uvicorn (uvloop, httptools) + a bare Starlette route that reads the body with orjson into numpy
and returns a constant. `make bench` runs it beside the real server; ours ÷ this is the share of
the achievable request rate we keep while validating, batching and running the model.
"""

from __future__ import annotations

import sys

import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CONSTANT = orjson.dumps({"predictions": [[0.1] * 10]})


async def echo(request: Request) -> Response:
    body = orjson.loads(await request.body())
    for value in body.values():
        if isinstance(value, list) and value and not isinstance(value[0], str):
            np.asarray(value, dtype=np.float32)
    return Response(CONSTANT, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"ready": true}', media_type="application/json")


async def metrics(request: Request) -> Response:
    return Response(b"", media_type="text/plain")


app = Starlette(routes=[
    Route("/v2/health/ready", ready), Route("/metrics", metrics),
    Route("/{path:path}", echo, methods=["POST"]),
])  # fmt: skip

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
                access_log=False, log_level="warning")  # fmt: skip
