"""`make soak`: 10 minutes of mixed locust load; zero errors and resident memory growth < 10 %.

Memory is measured after a one-minute warm-up (caches, allocator pools and every batch shape
have settled by then) and again at the end. Not part of the default test run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests.harness import REPORTS, Server  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def locust(url: str, seconds: int, out: Path, users: int) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locustfile.py"),
        "--headless", "--host", url, "--users", str(users), "--spawn-rate", str(users),
        "--run-time", f"{seconds}s", "--csv", str(out), "--exit-code-on-error", "1",
        "--only-summary",
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--warmup-s", type=int, default=60)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    server = Server("soak", {}, args.out)
    try:
        warm_code = locust(server.url, args.warmup_s, args.out / "soak-warmup", args.users)
        rss_start = sum(rss_mb(pid) for pid in server.pids())
        started = time.monotonic()
        code = locust(server.url, int(args.minutes * 60), args.out / "soak", args.users)
        rss_end = sum(rss_mb(pid) for pid in server.pids())
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    stats = (args.out / "soak_stats.csv").read_text().splitlines()
    aggregated = next(line for line in stats if ",Aggregated," in line).split(",")
    growth = (rss_end - rss_start) / rss_start
    report = {
        "seconds": round(elapsed), "requests": int(aggregated[2]), "failures": int(aggregated[3]),
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "rss_growth": round(growth, 4), "exit_codes": [warm_code, code],
    }  # fmt: skip
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    ok = report["failures"] == 0 and code == 0 and growth < 0.10
    print("soak passed" if ok else "soak FAILED: errors or memory growth over 10 %")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
