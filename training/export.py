"""Write a trained model as the next version in the repository, atomically.

Everything is written into a hidden temporary folder beside the versions, then renamed into
place: a reader (the server's poller, `dlwp models`) sees either no version or a complete one.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.model import artifacts
from training.recipes import Recipe

SIGNATURES: dict[str, dict[str, Any]] = {
    "digits": {
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 784]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
    },
    "sentiment": {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "probability", "datatype": "FP32", "shape": [-1, 1]}],
    },
    "topics": {
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 46]}],
    },
    "housing": {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 13]}],
        "outputs": [{"name": "price", "datatype": "FP32", "shape": [-1, 1]}],
    },
}


def default_labels(recipe: Recipe, label_names: list[str] | None) -> list[str] | None:
    if recipe.task == "digits":
        return [str(digit) for digit in range(10)]
    if recipe.task == "sentiment":
        return ["negative", "positive"]
    return label_names


def build_manifest(
    recipe: Recipe,
    *,
    seed: int,
    metrics: dict[str, float],
    dataset: dict[str, Any],
    preprocessing: dict[str, Any],
    labels: list[str] | None,
    kfold: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything but name/version, which `export_version` fills in when it claims a number."""
    import keras
    import tensorflow as tf

    signature = dict(SIGNATURES[recipe.task])
    # A model trained on a user's own topics has as many outputs as they have topics.
    outputs = [{**spec, "shape": [-1, recipe.output.units]} for spec in signature["outputs"]]
    signature["outputs"] = outputs
    signature["model_input"] = {
        "name": "features",
        "datatype": "FP32",
        "shape": [-1, recipe.input_size],
    }
    manifest: dict[str, Any] = {
        "task": recipe.task,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "framework": {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "python": platform.python_version(),
        },
        "recipe": {**recipe.as_dict(), "seed": seed},
        "dataset": dataset,
        "metrics": metrics,
        "signature": signature,
        "labels": labels,
        "preprocessing": preprocessing,
    }
    if kfold:
        manifest["kfold"] = kfold
    return manifest


def publish_copy(
    models_dir: Path,
    name: str,
    source: Path,
    alter: Callable[[Path], None] | None = None,
) -> tuple[int, Path]:
    """Publish the files of the version folder `source` as the next version of `name` (after
    `alter(folder)` changes them, if given): a candidate that answers like `source`, for rollouts,
    their benchmarks and their tests. Returns the version number and its folder."""
    manifest = json.loads((source / artifacts.MANIFEST_FILE).read_text(encoding="utf-8"))
    del manifest["name"], manifest["version"]

    def write_files(folder: Path) -> None:
        for path in source.iterdir():
            if path.name != artifacts.MANIFEST_FILE:
                shutil.copy(path, folder / path.name)
        if alter is not None:
            alter(folder)

    return export_version(models_dir, name, manifest, write_files)


def export_version(
    models_dir: Path,
    name: str,
    manifest: dict[str, Any],
    write_files: Callable[[Path], None],
) -> tuple[int, Path]:
    """Write a new version of `name`: `write_files(folder)` writes the model and its extras.

    Returns the version number and its folder. On any failure nothing is left behind.
    """
    model_root = models_dir / name
    model_root.mkdir(parents=True, exist_ok=True)
    temp = model_root / f"{artifacts.TEMP_PREFIX}{uuid.uuid4().hex}"
    temp.mkdir()
    try:
        write_files(temp)
        # Recorded from what was written, so a load can tell the files are still the exported ones.
        digests = artifacts.file_digests(temp)
        rest = {key: value for key, value in manifest.items() if key != "sha256"}
        while True:
            existing = artifacts.list_versions(models_dir, name)
            version = (existing[-1] if existing else 0) + 1
            final_manifest = {"name": name, "version": version, "sha256": digests, **rest}
            (temp / artifacts.MANIFEST_FILE).write_text(
                json.dumps(final_manifest, indent=2) + "\n", encoding="utf-8"
            )
            _fsync_folder(temp)
            target = artifacts.version_dir(models_dir, name, version)
            try:
                # rename() will not replace a non-empty folder, so two exports racing for the
                # same number cannot overwrite each other: the loser takes the next number.
                os.rename(temp, target)
            except OSError:
                if target.exists():
                    continue
                raise
            return version, target
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _fsync_folder(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
