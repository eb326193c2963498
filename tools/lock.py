"""`make lock`: resolve every install this project makes into one constraints file.

The lock pins the whole tree of `.[dev]` (server, training, JAX, tests) together with what the
image variants install instead (`tensorflow-cpu`, `tensorflow[and-cuda]`, `jax[cuda]`), so
`make install`, CI and every image build take their versions from one file, used as pip
constraints (`pip install -c requirements.lock ...`): a package pinned there but not asked for
is not installed. pip resolves it without installing anything (`--dry-run --report`, from the
registries' metadata), for the platform it runs on: Linux x86-64, CPython 3.11, as the image.

    python tools/lock.py                    # keep the pins already in the lock, add what is new
    python tools/lock.py --upgrade          # take the newest versions pyproject.toml allows
    python tools/lock.py --prefer-installed # … and the versions installed where it runs
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"
# What the image variants install in place of, or beside, `.[dev]` (see the Dockerfile).
VARIANTS = ["tensorflow-cpu", "tensorflow[and-cuda]", "jax[cuda12]"]
HEADER = """\
# Every version that `make install`, CI and the image install: pip constraints (-c), resolved
# for Linux x86-64 and CPython 3.11 by `make lock` (tools/lock.py) from pyproject.toml's
# dependencies and extras plus the image variants ({variants}).
# Refresh: `make lock` (keeps these pins, adds new packages) or `make lock-upgrade`.
"""
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, str]:
    """name → version of every `name==version` line (comments, -e lines and URLs skipped)."""
    pins = {}
    for line in text.splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


def resolve(preferred: dict[str, str]) -> dict[str, str]:
    """pip's resolution of `.[dev]` + the variants, keeping `preferred` pins where they fit."""
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(preferred.items())))
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                   "--quiet", "--report", str(report), "-c", str(constraints),
                   f"{REPO}[dev]", *VARIANTS]  # fmt: skip
        subprocess.run(command, check=True, cwd=REPO)
        items = json.loads(report.read_text())["install"]
    own = canonical("dlwp-serving")
    resolved = {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in items}
    resolved.pop(own, None)
    return resolved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upgrade", action="store_true", help="ignore the current pins")
    parser.add_argument(
        "--prefer-installed",
        action="store_true",
        help="keep the versions installed in this environment where they fit",
    )
    parser.add_argument("--out", type=Path, default=LOCK)
    args = parser.parse_args(argv)
    preferred = {} if args.upgrade or not args.out.exists() else read_pins(args.out.read_text())
    if args.prefer_installed:
        freeze = [sys.executable, "-m", "pip", "freeze", "--exclude-editable"]
        preferred.update(read_pins(subprocess.run(freeze, check=True, capture_output=True,
                                                  text=True).stdout))  # fmt: skip
    try:
        pins = resolve(preferred)
    except subprocess.CalledProcessError:
        if not preferred:
            raise
        # A new requirement conflicts with a kept pin: keep none rather than fail.
        print("lock: the kept pins conflict with pyproject.toml; resolving afresh", flush=True)
        pins = resolve({})
    if pins.get("tensorflow-cpu") != pins.get("tensorflow"):
        raise SystemExit(f"lock: tensorflow {pins.get('tensorflow')} and tensorflow-cpu "
                         f"{pins.get('tensorflow-cpu')} differ; pin them alike")  # fmt: skip
    body = "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
    args.out.write_text(HEADER.format(variants=", ".join(VARIANTS)) + body)
    print(f"lock: {len(pins)} packages in {args.out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
