"""`dlwp train`, `evaluate` and `models`: the training half of the `dlwp` command line, which
`service.cli` builds (serving needs nothing from here)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from service.errors import ArtifactError
from service.model import artifacts
from training.recipes import RECIPES

MODEL_CHOICES = [*RECIPES, "all"]


def _names(choice: str) -> list[str]:
    return list(RECIPES) if choice == "all" else [choice]


def _models_dir(value: str | None) -> Path:
    return Path(value) if value else artifacts.default_models_dir()


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cmd_train(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("matplotlib") is None:  # a lean (serving-only) install
        raise ValueError("dlwp train needs the training extras: pip install 'dlwp-serving[train]'")
    _quiet_tensorflow()
    from service.client import ServerClient
    from training.pipeline import train_and_export

    models_dir = _models_dir(args.models_dir)
    if args.rollout and not args.serve_url:
        raise ValueError("--rollout needs --serve-url: the server that runs the rollout")
    server = ServerClient(args.serve_url) if args.serve_url else None
    results = []
    for name in _names(args.model):
        baseline = _serving_metrics(name, models_dir, server) if args.promote_if_better else None
        print(f"== training {name}", flush=True)
        trained = train_and_export(
            name,
            models_dir=models_dir,
            data_dir=args.data_dir,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            verbose=0 if args.quiet else 1,
            baseline=baseline,
        )
        results.append(trained)
        if trained.version is None:
            print(f"not exported: {name} {_metric_text(trained.metrics)} does not beat the "
                  f"serving version's {_metric_text(baseline or {})}", flush=True)  # fmt: skip
            continue
        print(f"exported {name} version {trained.version} to {trained.folder}", flush=True)
        if server is not None and args.rollout:
            print(server.start_rollout(name, trained.version, args.rollout))
        elif server is not None:
            print(f"{name}: server at {server.url} now serves version {server.load(name)}")
    print()
    print(f"{'model':<9} {'version':>7}  {'metric':<14} {'ours':>8} {'book':>8}")
    for trained in results:
        version = "—" if trained.version is None else str(trained.version)
        for metric, value in trained.metrics.items():
            book = trained.book.get(metric)
            book_text = f"{book:8.4f}" if book is not None else f"{'—':>8}"
            print(f"{trained.name:<9} {version:>7}  {metric:<14} {value:8.4f} {book_text}")
    return 0


def _metric_text(metrics: dict[str, float]) -> str:
    return ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()) or "(none)"


def _serving_metrics(name: str, models_dir: Path, server: Any) -> dict[str, float] | None:
    """The test metrics of the version serving now (the server's, else the newest on disk)."""
    if server is not None:
        metrics: dict[str, float] = server.metadata(name)["parameters"]["metrics"]
        return metrics
    versions = artifacts.list_versions(models_dir, name)
    if not versions:
        return None
    return artifacts.read_manifest(artifacts.version_dir(models_dir, name, versions[-1])).metrics


def cmd_evaluate(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from training.pipeline import evaluate_version

    for name in _names(args.model):
        version, metrics = evaluate_version(
            _models_dir(args.models_dir), name, args.version, args.data_dir
        )
        plain = {key.removeprefix("test_"): round(value, 4) for key, value in metrics.items()}
        if args.json:
            print(json.dumps({"model": name, "version": version, "metrics": plain}), flush=True)
        else:
            shown = ", ".join(f"{key} {value:.4f}" for key, value in plain.items())
            print(f"{name} version {version}: {shown}", flush=True)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    models_dir = _models_dir(args.models_dir)
    rows: list[dict[str, Any]] = []
    for name in artifacts.model_names(models_dir):
        for version in artifacts.list_versions(models_dir, name):
            folder = artifacts.version_dir(models_dir, name, version)
            try:
                manifest = artifacts.read_manifest(folder)
            except ArtifactError as error:
                rows.append({"model": name, "version": version, "error": error.message})
                continue
            rows.append(
                {
                    "model": name,
                    "version": version,
                    "task": manifest.task,
                    "created_at": manifest.created_at,
                    "metrics": manifest.metrics,
                }
            )
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print(f"no models in {models_dir}")
    for row in rows:
        if "error" in row:
            print(f"{row['model']:<9} {row['version']:>3}  unusable: {row['error']}")
            continue
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in row["metrics"].items())
        print(f"{row['model']:<9} {row['version']:>3}  {row['created_at']}  {metrics}")
    return 0


def add_commands(commands: Any) -> None:
    """`dlwp train`, `evaluate` and `models`, added to the `dlwp` parser by `service.cli`."""

    def add_dirs(sub: argparse.ArgumentParser, data: bool = True) -> None:
        sub.add_argument(
            "--models-dir", help="model repository (default: $DLWP_MODELS_DIR or ./models)"
        )
        if data:
            sub.add_argument(
                "--data-dir",
                help="folder of Keras dataset files (default: "
                "$DLWP_DATA_DIR, else keras.datasets downloads them)",
            )

    train = commands.add_parser("train", help="train a book recipe and export a new version")
    train.add_argument("model", choices=MODEL_CHOICES)
    train.add_argument("--epochs", type=int, help="override the recipe's epochs")
    train.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    train.add_argument("--seed", type=int, help="default: the recipe's (recorded in the manifest)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument(
        "--serve-url", help="then ask the server at this URL to load the new version"
    )
    train.add_argument(
        "--rollout",
        choices=["shadow", "canary"],
        help="with --serve-url: put the new version beside the serving one as a rollout, "
        "promoted or rolled back by its gate (docs/rollouts.md), instead of loading it",
    )
    train.add_argument(
        "--promote-if-better",
        action="store_true",
        help="export only if the test metric beats the serving version's",
    )
    add_dirs(train)
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="re-measure stored versions on the test set")
    evaluate.add_argument("model", choices=MODEL_CHOICES)
    evaluate.add_argument("--version", type=int, help="default: the newest")
    evaluate.add_argument("--json", action="store_true", help="one JSON object per model")
    add_dirs(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    models = commands.add_parser("models", help="list every model and version with its metrics")
    models.add_argument("--json", action="store_true")
    add_dirs(models, data=False)
    models.set_defaults(func=cmd_models)

