"""`dlwp serve` (or the echo ceiling) in a child process on a free port: the one helper that the
test suite, the benchmark and the load tests use to run a real server.

It lives with the tests, which depend on it most, and imports nothing from `loadtests/` or from
the server's code (it runs the server as a user would, through `python -m service.cli`). The
benchmarks import it from here (`from tests.support.servers import ...`), never the other way
round, so the dependency runs one way: loadtests → tests.support, and tests.support → nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: list[str], core: int | None) -> list[str]:
    """Pin to one core where taskset works, so server and load generator do not compete."""
    taskset = shutil.which("taskset")
    if core is None or taskset is None or (os.cpu_count() or 1) < 2:
        return command
    if subprocess.run([taskset, "-c", str(core), "true"], capture_output=True).returncode != 0:
        return command
    return [taskset, "-c", str(core), *command]


class ServerProcess:
    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        workers: int = 1,
        name: str = "server",
        log_dir: Path | None = None,
        core: int | None = None,
        echo: bool = False,
        python: str = sys.executable,
        source: Path = REPO,
    ) -> None:
        """`source`: the source tree to serve (another checkout, e.g. an earlier commit's
        worktree for an A/B); it serves this repository's models unless env says otherwise."""
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        folder = log_dir or Path(tempfile.gettempdir())
        self.log_path = folder / f"dlwp-{name}-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "DLWP_POLL_SECONDS": "0", "DLWP_GRPC_PORT": str(self.grpc_port),
                    **(env or {})}  # fmt: skip
        if source != REPO:
            full_env["PYTHONPATH"] = str(source)
        models = Path(full_env.get("DLWP_MODELS_DIR") or REPO / "models").resolve()
        if "DLWP_STATE_DIR" not in full_env and models == (REPO / "models").resolve():
            # Serving the committed models: their desired state goes to a temp folder, so tests
            # and benchmarks never write into the repository.
            full_env["DLWP_STATE_DIR"] = tempfile.mkdtemp(prefix="dlwp-state-")
        command = [python, "-m", "service.cli", "serve", "--port", str(self.port),
                   "--workers", str(workers)]  # fmt: skip
        if echo:
            command = [sys.executable, str(REPO / "loadtests" / "echo_server.py"), str(self.port)]
        self.process = subprocess.Popen(pinned(command, core), env=full_env, cwd=source,
                                        stdout=self._log, stderr=subprocess.STDOUT)  # fmt: skip

    def wait_ready(self, timeout_s: float = 120) -> ServerProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready; see {self.log_path}")

    def pids(self) -> list[int]:
        """`dlwp serve` (the supervisor) and its worker processes."""
        workers = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            if parent == self.process.pid:
                workers.append(int(stat.parent.name))
        return [self.process.pid, *sorted(workers)]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()
