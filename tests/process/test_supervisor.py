"""`dlwp serve`'s supervisor: a worker that cannot start stops the server; workers never outlive it.

(A killed worker being replaced: tests/repository/test_workers.py; a drain: test_drain.py.)
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ..conftest import COMMITTED_MODELS, ServerProcess


def test_a_worker_that_cannot_start_stops_the_server_with_exit_code_3():
    server = ServerProcess({"DLWP_MODELS_DIR": str(COMMITTED_MODELS),
                            "DLWP_MODEL_VERSIONS": "imdb=latest"}, name="bad-pin")  # fmt: skip
    try:
        exit_code = server.process.wait(timeout=120)
    finally:
        server.stop()
    log = server.log_path.read_text()

    assert exit_code == 3
    assert "expected name=version" in log and "could not start" in log
    assert "starting another" not in log, "no restart loop for a setting that cannot work"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        status = Path(f"/proc/{pid}/status").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return "\nState:\tZ" not in status  # a zombie waits for its parent: not running


def test_workers_stop_by_themselves_when_the_supervisor_is_killed():
    server = ServerProcess({"DLWP_MODELS_DIR": str(COMMITTED_MODELS)}, name="orphans")
    try:
        server.wait_ready()
        _, *workers = server.pids()
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        deadline = time.monotonic() + 30
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        server.stop()

    assert workers, "the supervisor had a worker"
    assert not any(_running(pid) for pid in workers), "no worker left holding the port"
