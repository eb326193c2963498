"""The served models: which version of each is live, loading new ones beside it, swapping safely.

A new version is loaded and warmed in a worker thread while the current one keeps answering;
then one dict assignment makes it live. Requests that already hold the old version (queued or
running) finish on it, and it is retired once drained. A version that fails to load leaves the
current one serving; the failure shows in `index()`, in `dlwp_model_load_failures_total` and in
the log.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service import artifacts, metrics
from service.artifacts import Manifest
from service.batching import Batcher, BatchStats
from service.codecs import Codec, Limits, build_codec
from service.errors import ArtifactError, LoadFailedError, ModelNotFoundError, UnavailableError
from service.runtime import compile_model
from service.settings import Settings

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    READY = "READY"
    LOADING = "LOADING"
    UNAVAILABLE = "UNAVAILABLE"
    FAILED = "FAILED"


@dataclass
class ServedVersion:
    name: str
    version: int
    folder: Path
    manifest: Manifest
    codec: Codec
    batcher: Batcher


@dataclass
class _Status:
    state: State
    reason: str = ""


class ModelRepository:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models_dir = settings.models_dir
        self._live: dict[str, ServedVersion] = {}
        self._status: dict[tuple[str, int], _Status] = {}
        self._unloaded: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self._compute = ThreadPoolExecutor(max_workers=4, thread_name_prefix="model-call")
        self._limits = Limits(
            settings.max_items, settings.max_text_chars, settings.max_image_pixels
        )
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ reading

    def live(self, name: str, version: int | None = None) -> ServedVersion:
        """The version answering for `name` (or exactly `version`); 404/503 with a reason."""
        served = self._live.get(name)
        if served is None:
            versions = artifacts.list_versions(self.models_dir, name)
            if not versions:
                known = ", ".join(sorted(self._live)) or "none"
                raise ModelNotFoundError(f"unknown model {name!r}; models served: {known}")
            if name in self._unloaded:
                raise ModelNotFoundError(f"model {name!r} is unloaded; load it to serve it again")
            raise UnavailableError(f"model {name!r} is not loaded yet; retry", retry_after_s=2)
        if version is not None and version != served.version:
            on_disk = artifacts.list_versions(self.models_dir, name)
            where = "exists but is not served" if version in on_disk else "does not exist"
            raise ModelNotFoundError(
                f"version {version} of {name!r} {where}; serving version {served.version}"
            )
        return served

    def live_models(self) -> list[ServedVersion]:
        return [self._live[name] for name in sorted(self._live)]

    @property
    def ready(self) -> bool:
        """Every model on disk that should be served is live."""
        wanted = set(artifacts.model_names(self.models_dir)) - self._unloaded
        return bool(self._live) and all(
            name in self._live or self._has_failed_only(name) for name in wanted
        )

    def index(self) -> list[dict[str, Any]]:
        """Every model and version on disk (or live) with its state, as the V2 index lists them."""
        rows = []
        names = set(artifacts.model_names(self.models_dir)) | set(self._live)
        for name in sorted(names):
            versions = set(artifacts.list_versions(self.models_dir, name))
            versions |= {v for (n, v) in self._status if n == name}
            for version in sorted(versions):
                status = self._status.get((name, version), _Status(State.UNAVAILABLE))
                live = self._live.get(name)
                if live is not None and live.version == version:
                    status = _Status(State.READY)
                elif status.state is State.READY:
                    status = _Status(State.UNAVAILABLE, "replaced by a newer version")
                row: dict[str, Any] = {"name": name, "version": str(version), "state": status.state}
                if status.reason:
                    row["reason"] = status.reason
                rows.append(row)
        return rows

    # ------------------------------------------------------------------ changing

    def wanted_version(self, name: str) -> int | None:
        """The version the policy says to serve: the pinned one, else the newest on disk."""
        versions = artifacts.list_versions(self.models_dir, name)
        pinned = self.settings.pinned_versions.get(name)
        if pinned is not None:
            return pinned if pinned in versions else None
        return versions[-1] if versions else None

    async def load(self, name: str) -> ServedVersion:
        """Serve the policy's version of `name`; return once it is live (or raise why not)."""
        async with self._lock(name):
            self._unloaded.discard(name)
            version = self.wanted_version(name)
            if version is None:
                pinned = self.settings.pinned_versions.get(name)
                detail = f" (pinned version {pinned} is not on disk)" if pinned else ""
                raise ModelNotFoundError(f"no versions of {name!r} in the repository{detail}")
            current = self._live.get(name)
            if current is not None and current.version == version:
                return current
            return await self._load_version(name, version)

    async def unload(self, name: str) -> None:
        async with self._lock(name):
            served = self._live.pop(name, None)
            if served is None and not artifacts.list_versions(self.models_dir, name):
                raise ModelNotFoundError(f"unknown model {name!r}")
            self._unloaded.add(name)
            if served is not None:
                self._status[(name, served.version)] = _Status(State.UNAVAILABLE, "unloaded")
                metrics.MODEL_INFO.labels(name, str(served.version)).set(0)
                self._retire(served)

    async def load_all(self) -> None:
        """Load every model on disk (those whose load fails are reported, not fatal)."""
        for name in artifacts.model_names(self.models_dir):
            try:
                await self.load(name)
            except (LoadFailedError, ModelNotFoundError) as error:
                log.error("model %s not served: %s", name, error.message)

    async def poll_forever(self) -> None:
        """Pick up new versions dropped into the repository, every `poll_seconds`."""
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            await self.poll_once()

    async def poll_once(self) -> None:
        for name in artifacts.model_names(self.models_dir):
            if name in self._unloaded:
                continue
            version = self.wanted_version(name)
            live = self._live.get(name)
            if version is None or (live is not None and live.version == version):
                continue
            if self._status.get((name, version), _Status(State.UNAVAILABLE)).state in (
                State.FAILED,
                State.LOADING,
            ):
                continue
            try:
                await self.load(name)
            except (LoadFailedError, ModelNotFoundError) as error:
                log.error("polling: %s version %s not served: %s", name, version, error.message)

    async def close(self) -> None:
        for served in list(self._live.values()):
            await served.batcher.drain()
        self._live.clear()
        self._loader.shutdown(wait=False)
        self._compute.shutdown(wait=False)

    # ------------------------------------------------------------------ internals

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _has_failed_only(self, name: str) -> bool:
        return any(n == name and s.state is State.FAILED for (n, _), s in self._status.items())

    async def _load_version(self, name: str, version: int) -> ServedVersion:
        folder = artifacts.version_dir(self.models_dir, name, version)
        self._status[(name, version)] = _Status(State.LOADING)
        log.info("loading %s version %s", name, version)
        try:
            manifest, codec, predictor = await asyncio.get_running_loop().run_in_executor(
                self._loader, self._read_and_compile, folder
            )
        except Exception as error:
            reason = error.message if isinstance(error, ArtifactError) else f"{error}"
            self._status[(name, version)] = _Status(State.FAILED, reason)
            metrics.LOAD_FAILURES.labels(name).inc()
            log.error("loading %s version %s failed: %s", name, version, reason)
            raise LoadFailedError(
                f"{name} version {version} failed to load: {reason}; "
                + (
                    f"version {self._live[name].version} keeps serving"
                    if name in self._live
                    else "nothing is served for it"
                )
            ) from None
        batcher = Batcher(
            predictor,
            self._compute,
            max_batch_size=self.settings.max_batch_size,
            max_queue_rows=self.settings.max_queue_rows,
            batch_delay_s=self.settings.batch_delay_ms / 1000,
            admission_wait_s=self.settings.admission_wait_s,
            on_batch=_batch_observer(name),
            on_queue_change=metrics.QUEUE_DEPTH.labels(name).set,
        )
        served = ServedVersion(name, version, folder, manifest, codec, batcher)
        previous = self._live.get(name)
        self._live[name] = served  # the atomic swap: new requests now resolve to this version
        self._status[(name, version)] = _Status(State.READY)
        metrics.MODEL_INFO.labels(name, str(version)).set(1)
        if previous is not None:
            metrics.MODEL_INFO.labels(name, str(previous.version)).set(0)
            self._retire(previous)
        log.info("serving %s version %s", name, version)
        return served

    def _read_and_compile(self, folder: Path) -> tuple[Manifest, Codec, Any]:
        manifest = artifacts.read_manifest(folder)
        codec = build_codec(folder, manifest, self._limits)
        model_file = folder / artifacts.MODEL_FILE
        if not model_file.is_file():
            raise ArtifactError(f"{model_file} is missing")
        try:
            predictor = compile_model(
                model_file, codec.input_size, self.settings.max_batch_size, self.settings.backend
            )
            probe = predictor(_zeros(codec.input_size))
        except Exception as error:
            raise ArtifactError(f"{model_file} cannot be loaded: {error}") from None
        expected = manifest.signature.outputs[0].shape[-1]
        if probe.shape[-1] != expected:
            raise ArtifactError(
                f"{model_file} gives {probe.shape[-1]} outputs, the {manifest.task} task needs "
                f"{expected}"
            )
        return manifest, codec, predictor

    def _retire(self, served: ServedVersion) -> None:
        task = asyncio.get_running_loop().create_task(served.batcher.drain())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _zeros(size: int) -> np.ndarray:
    return np.zeros((1, size), dtype=np.float32)


def _batch_observer(name: str) -> Any:
    queue_wait = metrics.QUEUE_WAIT.labels(name)
    compute = metrics.COMPUTE_TIME.labels(name)
    batch_size = metrics.BATCH_SIZE.labels(name)

    def observe(stats: BatchStats) -> None:
        batch_size.observe(stats.rows)
        compute.observe(stats.compute_s)
        for wait in stats.queue_waits_s:
            queue_wait.observe(wait)

    return observe
