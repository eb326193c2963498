"""The server's footprint: resident memory after loading the four models, and cold start to ready
(the median of several starts), on one core, beside TensorFlow's own import in the same
environment, so what our code adds is visible. Measured on the lean serving install (`make lean`,
.venv-lean: what the image has) and, interleaved for comparison, on the environment running this
(the dev install, which also has JAX, SciPy and Matplotlib, and TensorFlow imports them).

    python loadtests/bench_footprint.py            # 5 starts per environment
    python loadtests/bench_footprint.py --quick    # 1 start, the lean install only (if built)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.servers import ServerProcess, pinned  # noqa: E402

LEAN_PYTHON = REPO / ".venv-lean" / "bin" / "python"
# Targets of the issue on lean serving (one core, four models loaded).
TARGET_RSS_MIB = 600
TARGET_COLD_START_S = 2.5
# Run in the environment measured: the import's wall time from process start (interpreter start
# included, as in a cold start) and the resident memory it leaves.
IMPORT_CODE = """
import tensorflow
status = open("/proc/self/status").read()
rss_kib = int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1])
print(rss_kib)
"""


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def cold_start(python: str, log_dir: Path) -> tuple[float, float]:
    """Seconds from spawning `dlwp serve` (one core) to ready, and its RSS in MiB once ready."""
    env = {"DLWP_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    server = ServerProcess(env, name="footprint", log_dir=log_dir, core=0, python=python)
    try:
        deadline = started + 180
        while time.perf_counter() < deadline and server.process.poll() is None:
            try:
                if httpx.get(f"{server.url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.02)  # the poller runs on the other core
        else:
            raise RuntimeError(f"the server did not become ready; see {server.log_path}")
        seconds = time.perf_counter() - started
        return seconds, sum(rss_mib(pid) for pid in server.pids())  # supervisor + worker
    finally:
        server.stop()


def tensorflow_import(python: str) -> tuple[float, float]:
    """Seconds for `python -c "import tensorflow"` (one core) and the RSS it leaves, MiB."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    output = subprocess.run(pinned([python, "-c", IMPORT_CODE], 0), capture_output=True,
                            text=True, check=True, env=env).stdout  # fmt: skip
    return time.perf_counter() - started, int(output.split()[-1]) / 1024


def measure(environments: dict[str, str], starts: int) -> dict[str, dict[str, Any]]:
    """Interleaved: each round starts every environment once, so drifts hit them alike."""
    samples: dict[str, dict[str, list[float]]] = {
        name: {"cold_start_s": [], "rss_mib": [], "tf_import_s": [], "tf_import_rss_mib": []}
        for name in environments
    }
    with tempfile.TemporaryDirectory(prefix="dlwp-footprint-") as scratch:
        for _ in range(starts):
            for name, python in environments.items():
                seconds, rss = cold_start(python, Path(scratch))
                samples[name]["cold_start_s"].append(seconds)
                samples[name]["rss_mib"].append(rss)
                seconds, rss = tensorflow_import(python)
                samples[name]["tf_import_s"].append(seconds)
                samples[name]["tf_import_rss_mib"].append(rss)
    return {
        name: {
            "python": environments[name],
            "starts": starts,
            **{key: round(statistics.median(values), 3) for key, values in figures.items()},
            "cold_start_runs_s": [round(value, 3) for value in figures["cold_start_s"]],
        }
        for name, figures in samples.items()
    }


def footprint(quick: bool = False, starts: int | None = None) -> dict[str, dict[str, Any]]:
    environments = {}
    if LEAN_PYTHON.exists():
        environments["lean"] = str(LEAN_PYTHON)
    if not quick or not environments:
        environments["dev"] = sys.executable
    return measure(environments, starts or (1 if quick else 5))


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "Footprint (`dlwp serve`, one core, four models loaded; medians of "
        f"{next(iter(results.values()))['starts']} interleaved starts):",
        "",
        "| install | RSS after load MiB | cold start to ready s | TensorFlow import s | "
        "RSS after TF import MiB | ours on top: MiB / s |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['rss_mib']:.0f} | {r['cold_start_s']:.2f} | {r['tf_import_s']:.2f} | "
            f"{r['tf_import_rss_mib']:.0f} | {r['rss_mib'] - r['tf_import_rss_mib']:.0f} / "
            f"{r['cold_start_s'] - r['tf_import_s']:.2f} |"
        )
    if "lean" in results:
        lean = results["lean"]
        rss = "met" if lean["rss_mib"] <= TARGET_RSS_MIB else "missed"
        start = "met" if lean["cold_start_s"] <= TARGET_COLD_START_S else "missed"
        lines += ["", f"Targets on the lean install: RSS ≤ {TARGET_RSS_MIB} MiB ({rss}), "
                  f"cold start ≤ {TARGET_COLD_START_S} s ({start})."]  # fmt: skip
    else:
        lines += ["", "No lean install (.venv-lean): `make lean` builds it; `make bench` does."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one start, the lean install only")
    parser.add_argument("--starts", type=int, help="starts per environment (default 5)")
    args = parser.parse_args(argv)
    results = footprint(args.quick, args.starts)
    print(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
