"""Shared fixtures: where the datasets and the committed models are."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
COMMITTED_MODELS = REPO / "models"


def _data_dir() -> Path | None:
    for candidate in (os.environ.get("DLWP_DATA_DIR"), REPO.parent / "shared" / "datasets"):
        if candidate and (Path(candidate) / "mnist.npz").is_file():
            return Path(candidate)
    return None


DATA_DIR = _data_dir()
needs_datasets = pytest.mark.skipif(
    DATA_DIR is None,
    reason="the Keras dataset files are not here: set DLWP_DATA_DIR or place ../shared/datasets",
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if DATA_DIR is None:
        pytest.skip("the Keras dataset files are not here: set DLWP_DATA_DIR")
    return DATA_DIR


# ---------------------------------------------------------------------------------- serving

from collections.abc import Iterator  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from tests.support.servers import ServerProcess  # noqa: E402


def make_client(**settings: object) -> TestClient:
    from service.process.app import create_app
    from service.settings import Settings

    settings.setdefault("models_dir", COMMITTED_MODELS)
    if settings["models_dir"] == COMMITTED_MODELS:  # never write state into the committed models
        settings.setdefault("state_dir", Path(tempfile.mkdtemp(prefix="dlwp-state-")))
    settings.setdefault("poll_seconds", 0)
    settings.setdefault("grpc_port", 0)  # in-process apps need no gRPC unless a test asks
    # Addressed as 127.0.0.1, as a local client reaches the server (the guard on repository
    # control refuses other names on a loopback-only server without a key).
    return TestClient(create_app(Settings(**settings)), base_url="http://127.0.0.1",
                      raise_server_exceptions=False)  # fmt: skip


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """An app on the committed models, in-process."""
    with make_client() as test_client:
        yield test_client  # entering runs the lifespan, which loads every model first


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """A real server process on the committed models, keeping every answer for feedback (as
    docs/rollouts.md starts it for its examples)."""
    process = ServerProcess({"DLWP_MODELS_DIR": str(COMMITTED_MODELS),
                             "DLWP_FEEDBACK": "true"}).wait_ready()  # fmt: skip
    yield process
    process.stop()


# ---------------------------------------------------------------------------------- publishing

import json  # noqa: E402

from training import export  # noqa: E402


def add_version(models_dir: Path, name: str = "housing", corrupt: str | None = None) -> int:
    """Publish a copy of version 1 as the next version (optionally broken in one way)."""

    def alter(folder: Path) -> None:
        if corrupt == "model":
            (folder / "model.keras").write_bytes(b"this is not a keras zip file")
        if corrupt == "shuffled":  # a valid artifact of a worse model (its digests its own)
            _shuffle_weights(folder / "model.keras")

    version, folder = export.publish_copy(models_dir, name, models_dir / name / "1", alter)
    if corrupt == "manifest":
        (folder / "manifest.json").write_text("{not json")
    if corrupt == "signature":
        broken = json.loads((folder / "manifest.json").read_text())
        broken["signature"]["outputs"][0]["shape"] = [-1, 10]
        (folder / "manifest.json").write_text(json.dumps(broken))
    return version


def _shuffle_weights(path: Path) -> None:
    """Rewrite a Keras model with each weight tensor's values shuffled: it loads and answers,
    badly (a deliberately worse candidate)."""
    import keras
    import numpy as np

    model = keras.saving.load_model(path, compile=False)
    rng = np.random.default_rng(7)
    shuffled = [rng.permutation(w.reshape(-1)).reshape(w.shape) for w in model.get_weights()]
    model.set_weights(shuffled)
    path.unlink()
    model.save(path)
