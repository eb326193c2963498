"""The model repository on disk: `models/<name>/<version>/` folders and their manifests.

This module is the contract between training (which writes versions) and serving (which reads
them). A version folder appears by an atomic rename, so any folder named by an integer is
complete; temporary folders start with a dot and are never listed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import ArtifactError

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
VOCABULARY_FILE = "vocabulary.json"
HISTORY_FILE = "history.png"
TEMP_PREFIX = ".tmp-"
MODELS_DIR_ENV = "DLWP_MODELS_DIR"
# The committed repository beside the code: what a fresh checkout serves.
BUNDLED_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def default_models_dir() -> Path:
    return Path(os.environ.get(MODELS_DIR_ENV) or BUNDLED_MODELS_DIR)


class TensorSpec(BaseModel):
    name: str
    datatype: Literal["FP32", "INT64", "BYTES"]
    shape: list[int]


class Signature(BaseModel):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    model_input: TensorSpec


class Manifest(BaseModel):
    """What `manifest.json` holds; unknown extra fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: int = Field(ge=1)
    task: Literal["digits", "sentiment", "topics", "housing"]
    created_at: str
    framework: dict[str, str]
    recipe: dict[str, Any]
    dataset: dict[str, Any]
    metrics: dict[str, float]
    signature: Signature
    labels: list[str] | None = None
    preprocessing: dict[str, Any]
    # File name → sha256 of every file of the version but the manifest itself. Versions exported
    # before digests were recorded have none, and load unverified.
    sha256: dict[str, str] | None = None


def model_names(models_dir: Path) -> list[str]:
    """Every model folder in the repository, sorted."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_versions(models_dir: Path, name: str) -> list[int]:
    """The complete versions of a model, oldest first (temporary folders are not versions)."""
    folder = models_dir / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def version_dir(models_dir: Path, name: str, version: int) -> Path:
    return models_dir / name / str(version)


def read_manifest(folder: Path) -> Manifest:
    """Read and validate one version's manifest; raise ArtifactError saying what is wrong."""
    path = folder / MANIFEST_FILE
    try:
        manifest = Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(f"{path} is not valid JSON: {error}") from None
    except ValidationError as error:
        raise ArtifactError(
            f"{path} is invalid: {error.errors()[0]['msg']} at "
            f"{'.'.join(map(str, error.errors()[0]['loc']))}"
        ) from None
    if str(manifest.version) != folder.name or manifest.name != folder.parent.name:
        raise ArtifactError(
            f"{path} says {manifest.name}/{manifest.version}, but lies in "
            f"{folder.parent.name}/{folder.name}"
        )
    return manifest


def file_digests(folder: Path) -> dict[str, str]:
    """sha256 of every file in a version folder but the manifest, by file name, sorted."""
    return {
        path.name: _sha256(path)
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != MANIFEST_FILE
    }


def verify_digests(folder: Path, manifest: Manifest) -> None:
    """Raise ArtifactError unless every file the manifest lists is there, byte for byte."""
    for name, expected in (manifest.sha256 or {}).items():
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise ArtifactError(f"{path} is listed in the manifest but missing")
        actual = _sha256(path)
        if actual != expected:
            raise ArtifactError(
                f"{path} has sha256 {actual[:12]}…, the manifest recorded {expected[:12]}…: "
                "the file changed after export"
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_vocabulary(folder: Path) -> dict[str, int]:
    path = folder / VOCABULARY_FILE
    try:
        vocabulary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path} cannot be read: {error}") from None
    if not isinstance(vocabulary, dict):
        raise ArtifactError(f"{path} must map words to indices")
    return vocabulary
