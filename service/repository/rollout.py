"""Rollouts: start, status, promote and abort a candidate version beside the serving one, and
the gate that decides by itself.

A rollout is part of the desired state (`desired_state.RolloutRecord`): every worker loads the
candidate beside its serving version and routes by it (`routing.Router`), and a restarted worker
resumes it. While it runs, the serving version is pinned, so polling moves nothing underneath it;
when it ends the version it leaves serving stays pinned (load with "latest" to follow the newest
again).

Each worker publishes its counts to the state folder every `PUBLISH_S`; every `DECIDE_S` each
worker adds up every worker's counts and asks the gate. A decision is written under the
desired-state lock, only if the rollout is still the one running, so it is made once however many
workers (or replicas sharing the state folder) reach it together.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service.errors import (
    BadRequestError,
    ConflictError,
    LoadFailedError,
    ModelNotFoundError,
)
from service.model import artifacts
from service.observability import metrics
from service.repository import gate as gates
from service.repository.comparison import Labelled, RolloutStats
from service.repository.desired_state import (
    ROLLOUT_MODES,
    DesiredState,
    ModelWish,
    RolloutRecord,
    RolloutState,
)
from service.repository.repository import CONVERGE_TIMEOUT_S, ModelRepository

log = logging.getLogger(__name__)

PUBLISH_S = 0.25  # how often a worker writes its counts (when they changed)
DECIDE_S = 0.5  # how often a worker asks the gate about each running rollout

# Live accuracy from feedback for one rollout: (model, rollout id, task) → labelled counts.
LabelSource = Callable[[str, str, str], Awaitable[Labelled]]


async def _no_labels(name: str, rollout_id: str, task: str) -> Labelled:
    return Labelled()


class Rollouts:
    def __init__(self, repository: ModelRepository, labels: LabelSource = _no_labels) -> None:
        self.repository = repository
        self.labels = labels
        self._decided = time.monotonic()

    # ------------------------------------------------------------------ requests

    async def start(self, name: str, body: Any) -> dict[str, Any]:
        """Start a rollout from a request body {"version", "mode", "share", "gate"}; return its
        status once every worker serves the candidate beside the serving version."""
        version, mode, share, gate = _parse_start(body)
        repository = self.repository
        repository.require_known(name)
        async with repository.state.model_lock(name, CONVERGE_TIMEOUT_S):
            repository.refresh()
            running = repository.desired.running_rollout(name)
            if running is not None:
                raise ConflictError(
                    f"a rollout of {name} (version {running.candidate}) is already running: "
                    "promote or abort it first"
                )
            on_disk = artifacts.list_versions(repository.models_dir, name)
            if version not in on_disk:
                raise ModelNotFoundError(f"version {version} of {name!r} is not in the repository "
                                         f"(versions: {', '.join(map(str, on_disk))})")  # fmt: skip
            serving = repository.live(name)
            if serving.version == version:
                raise BadRequestError(
                    f"version {version} of {name} is the serving version: a rollout needs "
                    "another version as its candidate"
                )
            try:
                await repository.load_candidate(name, version)
            except LoadFailedError as error:
                reason = error.message

                def record_failure(state: DesiredState) -> None:
                    state.failures[f"{name}/{version}"] = reason

                await repository.change(record_failure)
                raise
            record = RolloutRecord(
                id=f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}",
                serving=serving.version,
                candidate=version,
                mode=mode,
                share=share,
                gate=gate.as_json(),
                started_at=round(time.time(), 3),
                task=serving.manifest.task,
            )

            def begin(state: DesiredState) -> None:
                state.rollouts[name] = record
                # Pinned while it runs: polling must not swap the serving version underneath.
                state.models[name] = ModelWish(False, serving.version, serving.version)
                state.failures.pop(f"{name}/{version}", None)

            generation = await repository.change(begin)
            repository.state.forget_rollouts(name, keep=record.id)
            log.info("rollout %s started: %s version %s beside %s, %s, share %s", record.id,
                     name, version, serving.version, mode, share)  # fmt: skip
            await repository.converge(generation, (name, serving.version), candidate=version)
        return await self.status(name)

    async def status(self, name: str) -> dict[str, Any]:
        """The model's rollout (running, or how its last one ended) with its figures."""
        self.repository.require_known(name)
        self.repository.refresh()
        record = self.repository.desired.rollouts.get(name)
        if record is None:
            raise ModelNotFoundError(f"no rollout of {name!r} was ever started")
        figures = await self._figures(name, record) if record.running else (record.figures or {})
        return {
            "model": name,
            "id": record.id,
            "state": record.state,
            "reason": record.reason,
            "mode": record.mode,
            "share": record.share,
            "serving_version": record.serving,
            "candidate_version": record.candidate,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "gate": record.gate,
            **figures,
        }

    async def promote(self, name: str) -> dict[str, Any]:
        """Make the running rollout's candidate the serving version on every worker."""
        return await self._end_by_request(name, "promoted", "promoted by request")

    async def abort(self, name: str) -> dict[str, Any]:
        """Stop the running rollout; the serving version keeps serving everywhere."""
        return await self._end_by_request(name, "aborted", "aborted by request")

    # ------------------------------------------------------------------ every worker

    async def step(self) -> None:
        """One round, every PUBLISH_S (supervised): publish this worker's counts, and every
        DECIDE_S ask the gate about each running rollout this worker routes."""
        self.publish()
        if time.monotonic() - self._decided >= DECIDE_S:
            self._decided = time.monotonic()
            await self.decide_once()

    def publish(self, force: bool = False) -> None:
        for router in self.repository.routers():
            if router.dirty or force:
                self.repository.state.publish_rollout_stats(
                    router.sides["serving"].name, router.record.id, router.snapshot()
                )

    async def decide_once(self) -> None:
        for router in self.repository.routers():
            record = router.record
            name = router.sides["serving"].name
            stats, labelled = await self._totals(name, record)
            gate = gates.Gate(**record.gate)
            verdict = gates.decide(gate, stats, labelled, record.task == "housing")
            if verdict is None:
                continue
            state: RolloutState = "promoted" if verdict.decision == "promote" else "rolled_back"
            figures = gates.figures(stats, labelled, record.task == "housing")
            await self._end(name, record.id, state, verdict.reason, figures, "gate")

    # ------------------------------------------------------------------ internals

    async def _totals(self, name: str, record: RolloutRecord) -> tuple[RolloutStats, Labelled]:
        total = RolloutStats()
        for worker in self.repository.state.rollout_stats(name, record.id):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                total.add(RolloutStats.from_json(worker))
        return total, await self.labels(name, record.id, record.task)

    async def _figures(self, name: str, record: RolloutRecord) -> dict[str, Any]:
        self.publish()  # this worker's latest counts count too
        stats, labelled = await self._totals(name, record)
        return gates.figures(stats, labelled, record.task == "housing")

    async def _end_by_request(self, name: str, state: RolloutState, reason: str) -> dict[str, Any]:
        self.repository.require_known(name)
        self.repository.refresh()
        record = self.repository.desired.running_rollout(name)
        if record is None:
            raise ConflictError(f"no rollout of {name} is running")
        self.publish()
        generation = await self._end(
            name, record.id, state, reason, await self._figures(name, record), "request"
        )
        if generation is None:
            raise ConflictError(f"the rollout of {name} ended meanwhile; see its status")
        version = record.candidate if state == "promoted" else record.serving
        await self.repository.converge(generation, (name, version))
        return await self.status(name)

    async def _end(
        self,
        name: str,
        rollout_id: str,
        state: RolloutState,
        reason: str,
        figures: dict[str, Any],
        by: str,
    ) -> int | None:
        """End rollout `rollout_id` of `name` if it is still running; the generation written,
        or None if it had ended already (another worker decided first)."""
        ended: list[RolloutRecord] = []

        def finish(desired: DesiredState) -> None:
            record = desired.running_rollout(name)
            if record is None or record.id != rollout_id:
                return
            record.state = state
            record.reason = reason
            record.ended_at = round(time.time(), 3)
            record.figures = figures
            version = record.candidate if state == "promoted" else record.serving
            desired.models[name] = ModelWish(False, version, version)
            ended.append(record)

        generation = await self.repository.change(finish)
        if not ended:
            return None
        record = ended[0]
        metrics.ROLLOUT_DECISIONS.labels(name, state, by).inc()
        log.info("rollout %s of %s version %s beside %s: %s by %s (%s); figures %s", record.id,
                 name, record.candidate, record.serving, state, by, reason, figures)  # fmt: skip
        return generation


def _parse_start(body: Any) -> tuple[int, str, float, gates.Gate]:
    if not isinstance(body, dict):
        raise BadRequestError('expected a JSON object like {"version": 2, "mode": "shadow"}')
    unknown = set(body) - {"version", "mode", "share", "gate"}
    if unknown:
        raise BadRequestError(f"unknown fields {', '.join(sorted(unknown))}; accepted: version, "
                              "mode, share, gate")  # fmt: skip
    version = body.get("version")
    if isinstance(version, str) and version.isascii() and version.isdigit():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise BadRequestError(f"version must be a version number, got {version!r}")
    mode = body.get("mode", "shadow")
    if mode not in ROLLOUT_MODES:
        raise BadRequestError(f"mode must be one of {', '.join(ROLLOUT_MODES)}, got {mode!r}")
    share = body.get("share")
    if share is None:
        share = 1.0 if mode == "shadow" else 0.1
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise BadRequestError(f"share must be a number in (0, 1], got {share!r}")
    return version, str(mode), float(share), gates.Gate.from_overrides(body.get("gate"))
