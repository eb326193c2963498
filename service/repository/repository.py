"""The served models: which version of each is live, loading new ones beside it, swapping safely.

A new version is loaded and warmed in a worker thread while the current one keeps answering;
then one dict assignment makes it live. Requests that already hold the old version (queued or
running) finish on it, and it is retired once drained. A version that fails to load leaves the
current one serving; the failure shows in `index()`, in `dlwp_model_load_failures_total` and in
the log.

What to serve is not this process's to decide alone: load, unload and pins go through the
desired state (`desired_state.py`) that every worker and replica reconciles from, and a
call answers once every live worker serves its result.

A running rollout (rollout.py) adds a candidate version beside the serving one on every
worker: loaded like any version, kept in `_candidates` with a router the data plane asks which
side answers; promoting it is the same swap as a reload, without loading it again.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.errors import (
    ArtifactError,
    ConflictError,
    LoadFailedError,
    ModelNotFoundError,
    UnavailableError,
)
from service.model import artifacts
from service.model.artifacts import Manifest
from service.model.batching import Batcher, BatchStats
from service.model.codecs import Codec, Limits, build_codec
from service.model.runtime import compile_model
from service.observability import metrics
from service.process.drain import DRAIN
from service.repository.desired_state import (
    HEARTBEAT_S,
    STATE_DIR_NAME,
    DesiredState,
    ModelWish,
    Pin,
    StateStore,
    WorkerStatus,
)
from service.repository.routing import Router
from service.repository.served import ServedVersion as ServedVersion  # where callers find it
from service.repository.supervision import Supervisor
from service.settings import Settings

log = logging.getLogger(__name__)


class State(enum.StrEnum):
    READY = "READY"
    LOADING = "LOADING"
    UNAVAILABLE = "UNAVAILABLE"
    FAILED = "FAILED"


@dataclass
class _Status:
    state: State
    reason: str = ""


# A load or unload waits this long for every worker to converge before saying which did not.
CONVERGE_TIMEOUT_S = 60.0
SYNC_INTERVAL_S = 0.1  # how often a worker looks at the desired state: one stat() call


class ModelRepository:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models_dir = settings.models_dir
        self.state = StateStore(settings.state_dir or self.models_dir / STATE_DIR_NAME)
        self._desired = DesiredState()
        self._stamp: tuple[int, int, int] | None = None
        self._applied = -1  # the desired generation this worker has reconciled to
        self._errors: dict[str, str] = {}  # model → why this worker does not serve what is desired
        self._live: dict[str, ServedVersion] = {}
        self._candidates: dict[str, ServedVersion] = {}  # model → its running rollout's candidate
        self._routers: dict[str, Router] = {}
        self._status: dict[tuple[str, int], _Status] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reconciling = asyncio.Lock()
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self._compute = ThreadPoolExecutor(max_workers=4, thread_name_prefix="model-call")
        self._limits = Limits(
            settings.max_items, settings.max_text_chars, settings.max_image_pixels
        )
        self._background: set[asyncio.Task[None]] = set()
        self.background = Supervisor()
        self._beat = time.monotonic()

    # ------------------------------------------------------------------ reading

    def live(self, name: str, version: int | None = None) -> ServedVersion:
        """The version answering for `name` (or exactly `version`); 404/503 with a reason."""
        served = self._live.get(name)
        candidate = self._candidates.get(name)
        if candidate is not None and version == candidate.version:
            return candidate  # asked for by number: answered by it, outside the rollout's split
        if served is None:
            versions = artifacts.list_versions(self.models_dir, name)
            if not versions:
                known = ", ".join(sorted(self._live)) or "none"
                raise ModelNotFoundError(f"unknown model {name!r}; models served: {known}")
            if self._unloaded(name):
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

    def router(self, name: str) -> Router | None:
        """The running rollout's router for `name` in this worker, if any."""
        return self._routers.get(name)

    def routers(self) -> list[Router]:
        return list(self._routers.values())

    @property
    def desired(self) -> DesiredState:
        """The desired state as this worker last read it."""
        return self._desired

    @property
    def ready(self) -> bool:
        """The one readiness decision (every front asks this): not stopping, and every model
        on disk that should be served is live (or has failed to load, which is reported)."""
        return self.unready_reason is None

    @property
    def unready_reason(self) -> str | None:
        if DRAIN.draining:
            return "the server is shutting down"
        trouble = self.background.trouble
        if trouble is not None:
            return trouble
        names = artifacts.model_names(self.models_dir)
        if not names:
            return f"the repository {self.models_dir} holds no models"
        wanted = [n for n in names if not self._unloaded(n)]
        # Unloaded models are what was asked for; a failed one is reported, not waited for.
        if self._applied < 0 or not all(n in self._live or self._has_failed(n) for n in wanted):
            return "models are still loading"
        return None

    def index(self) -> list[dict[str, Any]]:
        """Every model and version on disk (or live) with its state, as the V2 index lists them.

        Built from the shared desired state and what this worker serves, so once a repository
        call has answered, every worker lists the same.
        """
        rows = []
        names = set(artifacts.model_names(self.models_dir)) | set(self._live)
        for name in sorted(names):
            versions = set(artifacts.list_versions(self.models_dir, name))
            versions |= {v for (n, v) in self._status if n == name}
            for version in sorted(versions):
                row: dict[str, Any] = {"name": name, "version": str(version)}
                state, reason = self._version_state(name, version)
                row["state"] = state
                if reason:
                    row["reason"] = reason
                rows.append(row)
        return rows

    def wanted_version(self, name: str) -> int | None:
        """The policy's version: a pin set through the API, else DLWP_MODEL_VERSIONS, else the
        newest on disk."""
        wish = self._desired.models.get(name)
        return self._resolve(name, wish.pin if wish is not None else None)

    # ------------------------------------------------------------------ changing

    async def load(self, name: str, version: Pin | None = None) -> ServedVersion:
        """Serve the policy's version of `name` (or pin `version`) on every worker; return once
        every live worker serves it, or raise saying which did not and why."""
        self._require_known(name)
        async with self.state.model_lock(name, CONVERGE_TIMEOUT_S):
            self._refresh()
            self._refuse_during_rollout(name, "load")
            wish = self._desired.models.get(name) or ModelWish()
            pin = version if version is not None else wish.pin
            target = self._resolve(name, pin)
            if target is None:
                on_disk = ", ".join(map(str, artifacts.list_versions(self.models_dir, name)))
                if isinstance(pin, int):
                    raise ModelNotFoundError(
                        f"pinned version {pin} of {name!r} is not in the repository "
                        f"(versions: {on_disk or 'none'})"
                    )
                raise ModelNotFoundError(f"no versions of {name!r} in the repository")
            # This worker loads first: a version that fails here is recorded as failed and never
            # asked of the others, and the version serving now keeps serving everywhere.
            try:
                await self._load_here(name, target)
            except LoadFailedError:
                reason = self._status[(name, target)].reason

                def record_failure(state: DesiredState) -> None:
                    state.failures[f"{name}/{target}"] = reason

                await self._converge(await self._change(record_failure))
                raise
            wanted = ModelWish(False, target, pin)

            def record(state: DesiredState) -> None:
                state.models[name] = wanted
                state.failures.pop(f"{name}/{target}", None)

            generation = await self._change(record)
            await self._converge(generation, (name, target))
            return self._live[name]

    async def unload(self, name: str) -> None:
        """Stop serving `name` on every worker; return once none serves it."""
        self._require_known(name)
        async with self.state.model_lock(name, CONVERGE_TIMEOUT_S):
            self._refresh()
            self._refuse_during_rollout(name, "unload")
            wish = self._desired.models.get(name) or ModelWish()

            def record(state: DesiredState) -> None:
                state.models[name] = ModelWish(True, wish.version, wish.pin)

            await self._converge(await self._change(record), (name, None))

    async def load_all(self) -> None:
        """Serve what the desired state (or, for the rest, the policy) says; failures are
        reported, not fatal. Then announce this worker to the others."""
        try:
            self.state.prepare()
        except OSError as error:
            raise RuntimeError(
                f"the state folder {self.state.folder} cannot be written ({error}): set "
                "DLWP_STATE_DIR to a writable folder (shared by the replicas, if any)"
            ) from None
        self._refresh()
        if self._desired.models:
            log.info("desired state from %s: %s", self.state.folder,
                     json.dumps(self._desired.as_json()["models"]))  # fmt: skip
        for name, wish in self._desired.models.items():
            env_pin = self.settings.pinned_versions.get(name)
            if wish.pin is not None and env_pin is not None and wish.pin != env_pin:
                log.warning("%s: the pin set through the API (%s) wins over "
                            "DLWP_MODEL_VERSIONS (%s)", name, wish.pin, env_pin)  # fmt: skip
        await self._reconcile()

    def start_background(self) -> None:
        """Start following the desired state and (if on) polling for versions, supervised:
        a loop that keeps failing makes `unready_reason` say so until it recovers."""
        # Repository calls answered by another worker or replica reach this one through the
        # shared desired state, followed whether or not version polling is on.
        self.background.start("sync", self.sync_step, SYNC_INTERVAL_S)
        if self.settings.poll_seconds > 0:
            self.background.start("poll", self.poll_once, self.settings.poll_seconds)

    async def sync_step(self) -> None:
        """One round of following the desired state and keeping this worker's status fresh;
        raises what went wrong (an unusable state folder: OSError; an unreadable file: 503)."""
        await self.sync_once()
        if time.monotonic() - self._beat >= HEARTBEAT_S:
            self._beat = time.monotonic()
            if not self.state.heartbeat():  # the status file went away (a state folder
                self._publish()  # replaced or cleaned): announce this worker again

    async def sync_once(self) -> None:
        if self.state.stamp() != self._stamp:
            self._refresh()
        if self._desired.generation != self._applied:
            await self._reconcile()

    async def poll_once(self) -> None:
        for name in artifacts.model_names(self.models_dir):
            if self._unloaded(name):
                continue
            version = self.wanted_version(name)
            live = self._live.get(name)
            if version is None or (live is not None and live.version == version):
                continue
            if f"{name}/{version}" in self._desired.failures or self._status.get(
                (name, version), _Status(State.UNAVAILABLE)
            ).state in (State.FAILED, State.LOADING):
                continue
            try:
                await self.load(name)  # the same path as a load call: every worker follows
            except (LoadFailedError, ModelNotFoundError, UnavailableError) as error:
                log.error("polling: %s version %s not served: %s", name, version, error.message)

    async def close(self) -> None:
        await self.background.stop()
        self.state.withdraw()
        for served in [*self._live.values(), *self._candidates.values()]:
            await served.batcher.drain()
        self._live.clear()
        self._candidates.clear()
        self._routers.clear()
        self._loader.shutdown(wait=False)
        self._compute.shutdown(wait=False)

    # ------------------------------------------------------------------ internals

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _unloaded(self, name: str) -> bool:
        wish = self._desired.models.get(name)
        return wish is not None and wish.unloaded

    def _refuse_during_rollout(self, name: str, verb: str) -> None:
        record = self._desired.running_rollout(name)
        if record is not None:
            raise ConflictError(
                f"a rollout of {name} (version {record.candidate} beside {record.serving}) is "
                f"running: promote or abort it before a {verb}"
            )

    def require_known(self, name: str) -> None:
        """404 unless `name` is served or has versions on disk."""
        self._require_known(name)

    def _require_known(self, name: str) -> None:
        # Checked before any file is named after `name`: it comes from a URL.
        if name not in self._live and not artifacts.list_versions(self.models_dir, name):
            raise ModelNotFoundError(f"unknown model {name!r}")

    def _has_failed(self, name: str) -> bool:
        return name in self._errors or any(
            n == name and s.state is State.FAILED for (n, _), s in self._status.items()
        )

    def _version_state(self, name: str, version: int) -> tuple[State, str]:
        live = self._live.get(name)
        if live is not None and live.version == version:
            return State.READY, ""
        candidate = self._candidates.get(name)
        if candidate is not None and candidate.version == version:
            return State.READY, "rollout candidate"
        shared = self._desired.failures.get(f"{name}/{version}")
        local = self._status.get((name, version))
        if shared is not None:
            return State.FAILED, shared
        if local is not None and local.state in (State.FAILED, State.LOADING):
            return local.state, local.reason
        return State.UNAVAILABLE, "unloaded" if self._unloaded(name) else ""

    def _resolve(self, name: str, pin: Pin | None) -> int | None:
        versions = artifacts.list_versions(self.models_dir, name)
        if pin is None:
            pin = self.settings.pinned_versions.get(name)
        if pin is None or pin == "latest":
            return versions[-1] if versions else None
        return pin if pin in versions else None

    def _target(self, name: str) -> int | None:
        """What this worker should serve of `name`: the desired version, else the policy's."""
        wish = self._desired.models.get(name)
        if wish is not None and wish.unloaded:
            return None
        if wish is not None and wish.version in artifacts.list_versions(self.models_dir, name):
            return wish.version
        return self.wanted_version(name)

    def _refresh(self) -> None:
        stamp = self.state.stamp()
        self._desired = self.state.read()
        self._stamp = stamp

    async def change(self, mutate: Callable[[DesiredState], None]) -> int:
        """Write a change to the desired state, apply it here, return its generation (every
        other worker applies it within a sync interval)."""
        return await self._change(mutate)

    async def converge(
        self,
        generation: int,
        expect: tuple[str, int | None] | None = None,
        candidate: int | None = None,
    ) -> None:
        """Wait until every live worker has applied `generation` (and serves `expect`, with
        `candidate` beside it)."""
        await self._converge(generation, expect, candidate)

    def refresh(self) -> None:
        """Read the desired state again now."""
        self._refresh()

    async def load_candidate(self, name: str, version: int) -> ServedVersion:
        """Load `version` of `name` in this worker beside the serving one (LoadFailedError with
        the reason if it cannot be served; the serving version is untouched either way)."""
        async with self._lock(name):
            current = self._candidates.get(name)
            if current is not None and current.version == version:
                return current
            served = await self._build(name, version, candidate=True)
            if current is not None:
                self._retire(current)
            self._candidates[name] = served
            return served

    async def _change(self, mutate: Callable[[DesiredState], None]) -> int:
        """Write a change to the desired state, apply it here, return its generation."""
        with self.state.update() as state:
            mutate(state)
        self._refresh()
        await self._reconcile()
        return state.generation

    async def _reconcile(self) -> None:
        """Make this worker serve what the desired state says, then report it."""
        async with self._reconciling:
            desired = self._desired
            names = set(artifacts.model_names(self.models_dir)) | set(self._live)
            for name in sorted(names):
                target = self._target(name)
                live = self._live.get(name)
                if target is None:
                    if live is not None and self._unloaded(name):
                        await self._unload_here(name)
                    self._errors.pop(name, None)
                    continue
                if live is not None and live.version == target:
                    self._errors.pop(name, None)
                    continue
                known_failure = desired.failures.get(f"{name}/{target}")
                if known_failure is not None:
                    self._errors[name] = known_failure
                    continue
                try:
                    await self._load_here(name, target)
                    self._errors.pop(name, None)
                except LoadFailedError:
                    self._errors[name] = self._status[(name, target)].reason
            await self._reconcile_rollouts(desired)
            self._applied = desired.generation
            self._publish()

    def _publish(self) -> None:
        """Report what this worker serves, for the workers answering repository calls."""
        serving = {n: s.version for n, s in sorted(self._live.items())}
        candidates = {n: s.version for n, s in sorted(self._candidates.items())}
        status = WorkerStatus(self.state.worker, self._applied, serving, dict(self._errors),
                              candidates)  # fmt: skip
        self.state.publish(status)

    async def _reconcile_rollouts(self, desired: DesiredState) -> None:
        """Load each running rollout's candidate beside its serving version, with a router;
        drop candidates and routers whose rollout ended (promoted ones were swapped in)."""
        for name in sorted(set(self._candidates) | set(desired.rollouts)):
            record = desired.running_rollout(name)
            router = self._routers.get(name)
            if record is None or name not in self._live:
                self._end_rollout_here(name)
                continue
            if router is not None and router.record.id == record.id:
                continue
            try:
                candidate = await self.load_candidate(name, record.candidate)
            except LoadFailedError as error:
                self._errors[name] = error.message
                self._end_rollout_here(name)
                continue
            serving = self._live[name]
            self._routers[name] = Router(record, serving.manifest.task, serving, candidate)

    def _end_rollout_here(self, name: str) -> None:
        router = self._routers.pop(name, None)
        if router is not None:
            router.close()
        candidate = self._candidates.pop(name, None)
        if candidate is not None and self._live.get(name) is not candidate:
            self._retire(candidate)

    async def _converge(
        self,
        generation: int,
        expect: tuple[str, int | None] | None = None,
        candidate: int | None = None,
    ) -> None:
        """Wait until every live worker has reconciled to `generation`; with `expect`
        (model, version or None), check that each serves that version of that model."""
        name = expect[0] if expect else "the repository"
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:
            workers = self.state.live_workers()
            behind = [w.worker for w in workers if w.generation < generation]
            if not behind:
                break
            if time.monotonic() > deadline:
                raise UnavailableError(
                    f"{name}: workers {', '.join(behind)} did not apply the change within "
                    f"{CONVERGE_TIMEOUT_S:g} s; they will when they can",
                    retry_after_s=5,
                )
            await asyncio.sleep(0.01)
        if expect is None:
            return
        name, version = expect
        wrong = [
            w
            for w in workers
            if w.serving.get(name) != version
            or (candidate is not None and w.candidates.get(name) != candidate)
        ]
        if wrong:
            reasons = "; ".join(
                f"{w.worker} serves {w.serving.get(name, 'nothing')}"
                + (f" beside {w.candidates.get(name, 'no candidate')}" if candidate else "")
                + (f" because {w.errors[name]}" if name in w.errors else "")
                for w in wrong
            )
            raise UnavailableError(f"{name}: not every worker serves the change: {reasons}")

    async def _load_here(self, name: str, version: int) -> ServedVersion:
        async with self._lock(name):
            current = self._live.get(name)
            if current is not None and current.version == version:
                return current
            candidate = self._candidates.get(name)
            if candidate is not None and candidate.version == version:
                # A promoted candidate: loaded and warm already, so only the swap is left.
                self._swap(candidate)
                self._end_rollout_here(name)
                return candidate
            return await self._load_version(name, version)

    async def _unload_here(self, name: str) -> None:
        async with self._lock(name):
            served = self._live.pop(name, None)
            if served is not None:
                metrics.MODEL_INFO.labels(name, str(served.version)).set(0)
                self._retire(served)
                log.info("unloaded %s version %s", name, served.version)

    async def _load_version(self, name: str, version: int) -> ServedVersion:
        served = await self._build(name, version)
        self._swap(served)
        return served

    async def _build(self, name: str, version: int, candidate: bool = False) -> ServedVersion:
        """Load, check and warm one version with its own batcher; LoadFailedError if it cannot."""
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
            max_batch_size=self.settings.batching.max_batch_size,
            max_queue_rows=self.settings.batching.max_queue_rows,
            batch_delay_s=self.settings.batch_delay_ms / 1000,
            admission_wait_s=self.settings.admission_wait_s,
            on_batch=_batch_observer(name),
            # One gauge per model: the serving version's queue (a candidate's is counted by the
            # rollout's metrics instead).
            on_queue_change=None if candidate else metrics.QUEUE_DEPTH.labels(name).set,
        )
        served = ServedVersion(name, version, folder, manifest, codec, batcher)
        if candidate:
            self._status[(name, version)] = _Status(State.READY)
            log.info("loaded %s version %s as a rollout candidate", name, version)
        return served

    def _swap(self, served: ServedVersion) -> None:
        name, version = served.name, served.version
        previous = self._live.get(name)
        self._live[name] = served  # the atomic swap: new requests now resolve to this version
        self._status[(name, version)] = _Status(State.READY)
        metrics.MODEL_INFO.labels(name, str(version)).set(1)
        if previous is not None:
            metrics.MODEL_INFO.labels(name, str(previous.version)).set(0)
            self._retire(previous)
        log.info("serving %s version %s", name, version)

    def _read_and_compile(self, folder: Path) -> tuple[Manifest, Codec, Any]:
        manifest = artifacts.read_manifest(folder)
        artifacts.verify_digests(folder, manifest)
        codec = build_codec(folder, manifest, self._limits)
        model_file = folder / artifacts.MODEL_FILE
        if not model_file.is_file():
            raise ArtifactError(f"{model_file} is missing")
        try:
            predictor = compile_model(
                model_file,
                codec.input_size,
                self.settings.batching.max_batch_size,
                self.settings.backend,
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
