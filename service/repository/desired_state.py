"""What every worker and replica should serve, kept in small files beside the repository.

`desired.json` says which models are unloaded, which version each serves and which are pinned
through the API, and each model's rollout (running, or how the last one ended); a repository
call rewrites it atomically (temp file, then rename) under a file lock, bumping its
`generation`. Every worker process watches it and reconciles its live models, then reports what
it serves in `workers/<host>-<pid>.json`; a load or unload call answers once every live worker
reports the new generation. Plain files, so an operator can `cat` them and
replicas sharing one repository volume share them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from service.errors import UnavailableError

log = logging.getLogger(__name__)

STATE_DIR_NAME = ".dlwp-state"  # a dot folder: the repository never lists it as a model
DESIRED_FILE = "desired.json"
WORKERS_DIR = "workers"
LOCKS_DIR = "locks"
ROLLOUTS_DIR = "rollouts"  # rollouts/<model>/<rollout id>/<worker>.json: each worker's counts
# A worker rewrites its status file this often; one silent for STALE_AFTER_S is presumed gone
# (a crashed replica on another host; on this host a dead pid is noticed at once).
HEARTBEAT_S = 2.0
STALE_AFTER_S = 10.0

Pin = int | Literal["latest"]


@dataclass
class ModelWish:
    """What to serve of one model. `version`: the one every worker serves (None: the policy's
    choice); `pin`: set through the API, wins over DLWP_MODEL_VERSIONS ("latest": the newest)."""

    unloaded: bool = False
    version: int | None = None
    pin: Pin | None = None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v not in (None, False)}


RolloutState = Literal["running", "promoted", "rolled_back", "aborted"]
ROLLOUT_MODES = ("shadow", "canary")


@dataclass
class RolloutRecord:
    """One model's rollout: a candidate version beside the serving one (rollout.py).

    `share`: in shadow mode the share of requests the candidate also computes; in canary mode
    the share it answers. `figures`: the comparison when it ended (kept for the status).
    """

    id: str
    serving: int
    candidate: int
    mode: str
    share: float
    gate: dict[str, Any]
    started_at: float
    task: str = ""  # the model's task (housing compares prices, the others labels)
    state: RolloutState = "running"
    reason: str = ""
    ended_at: float | None = None
    figures: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.state == "running"

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: Any) -> RolloutRecord:
        if not isinstance(data, dict):
            raise ValueError("a rollout must be a JSON object")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        record = cls(**known)
        if record.state not in ("running", "promoted", "rolled_back", "aborted"):
            raise ValueError(f"unknown rollout state {record.state!r}")
        return record


@dataclass
class DesiredState:
    generation: int = 0
    models: dict[str, ModelWish] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # "name/version" → why it cannot load
    rollouts: dict[str, RolloutRecord] = field(default_factory=dict)  # model → its last rollout

    def as_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "models": {name: wish.as_json() for name, wish in sorted(self.models.items())},
            "failures": dict(sorted(self.failures.items())),
            "rollouts": {name: r.as_json() for name, r in sorted(self.rollouts.items())},
        }

    def running_rollout(self, name: str) -> RolloutRecord | None:
        record = self.rollouts.get(name)
        return record if record is not None and record.running else None

    @classmethod
    def from_json(cls, data: Any) -> DesiredState:
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        models = {}
        for name, wish in dict(data.get("models", {})).items():
            pin = wish.get("pin")
            if pin is not None and pin != "latest" and not isinstance(pin, int):
                raise ValueError(f"models.{name}.pin must be a version or 'latest', got {pin!r}")
            models[str(name)] = ModelWish(bool(wish.get("unloaded", False)),
                                          wish.get("version"), pin)  # fmt: skip
        failures = {str(k): str(v) for k, v in dict(data.get("failures", {})).items()}
        rollouts = {str(k): RolloutRecord.from_json(v)
                    for k, v in dict(data.get("rollouts", {})).items()}  # fmt: skip
        return cls(int(data.get("generation", 0)), models, failures, rollouts)


@dataclass
class WorkerStatus:
    worker: str
    generation: int
    serving: dict[str, int]
    errors: dict[str, str]
    candidates: dict[str, int] = field(default_factory=dict)  # model → rollout candidate loaded


def worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class StateStore:
    """The state folder: one desired-state file, one status file per live worker, locks."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.worker = worker_id()
        self._desired = folder / DESIRED_FILE
        self._workers = folder / WORKERS_DIR

    # ------------------------------------------------------------------ desired state

    def stamp(self) -> tuple[int, int, int] | None:
        """Changes whenever the desired state is rewritten (a rename gives a new inode)."""
        try:
            info = self._desired.stat()
        except FileNotFoundError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)

    def read(self) -> DesiredState:
        """The desired state (empty when nothing was ever asked); UnavailableError if unreadable."""
        try:
            return DesiredState.from_json(json.loads(self._desired.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return DesiredState()
        except (OSError, ValueError, TypeError, AttributeError) as error:
            raise UnavailableError(
                f"the desired-state file {self._desired} cannot be read ({error}); fix or delete it"
            ) from None

    @contextlib.contextmanager
    def update(self) -> Iterator[DesiredState]:
        """Read-modify-write under the state lock; written (next generation) only if changed."""
        self.prepare()
        with _flock(self.folder / LOCKS_DIR / "desired.lock"):
            state = self.read()
            before = state.as_json()
            yield state
            if state.as_json() != before:
                state.generation = int(before["generation"]) + 1
                _write_atomically(self._desired, state.as_json(), durable=True)

    @contextlib.asynccontextmanager
    async def model_lock(self, name: str, timeout_s: float) -> AsyncIterator[None]:
        """One load/unload of `name` at a time across every worker and replica sharing the state."""
        self.prepare()
        deadline = time.monotonic() + timeout_s
        with open(self.folder / LOCKS_DIR / f"{name}.lock", "a") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise UnavailableError(
                            f"another load or unload of {name!r} is still running; retry",
                            retry_after_s=5,
                        ) from None
                    await asyncio.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ worker status

    def publish(self, status: WorkerStatus) -> None:
        self.prepare()
        data = {**vars(status), "pid": os.getpid(), "host": socket.gethostname()}
        _write_atomically(self._workers / f"{self.worker}.json", data, durable=False)

    def heartbeat(self) -> bool:
        """Mark this worker's status fresh; False if there is none to mark (publish again)."""
        try:
            os.utime(self._workers / f"{self.worker}.json")
        except FileNotFoundError:
            return False
        return True

    def withdraw(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._workers / f"{self.worker}.json").unlink()

    def live_workers(self) -> list[WorkerStatus]:
        """Every worker that reported recently (and, on this host, whose process still runs)."""
        found = []
        host = socket.gethostname()
        now = time.time()
        for path in sorted(self._workers.glob("*.json")) if self._workers.is_dir() else []:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                fresh = now - path.stat().st_mtime < STALE_AFTER_S
            except (OSError, ValueError):
                continue  # removed or being replaced right now
            if not fresh or (data.get("host") == host and not _running(int(data.get("pid", 0)))):
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            found.append(WorkerStatus(str(data["worker"]), int(data["generation"]),
                                      dict(data["serving"]), dict(data["errors"]),
                                      dict(data.get("candidates", {}))))  # fmt: skip
        return found

    # ------------------------------------------------------------------ rollout counts

    def _rollout_dir(self, name: str, rollout_id: str) -> Path:
        return self.folder / ROLLOUTS_DIR / name / rollout_id

    def publish_rollout_stats(self, name: str, rollout_id: str, stats: dict[str, Any]) -> None:
        """This worker's counts for one rollout (replaced whole, atomically)."""
        folder = self._rollout_dir(name, rollout_id)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / f"{self.worker}.json", stats, durable=False)

    def rollout_stats(self, name: str, rollout_id: str) -> list[dict[str, Any]]:
        """Every worker's counts for one rollout, the gone workers' included: what they saw
        was seen."""
        folder = self._rollout_dir(name, rollout_id)
        found = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                found.append(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue  # being replaced right now: the next read has it
        return found

    def forget_rollouts(self, name: str, keep: str) -> None:
        """Remove the counts of `name`'s earlier rollouts (all but `keep`)."""
        folder = self.folder / ROLLOUTS_DIR / name
        for old in folder.iterdir() if folder.is_dir() else []:
            if old.name != keep:
                for path in old.glob("*"):
                    with contextlib.suppress(OSError):
                        path.unlink()
                with contextlib.suppress(OSError):
                    old.rmdir()

    # ------------------------------------------------------------------ internals

    def prepare(self) -> None:
        """Create the state folder (OSError if it cannot be written)."""
        (self.folder / LOCKS_DIR).mkdir(parents=True, exist_ok=True)
        self._workers.mkdir(parents=True, exist_ok=True)
        (self.folder / LOCKS_DIR / "desired.lock").touch()  # fails on a read-only volume


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    # Held only for a read-modify-write of a small file: blocking is a matter of milliseconds.
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_atomically(path: Path, data: dict[str, Any], *, durable: bool) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")
        if durable:  # the desired state must survive a crash; a worker's status need not
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temp, path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0
