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

USER_DATA_EPILOG = """\
formats for --data (docs/retraining.md has the whole walk-through):
  mnist    a folder with one subfolder per digit, PNG or JPEG of any size, either polarity:
             digits/0/a.png  digits/0/b.jpg  ...  digits/9/z.png
  imdb     JSON Lines (or CSV with the header text,label):
             {"text": "A superb, moving film.", "label": "positive"}
             {"text": "Dull and far too long.", "label": "negative"}
             {"text": "I want my two hours back.", "label": "negative"}
  reuters  JSON Lines (or CSV with the header text,topic):
             {"text": "Shr 45 cts vs 38 cts net 1.2 mln", "topic": "earn"}
             {"text": "Wheat exports rose to 1.5 mln tonnes", "topic": "grain"}
             {"text": "The company agreed to buy Acme Corp", "topic": "acq"}
  housing  CSV with the 13 feature names (any order) and MEDV or price in $1000s:
             CRIM,ZN,INDUS,CHAS,NOX,RM,AGE,DIS,RAD,TAX,PTRATIO,B,LSTAT,MEDV
             0.00632,18,2.31,0,0.538,6.575,65.2,4.09,1,296,15.3,396.9,4.98,24.0
             0.02731,0,7.07,0,0.469,6.421,78.9,4.9671,2,242,17.8,396.9,9.14,21.6
"""


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
    if args.data is not None:
        return _train_on_user_data(args, models_dir, server)
    for option in ("data_mode", "holdout", "tolerance"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')} goes with --data PATH")
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


def _train_on_user_data(args: argparse.Namespace, models_dir: Path, server: Any) -> int:
    from training.retrain import Request, retrain, table

    if args.model == "all":
        raise ValueError("--data trains one model: name it (mnist, imdb, reuters or housing)")
    serving_version = int(server.metadata(args.model)["versions"][0]) if server else None
    tolerance = args.tolerance
    if tolerance is not None and get_recipe_metric(args.model) == "accuracy":
        tolerance /= 100  # given in points of accuracy
    print(f"== training {args.model} on {args.data} ({args.data_mode or 'add'})", flush=True)
    outcome = retrain(
        Request(
            name=args.model,
            data=Path(args.data).expanduser(),
            models_dir=models_dir,
            mode=args.data_mode or "add",
            holdout=0.2 if args.holdout is None else args.holdout,
            seed=args.seed,
            epochs=args.epochs,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
            promote_if_better=args.promote_if_better,
            tolerance=tolerance,
            serving_version=serving_version,
            verbose=0 if args.quiet else 1,
        )
    )
    print()
    print(table(outcome))
    print(outcome.reason, flush=True)
    if outcome.version is None:
        return 0
    print(f"exported {args.model} version {outcome.version} to {outcome.folder}", flush=True)
    if server is not None:
        print(f"{args.model}: server at {server.url} now serves version {server.load(args.model)}")
    return 0


def get_recipe_metric(name: str) -> str:
    return RECIPES[name].metric


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

    train = commands.add_parser(
        "train",
        help="train a book recipe (or retrain it on your data) and export a new version",
        description="Train a book recipe on the book's data, or with --data on your own "
        "labelled examples, and export it as the model's next version.",
        epilog=USER_DATA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    train.add_argument("model", choices=MODEL_CHOICES)
    train.add_argument(
        "--data",
        metavar="PATH",
        help="your labelled examples (formats below): retrain on them, score the new model and "
        "the serving version on a holdout of them and on the book's test set",
    )
    train.add_argument(
        "--data-mode",
        choices=["add", "only"],
        help="with --data: add (default) joins your examples to the book's training set, "
        "keeping its vocabulary and labels; only trains on yours alone, with your vocabulary "
        "and (reuters) your topics",
    )
    train.add_argument(
        "--holdout",
        type=float,
        metavar="SHARE",
        help="with --data: the share of every label held out for evaluation (default 0.2)",
    )
    train.add_argument(
        "--tolerance",
        type=float,
        help="with --promote-if-better --data: how much worse than the serving version the "
        "new model may score on the book's test set (default 0.5 points of accuracy, 0.2 MAE)",
    )
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
        help="export only if the new model beats the serving version (with --data: on your "
        "holdout, within --tolerance on the book's test set)",
    )
    add_dirs(train)
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="re-measure stored versions on the test set", allow_abbrev=False
    )
    evaluate.add_argument("model", choices=MODEL_CHOICES)
    evaluate.add_argument("--version", type=int, help="default: the newest")
    evaluate.add_argument("--json", action="store_true", help="one JSON object per model")
    add_dirs(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    models = commands.add_parser(
        "models", help="list every model and version with its metrics", allow_abbrev=False
    )
    models.add_argument("--json", action="store_true")
    add_dirs(models, data=False)
    models.set_defaults(func=cmd_models)
