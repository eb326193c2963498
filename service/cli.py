"""`dlwp serve` (run the server) and `dlwp predict` (a client for a running server)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from service.metrics import MULTIPROC_ENV

DEFAULT_URL = "http://127.0.0.1:8000"


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the models over HTTP")
    serve.add_argument("--host", help="default $DLWP_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default $DLWP_PORT or 8000")
    serve.add_argument("--workers", type=int, help="server processes (default $DLWP_WORKERS or 1)")
    serve.add_argument(
        "--models-dir", help="model repository (default $DLWP_MODELS_DIR or ./models)"
    )
    serve.set_defaults(func=cmd_serve)

    predict = commands.add_parser("predict", help="ask a running server for a prediction")
    predict.add_argument("task", choices=["sentiment", "topics", "digits", "housing"])
    predict.add_argument(
        "inputs",
        nargs="*",
        help="sentiment/topics: the text (default: stdin); digits: image paths; "
        "housing: KEY=VALUE for all 13 features",
    )
    predict.add_argument("--url", default=os.environ.get("DLWP_URL", DEFAULT_URL))
    predict.add_argument("--top-k", type=int, default=3, help="topics: how many to show")
    predict.add_argument("--timeout", type=float, default=30.0)
    predict.set_defaults(func=cmd_predict)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    overrides = {"host": args.host, "port": args.port, "workers": args.workers,
                 "models_dir": args.models_dir}  # fmt: skip
    for key, value in overrides.items():
        if value is not None:
            # Workers are separate processes that build their own Settings from the environment.
            os.environ[f"DLWP_{key.upper()}"] = str(value)
    from service.settings import Settings
    from service.transport import uvicorn_options

    settings = Settings()
    if settings.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="dlwp-metrics-")
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        **uvicorn_options(settings),
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from service.client import ServerClient

    request: dict[str, Any]
    if args.task in ("sentiment", "topics"):
        texts = args.inputs or [sys.stdin.read()]
        request = {"json": {"texts": texts}}
        if args.task == "topics":
            request["json"]["top_k"] = args.top_k
    elif args.task == "digits":
        if len(args.inputs) != 1:
            raise ValueError("dlwp predict digits: give one image path")
        path = Path(args.inputs[0])
        kind = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
        request = {"content": path.read_bytes(), "headers": {"content-type": kind}}
    else:
        request = {"json": {"features": _features(args.inputs)}}
    answer = ServerClient(args.url, timeout_s=args.timeout).predict(args.task, **request)
    print(json.dumps(answer, indent=2))
    return 0


def _features(pairs: list[str]) -> dict[str, float]:
    features = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        features[key.strip()] = float(value)
    return features
