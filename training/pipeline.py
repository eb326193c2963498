"""Train a recipe end to end and export it; evaluate stored versions on the test set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.model import artifacts
from training import datasets, export, features, loop, plots
from training.recipes import Recipe, get_recipe


@dataclass
class Trained:
    """A trained model; `version` and `folder` are None when it was not exported."""

    name: str
    version: int | None
    folder: Path | None
    metrics: dict[str, float]
    book: dict[str, float]


def is_better(metrics: dict[str, float], baseline: dict[str, float]) -> bool:
    """Whether new test metrics beat a baseline's: higher accuracy, or lower MAE."""
    if "test_accuracy" in metrics and "test_accuracy" in baseline:
        return metrics["test_accuracy"] > baseline["test_accuracy"]
    if "test_mae" in metrics and "test_mae" in baseline:
        return metrics["test_mae"] < baseline["test_mae"]
    return True


def train_and_export(
    name: str,
    *,
    models_dir: Path,
    data_dir: str | Path | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    verbose: int = 1,
    baseline: dict[str, float] | None = None,
) -> Trained:
    """Train `name`'s recipe and export it as the next version.

    With a `baseline` (the serving version's metrics), export only if the new model beats it.
    """
    recipe = get_recipe(name)
    seed = recipe.seed if seed is None else seed
    if epochs is not None:
        recipe = recipe.with_epochs(epochs)
    if batch_size is not None:
        recipe = recipe.with_batch_size(batch_size)
    dataset = datasets.load_dataset(name, data_dir)
    prepared = features.prepare(recipe, dataset)
    result = loop.train(recipe, prepared, seed=seed, verbose=verbose)
    if baseline is not None and not is_better(result.metrics, baseline):
        return Trained(name, None, None, result.metrics, recipe.book_result)
    manifest = export.build_manifest(
        recipe,
        seed=seed,
        metrics=result.metrics,
        dataset={
            "name": dataset.name,
            "files": dataset.files,
            "train_size": len(dataset.y_train),
            "test_size": len(dataset.y_test),
        },
        preprocessing=prepared.preprocessing,
        labels=export.default_labels(recipe, dataset.label_names),
        kfold=result.kfold,
    )

    def write_files(folder: Path) -> None:
        result.model.save(folder / artifacts.MODEL_FILE)
        if prepared.vocabulary is not None:
            (folder / artifacts.VOCABULARY_FILE).write_text(
                json.dumps(prepared.vocabulary), encoding="utf-8"
            )
        plots.save_history_plot(recipe, result.curves, folder / artifacts.HISTORY_FILE)

    version, folder = export.export_version(models_dir, name, manifest, write_files)
    return Trained(name, version, folder, result.metrics, recipe.book_result)


def load_model(folder: Path) -> Any:
    import keras

    return keras.saving.load_model(folder / artifacts.MODEL_FILE, safe_mode=True, compile=False)


def evaluate_version(
    models_dir: Path, name: str, version: int | None = None, data_dir: str | Path | None = None
) -> tuple[int, dict[str, float]]:
    """Re-measure a stored version (default: newest) on the test set with its own preprocessing."""
    versions = artifacts.list_versions(models_dir, name)
    if not versions:
        raise FileNotFoundError(f"no versions of {name!r} in {models_dir}")
    chosen = versions[-1] if version is None else version
    if chosen not in versions:
        raise FileNotFoundError(f"{name} has no version {chosen}; it has {versions}")
    folder = artifacts.version_dir(models_dir, name, chosen)
    manifest = artifacts.read_manifest(folder)
    recipe: Recipe = get_recipe(name)
    dataset = datasets.load_dataset(name, data_dir)
    x_test = features.encode(manifest.preprocessing, dataset.x_test)
    y_test = features.encode_labels(recipe.task, dataset.y_test)
    outputs = loop.predict(load_model(folder), x_test)
    return chosen, loop.metric_from_predictions(recipe, outputs, np.asarray(y_test))
