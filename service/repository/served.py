"""One live version of a model: what the repository serves and a rollout routes between."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.model.artifacts import Manifest
from service.model.batching import Batcher
from service.model.codecs import Codec


@dataclass
class ServedVersion:
    name: str
    version: int
    folder: Path
    manifest: Manifest
    codec: Codec
    batcher: Batcher
