"""The install: one lock that every install follows, and a serving process that imports nothing
from training or plotting."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib

import pytest

from ..conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import lock
import serving_requirements

PINS = lock.read_pins((REPO / "requirements.lock").read_text())
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_dlwp_serve_imports_nothing_from_training_or_plotting():
    # The command line as `dlwp serve` runs it, up to the server: the stand-in builds the app
    # the way a worker would (its uvicorn Config, loaded: app, protocol), serving nothing.
    code = (
        "import json, sys, service.process.supervisor as supervisor\n"
        "from service.process.worker import build\n"
        "supervisor.serve = lambda settings: build(settings, None).load() or 0\n"
        "from service.cli import main\n"
        "main(['serve', '--port', '0', '--grpc-port', '0'])\n"
        "import service.rest.app\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('training', 'matplotlib', 'httpx'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)  # fmt: skip

    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_the_lock_pins_every_requirement_and_what_is_installed_follows_it():
    declared = [*PROJECT["dependencies"], *[r for extra in PROJECT["optional-dependencies"]
                                            .values() for r in extra]]  # fmt: skip
    names = {lock.canonical(serving_requirements.name_of(r)) for r in declared}
    names.discard("dlwp-serving")
    installed = {lock.canonical(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions()}  # fmt: skip

    assert names <= set(PINS), f"not in requirements.lock: {sorted(names - set(PINS))}"
    drift = {n: (installed[n], v) for n, v in PINS.items() if installed.get(n, v) != v}
    assert drift == {}, "installed ≠ locked (make install follows the lock): " + str(drift)


@pytest.mark.parametrize(
    ("backend", "cuda", "framework"),
    [("tensorflow", False, "tensorflow-cpu"), ("tensorflow", True, "tensorflow[and-cuda]"),
     ("jax", False, "jax"), ("jax", True, "jax[cuda12]")],
)  # fmt: skip
def test_every_image_variant_is_locked_and_swaps_only_the_framework(backend, cuda, framework):
    requirements = serving_requirements.requirements(backend, cuda)
    names = [serving_requirements.name_of(r) for r in requirements]
    server = [r for r in PROJECT["dependencies"] if not r.startswith("tensorflow")]
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]

    assert re.match(r"[^<>=]+", requirements[0]).group(0) == framework  # type: ignore[union-attr]
    assert requirements[1:] == server + build
    assert all(lock.canonical(name) in PINS for name in names)
