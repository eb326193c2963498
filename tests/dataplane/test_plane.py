"""The data plane: an answer says which version computed it; refusals are counted where made."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.dataplane.plane import DataPlane, Inference
from service.errors import ModelNotFoundError, UnavailableError
from service.model import artifacts
from service.model.batching import Batcher
from service.model.codecs import Codec, Encoded, Limits, TextCodec, build_codec
from service.repository.repository import ServedVersion
from service.settings import Settings

from ..conftest import COMMITTED_MODELS

LIMITS = Limits(max_items=64, max_text_chars=10_000, max_image_pixels=784)


class _Repository:
    """What the plane asks a repository: which version answers for a model, and the router of
    the model's running rollout (none here)."""

    def __init__(self, served: ServedVersion) -> None:
        self.served = served

    def router(self, name: str) -> None:
        return None

    def live(self, name: str, version: int | None = None) -> ServedVersion:
        if name != self.served.name or version not in (None, self.served.version):
            raise ModelNotFoundError(f"no {name} {version}")
        return self.served


def _serve(name: str, executor: ThreadPoolExecutor) -> ServedVersion:
    version = artifacts.list_versions(COMMITTED_MODELS, name)[-1]
    folder = artifacts.version_dir(COMMITTED_MODELS, name, version)
    manifest = artifacts.read_manifest(folder)
    codec = build_codec(folder, manifest, LIMITS)
    width = manifest.signature.outputs[0].shape[-1]
    batcher = Batcher(  # a stand-in model: the plane's job is routing, not arithmetic
        lambda rows: np.full((len(rows), width), 0.75, dtype=np.float32),
        executor,
        max_batch_size=8,
        max_queue_rows=16,
    )
    return ServedVersion(name, version, folder, manifest, codec, batcher)


def _run(name: str, body: Any) -> Any:
    async def main() -> Any:
        with ThreadPoolExecutor(1) as executor:
            served = _serve(name, executor)
            repository: Any = _Repository(served)
            plane = DataPlane(repository, Settings(models_dir=COMMITTED_MODELS))
            try:
                return await body(plane, served)
            finally:
                await served.batcher.drain()

    return asyncio.run(main())


def _texts(texts: list[str]) -> Any:
    def encode(codec: Codec) -> Encoded:
        assert isinstance(codec, TextCodec)
        return codec.encode_texts(texts)

    return encode


def test_an_inference_names_the_version_that_answered_and_returns_its_outputs():
    async def body(plane: DataPlane, served: ServedVersion) -> tuple[Inference, ServedVersion]:
        return await plane.infer("imdb", None, _texts(["a wonderful film", "a dull film"])), served

    inference, served = _run("imdb", body)
    assert (inference.model, inference.version) == ("imdb", served.version)
    assert inference.served is served
    assert inference.outputs.shape == (2, 1)
    assert np.array_equal(inference.inputs.rows, served.codec.encode_texts(
        ["a wonderful film", "a dull film"]).rows)  # fmt: skip


def test_the_share_of_unknown_words_comes_back_with_the_encoded_text():
    async def body(plane: DataPlane, served: ServedVersion) -> Inference:
        return await plane.infer("imdb", None, _texts(["the film", "qzxv wqpt film qzxv"]))

    inference = _run("imdb", body)
    assert inference.inputs.oov_ratios is not None
    assert inference.inputs.oov_ratios.tolist() == pytest.approx([0.0, 0.75])


def test_a_version_that_is_not_served_is_refused_before_any_work():
    encoded: list[Codec] = []

    def encode(codec: Codec) -> Encoded:
        encoded.append(codec)
        return Encoded(np.zeros((1, 10_000), dtype=np.float32))

    async def body(plane: DataPlane, served: ServedVersion) -> None:
        with pytest.raises(ModelNotFoundError):
            await plane.infer("imdb", served.version + 1, encode)

    _run("imdb", body)
    assert encoded == []


def _rejected(model: str) -> float:
    return REGISTRY.get_sample_value("dlwp_rejected_total", {"model": model}) or 0.0


def test_a_request_refused_for_want_of_room_is_counted_once_by_the_plane():
    async def body(plane: DataPlane, served: ServedVersion) -> None:
        await served.batcher.drain()  # a version shutting down admits nothing: 503
        with pytest.raises(UnavailableError):
            await plane.run(served, _texts(["a film"]), count=1)

    before = _rejected("imdb")
    _run("imdb", body)
    assert _rejected("imdb") - before == 1
