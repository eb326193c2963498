"""Training and export: a version appears whole or not at all, and loads back the same."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service.model import artifacts
from training import export, plots
from training.pipeline import evaluate_version, load_model, train_and_export

from ..conftest import needs_datasets

pytestmark = needs_datasets


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):  # type: ignore[no-untyped-def]
    models_dir = tmp_path_factory.mktemp("models")
    return train_and_export(
        "housing", models_dir=models_dir, data_dir=data_dir, epochs=2, verbose=0
    )


def test_export_writes_a_complete_first_version(trained):
    folder = trained.folder

    assert trained.version == 1 and folder.name == "1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "history.png",
        "manifest.json",
        "model.keras",
    ]
    manifest = artifacts.read_manifest(folder)
    assert manifest.metrics.keys() == {"test_mae", "kfold_mae"}
    assert manifest.recipe["seed"] == 0 and manifest.recipe["epochs"] == 2
    assert manifest.dataset["files"]["boston_housing.npz"]
    assert len(manifest.preprocessing["mean"]) == 13
    assert [s.name for s in manifest.signature.inputs] == ["features"]
    assert (folder / "history.png").read_bytes()[:4] == b"\x89PNG"
    assert list(folder.parent.iterdir()) == [folder], "no temporary folder is left behind"


def test_exported_model_loads_back_to_the_same_predictions(trained, data_dir):
    _, metrics = evaluate_version(trained.folder.parent.parent, "housing", 1, data_dir)

    assert metrics["test_mae"] == pytest.approx(trained.metrics["test_mae"], abs=1e-4)


def test_next_export_takes_the_next_version_number(trained):
    models_dir = trained.folder.parent.parent
    manifest = json.loads((trained.folder / "manifest.json").read_text())
    del manifest["name"], manifest["version"]

    version, folder = export.export_version(
        models_dir,
        "housing",
        manifest,
        lambda temp: load_model(trained.folder).save(temp / "model.keras"),
    )

    assert version == 2 and artifacts.read_manifest(folder).version == 2
    x = np.ones((3, 13), dtype=np.float32)
    np.testing.assert_allclose(load_model(folder)(x), load_model(trained.folder)(x))


def test_interrupted_export_leaves_no_version_behind(tmp_path, data_dir, monkeypatch):
    def crash(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt("stopped while writing history.png")

    monkeypatch.setattr(plots, "save_history_plot", crash)

    with pytest.raises(KeyboardInterrupt):
        train_and_export("housing", models_dir=tmp_path, data_dir=data_dir, epochs=1, verbose=0)

    assert artifacts.list_versions(tmp_path, "housing") == []
    assert list((tmp_path / "housing").iterdir()) == []


def test_housing_export_records_the_training_range_the_committed_version_holds(trained):
    exported = artifacts.read_manifest(trained.folder).preprocessing["training_range"]
    committed = artifacts.read_manifest(artifacts.version_dir(artifacts.BUNDLED_MODELS_DIR,
                                                              "housing", 1))  # fmt: skip

    assert exported == committed.preprocessing["training_range"]
    assert exported["min"][5] == 3.561 and exported["max"][5] == 8.725  # RM, rooms
