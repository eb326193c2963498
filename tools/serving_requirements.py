"""The server's requirements for one image variant, read from pyproject.toml (one list, no copy).

    python tools/serving_requirements.py                              # print them, one a line
    python tools/serving_requirements.py --backend jax --cuda         # another variant
    python tools/serving_requirements.py --wheels .wheels             # fetch the locked wheels

A variant is a backend and whether it runs on CUDA (the Dockerfile's BACKEND and CUDA build
arguments; `make lean` uses the default):
  tensorflow          TensorFlow's CPU-only build (`tensorflow-cpu`, a third of `tensorflow`)
  tensorflow + CUDA   TensorFlow with the CUDA libraries from pip (`tensorflow[and-cuda]`)
  jax                 no TensorFlow: Keras on its JAX backend (`jax`)
  jax + CUDA          the same on CUDA (`jax[cuda12]`)
Versions come from requirements.lock, which pins them all.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"
BACKENDS = ("tensorflow", "jax")
# backend → (its requirement's name in pyproject.toml, the distribution installed (CPU, CUDA))
FRAMEWORKS = {
    "tensorflow": ("tensorflow", ("tensorflow-cpu", "tensorflow[and-cuda]")),
    "jax": ("jax", ("jax", "jax[cuda12]")),
}


def name_of(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    return match.group(0).lower() if match else ""


def requirements(
    backend: str = "tensorflow", cuda: bool = False, pyproject: Path = REPO / "pyproject.toml"
) -> list[str]:
    """pyproject's dependencies with TensorFlow swapped for the variant's framework build, and
    its build backend."""
    if backend not in FRAMEWORKS:
        raise ValueError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["jax"]]
    name, builds = FRAMEWORKS[backend]
    (framework,) = (r for r in declared if name_of(r) == name)
    server = [r for r in project["dependencies"] if name_of(r) != "tensorflow"]
    # The build backend too: the image installs the project itself without build isolation.
    build: list[str] = tomllib.loads(pyproject.read_text())["build-system"]["requires"]
    return [builds[cuda] + framework.removeprefix(name), *server, *build]


def download_wheels(folder: Path, backend: str = "tensorflow", cuda: bool = False) -> None:
    """The locked wheels of a variant into `folder` (pip's cache and local indexes first), so an
    image build installs from there instead of downloading TensorFlow again."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
               "--dest", str(folder), "-c", str(LOCK), *requirements(backend, cuda)]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow")
    parser.add_argument("--cuda", type=int, choices=(0, 1), default=0, help="1: the CUDA build")
    parser.add_argument("--wheels", type=Path, help="download the locked wheels into this folder")
    args = parser.parse_args(argv)
    if args.wheels:
        download_wheels(args.wheels, args.backend, bool(args.cuda))
    else:
        print("\n".join(requirements(args.backend, bool(args.cuda))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
