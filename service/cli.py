"""The `dlwp` command line: `serve` (run the server) and `predict` (a client for a running
server) here; `train`, `evaluate` and `models` from `training.cli`, added only when asked for, so
the serving process imports nothing from training and a lean install needs no training extras."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.errors import DlwpError
from service.observability.metrics import MULTIPROC_ENV

DEFAULT_URL = "http://127.0.0.1:8000"


def add_commands(commands: Any) -> None:
    serve = commands.add_parser("serve", help="serve the models over HTTP", allow_abbrev=False)
    serve.add_argument("--host", help="default $DLWP_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, help="default $DLWP_PORT or 8000")
    serve.add_argument("--workers", type=int, help="server processes (default $DLWP_WORKERS or 1)")
    serve.add_argument(
        "--models-dir", help="model repository (default $DLWP_MODELS_DIR or ./models)"
    )
    serve.add_argument("--grpc-port", type=int, help="default $DLWP_GRPC_PORT or 8001; 0: off")
    serve.set_defaults(func=cmd_serve)

    predict = commands.add_parser(
        "predict", help="ask a running server for a prediction", allow_abbrev=False
    )
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

    rollout = commands.add_parser(
        "rollout", help="put a candidate version beside the serving one on a running server"
    )
    actions = rollout.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start", help="start a shadow or canary rollout")
    start.add_argument("model")
    start.add_argument("--version", type=int, required=True, help="the candidate version")
    start.add_argument("--mode", choices=["shadow", "canary"], default="shadow")
    start.add_argument(
        "--share", type=float, help="shadow: share also computed (default 1.0); canary: share "
        "answered by the candidate (default 0.1)"
    )  # fmt: skip
    start.add_argument(
        "--gate", action="append", default=[], metavar="NAME=VALUE",
        help="override a gate threshold, e.g. --gate min_compared=300 (see docs/rollouts.md)",
    )  # fmt: skip
    for name, text in (("status", "the rollout's live comparison, as a table"),
                       ("promote", "promote the candidate now"),
                       ("abort", "stop the rollout; the serving version stays")):  # fmt: skip
        action = actions.add_parser(name, help=text)
        action.add_argument("model")
    for parser in actions.choices.values():
        parser.add_argument("--url", default=os.environ.get("DLWP_URL", DEFAULT_URL))
        parser.add_argument("--json", action="store_true", help="print the status as JSON")
    rollout.set_defaults(func=cmd_rollout)

    feedback = commands.add_parser("feedback", help="labelled answers kept by the server")
    feedback_actions = feedback.add_subparsers(dest="action", required=True)
    export = feedback_actions.add_parser(
        "export", help="write the labelled examples in the format `dlwp train --data` reads"
    )
    export.add_argument("model", choices=["imdb", "reuters", "housing", "mnist"])
    export.add_argument("--out", help="file (folder for mnist); default <model>-feedback.*")
    export.add_argument(
        "--state-dir", help="the server's state folder (default $DLWP_STATE_DIR, else "
        "<models dir>/.dlwp-state); $DLWP_FEEDBACK_DB wins when set"
    )  # fmt: skip
    export.set_defaults(func=cmd_feedback_export)


def cmd_serve(args: argparse.Namespace) -> int:
    overrides = {"host": args.host, "port": args.port, "workers": args.workers,
                 "models_dir": args.models_dir, "grpc_port": args.grpc_port}  # fmt: skip
    for key, value in overrides.items():
        if value is not None:
            # Workers are separate processes that build their own Settings from the environment.
            os.environ[f"DLWP_{key.upper()}"] = str(value)
    from service.process.supervisor import serve
    from service.settings import Settings

    settings = Settings()
    if settings.grpc_port:
        from service.process.ports import check_port_free

        check_port_free(settings.host, settings.grpc_port)  # before the workers share it
    if settings.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="dlwp-metrics-")
    return serve(settings)


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


def cmd_rollout(args: argparse.Namespace) -> int:
    from service.client import ServerClient
    from service.rollout_table import rollout_table

    client = ServerClient(args.url)
    if args.action == "start":
        body: dict[str, Any] = {"version": args.version, "mode": args.mode}
        if args.share is not None:
            body["share"] = args.share
        if args.gate:
            body["gate"] = _features(args.gate)
        answer = client.rollout(args.model, body=body)
    else:
        answer = client.rollout(args.model, "" if args.action == "status" else args.action)
    print(json.dumps(answer, indent=2) if args.json else rollout_table(answer))
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    from service.feedback import export
    from service.feedback.store import open_store
    from service.repository.desired_state import STATE_DIR_NAME
    from service.settings import Settings

    settings = Settings()
    state_dir = Path(args.state_dir or settings.state_dir or settings.models_dir / STATE_DIR_NAME)
    store = open_store(settings.feedback_db, state_dir, settings.feedback_max_answers,
                       settings.feedback_max_age_s)  # fmt: skip
    try:
        examples = store.labelled(args.model)
    finally:
        store.close()
    out = Path(args.out) if args.out else export.default_path(args.model)
    written, skipped = export.export(args.model, examples, out)
    print(f"{written} labelled {args.model} examples written to {out}"
          + (f"; {skipped} labelled without their inputs (the server keeps inputs only with "
             "DLWP_FEEDBACK_KEEP_INPUTS=true)" if skipped else ""))  # fmt: skip
    return 0


def _features(pairs: list[str]) -> dict[str, float]:
    features = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        features[key.strip()] = float(value)
    return features


SERVING_COMMANDS = ("serve", "predict", "rollout", "feedback")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlwp",
        description="Train, evaluate, list, serve and query the book's models.",
        allow_abbrev=False,  # `--data` must never be read as another option's abbreviation
    )
    commands = parser.add_subparsers(dest="command", required=True)
    if not argv or argv[0] not in SERVING_COMMANDS:
        try:
            from training.cli import add_commands as add_training_commands
        except ModuleNotFoundError as error:  # an install without the training package
            if error.name != "training":
                raise
        else:
            add_training_commands(commands)
    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    # `dlwp predict sentiment --url U "text"`: inputs may follow options, which argparse's
    # subcommands do not allow for a positional list; collect the leftovers as inputs.
    args, extra = parser.parse_known_args(argv)
    if extra and args.command == "predict" and not any(e.startswith("-") for e in extra):
        args.inputs = [*args.inputs, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.func(args))
    except Exception as error:
        from service.client import ServerError  # only now: `dlwp serve` never needs httpx

        if not isinstance(error, FileNotFoundError | ValueError | DlwpError | ServerError):
            raise
        print(f"dlwp: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
