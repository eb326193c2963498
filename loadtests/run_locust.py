"""`make loadtest`: locust headless for a bounded time against a server; fails on any error.

Uses the server at $DLWP_URL, or starts one on the committed models. Reports (CSV and HTML)
go to loadtests/reports/.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests.harness import REPORTS, Server  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("DLWP_LOAD_SECONDS", 60)))
    parser.add_argument("--users", type=int, default=int(os.environ.get("DLWP_LOAD_USERS", 32)))
    parser.add_argument("--out", type=Path, default=REPORTS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    url = os.environ.get("DLWP_URL")
    server = None if url else Server("locust", {}, args.out)
    try:
        command = [
            sys.executable, "-m", "locust", "-f", str(REPO / "loadtests" / "locustfile.py"),
            "--headless", "--host", url or server.url,  # type: ignore[union-attr]
            "--users", str(args.users), "--spawn-rate", str(args.users),
            "--run-time", f"{args.seconds}s", "--stop-timeout", "10",
            "--csv", str(args.out / "locust"), "--html", str(args.out / "locust.html"),
            "--exit-code-on-error", "1", "--only-summary",
        ]  # fmt: skip
        result = subprocess.run(command, cwd=REPO)
    finally:
        if server is not None:
            server.stop()
    failures = (args.out / "locust_failures.csv").read_text().strip().splitlines()[1:]
    if result.returncode != 0 or failures:
        print(f"loadtest failed: exit {result.returncode}, {len(failures)} failure kinds",
              file=sys.stderr)  # fmt: skip
        return 1
    print(f"loadtest passed: no failures; reports in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
