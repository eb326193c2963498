"""The image as a user gets it: built from the Dockerfile with podman, run read-only, it serves
the four models as a non-root user, reports healthy, holds only the serving install, and stops
cleanly on SIGTERM without dropping the request in flight.

Building needs podman and a `python:3.11-slim` base: where no registry is reachable,
../shared/tools/python-base-image.sh makes a local one (this test runs it when the base is
missing). The locked wheels go to .wheels/ first, so the build downloads nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.support.servers import free_port

from ..conftest import REPO
from ..rest.test_task_endpoints import EARNINGS, HOUSE, POSITIVE

IMAGE = "localhost/dlwp-serving:test"
BASE = "docker.io/library/python:3.11-slim"
SHARED = Path(os.environ.get("DLWP_SHARED_DIR", REPO.parent / "shared"))
BASE_SCRIPT = SHARED / "tools" / "python-base-image.sh"
DRAIN_SECONDS = 2


def podman(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          check=check)  # fmt: skip


def _podman_unusable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman; .ci/run installs it)"
    try:
        info = podman("info", check=False)
    except subprocess.TimeoutExpired:
        return "podman info did not answer in 60 s"
    if info.returncode != 0:
        return f"podman cannot run here: {(info.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


pytestmark = pytest.mark.skipif((reason := _podman_unusable()) is not None, reason=reason or "")


@pytest.fixture(scope="module")
def image() -> str:
    if podman("image", "exists", BASE, check=False).returncode != 0:
        if not BASE_SCRIPT.is_file():
            pytest.skip(f"no {BASE} image and no {BASE_SCRIPT} to make one")
        made = subprocess.run(["bash", str(BASE_SCRIPT)], capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert made.returncode == 0, f"{BASE_SCRIPT} failed:\n{made.stdout}{made.stderr}"[-3000:]
    subprocess.run([sys.executable, "tools/serving_requirements.py", "--wheels", ".wheels"],
                   cwd=REPO, check=True, timeout=600)  # fmt: skip
    build = podman("build", "--format", "docker", "--pull=never", "--network", "host",
                   "-t", IMAGE, str(REPO), timeout=900, check=False)  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return IMAGE


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[tuple[str, str]]:
    """The image running read-only (as under Kubernetes' readOnlyRootFilesystem): name, URL."""
    port = free_port()
    name = f"dlwp-test-{port}"
    # Host networking (what works in every sandbox): every port the server opens must be free.
    podman("run", "--detach", "--name", name, "--network", "host", "--read-only",
           "--env", f"DLWP_PORT={port}", "--env", f"DLWP_GRPC_PORT={free_port()}",
           "--env", f"DLWP_DRAIN_SECONDS={DRAIN_SECONDS}", image)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(name, url)
        yield name, url
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def _wait_ready(name: str, url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        state = podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        if state != "running":
            break
        time.sleep(0.2)
    logs = podman("logs", name, check=False)
    pytest.fail(f"the container did not become ready:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")


def test_the_four_task_endpoints_answer(container):
    _, url = container
    stroke = np.zeros((28, 28), dtype=int)
    stroke[4:24, 13:15] = 255  # a vertical bar: a one
    with httpx.Client(base_url=url, timeout=30) as http:
        sentiment = http.post("/v1/sentiment", json={"text": POSITIVE})
        topics = http.post("/v1/topics", json={"text": EARNINGS})
        digits = http.post("/v1/digits", json={"pixels": stroke.tolist()})
        housing = http.post("/v1/housing", json={"features": HOUSE})

    assert sentiment.json()["predictions"][0]["label"] == "positive"
    assert topics.json()["predictions"][0]["topics"][0]["label"] == "earn"
    assert digits.json()["predictions"][0]["digit"] == 1
    assert 10 < housing.json()["predictions"][0]["price"] < 50


def server_status(name: str) -> dict[str, str]:
    """/proc/1/status in the container: the server is its process 1."""
    lines = podman("exec", name, "cat", "/proc/1/status").stdout.splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def test_the_server_runs_as_a_non_root_user(container):
    name, _ = container
    uids = server_status(name)["Uid"].split()

    assert uids and all(uid != "0" for uid in uids)


def test_the_healthcheck_passes_once_ready(container):
    name, _ = container
    health = podman("healthcheck", "run", name, check=False)

    assert health.returncode == 0, health.stdout + health.stderr


def test_the_image_holds_the_serving_install_only(container, image):
    name, _ = container
    probe = ("import importlib.util, json; print(json.dumps([m for m in ('matplotlib', 'jax', "
             "'scipy', 'pytest', 'locust', 'mypy') if importlib.util.find_spec(m)]))")  # fmt: skip
    extras = json.loads(podman("exec", name, "python", "-c", probe).stdout)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)

    assert extras == []
    # 2.57 GB with the full install; the lean one is ~1.6 GB on the local base image.
    assert size < 1.8e9, f"the image grew to {size / 1e9:.2f} GB"


# Run inside the container: the resident memory of the server, its supervisor (process 1) and
# the processes it started (the worker), in KiB.
SERVER_RSS_KIB = """
import os
total = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        continue
    if pid == "1" or fields["PPid"].strip() == "1":
        total += int(fields.get("VmRSS", "0 kB").split()[0])
print(total)
"""


def test_resident_memory_fits_the_kubernetes_memory_limit_with_room(container):
    name, _ = container
    rss_mib = int(podman("exec", name, "python", "-c", SERVER_RSS_KIB).stdout) / 1024
    deployment = yaml.safe_load((REPO / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    limit = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    limit_mib = int(limit[:-2]) * {"Mi": 1, "Gi": 1024}[limit[-2:]]

    # Four models loaded and answering; a new version loads beside the old one before the swap.
    assert rss_mib < 0.75 * limit_mib, f"{rss_mib:.0f} MiB resident against a {limit} limit"


def test_sigterm_answers_the_request_in_flight_and_exits_cleanly(container):
    """Last: it stops the container. During the drain window readiness says 503 (balancers stop
    sending) while liveness stays 200; a request whose body is still arriving when SIGTERM comes
    is answered; the server then exits with status 0, no sooner than the window."""
    name, url = container
    body = json.dumps({"text": POSITIVE}).encode()
    started, resume = threading.Event(), threading.Event()
    answer: dict[str, object] = {}

    def chunks() -> Iterator[bytes]:
        yield body[:8]
        started.set()
        resume.wait(10)
        yield body[8:]

    def post() -> None:
        try:
            response = httpx.post(f"{url}/v1/sentiment", content=chunks(), timeout=30,
                                  headers={"content-type": "application/json",
                                           "content-length": str(len(body))})  # fmt: skip
            answer["status"] = response.status_code
        except httpx.HTTPError as error:
            answer["error"] = repr(error)

    request = threading.Thread(target=post)
    request.start()
    assert started.wait(10)
    time.sleep(0.3)  # let the server read the headers: nothing to observe from outside
    stopped_at = time.monotonic()
    podman("kill", "--signal", "TERM", name)
    time.sleep(0.3)  # the signal is being handled while the body is still arriving
    ready = httpx.get(f"{url}/v2/health/ready", timeout=5)
    live = httpx.get(f"{url}/v2/health/live", timeout=5)
    resume.set()
    request.join(30)
    exit_code = podman("wait", name, timeout=DRAIN_SECONDS + 30).stdout.strip()
    took = time.monotonic() - stopped_at

    assert ready.status_code == 503 and live.status_code == 200
    assert answer == {"status": 200}
    assert exit_code == "0"
    assert DRAIN_SECONDS <= took < DRAIN_SECONDS + 15
