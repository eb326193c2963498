"""`make bench-ab BASE=<git ref>`: this tree's server against an earlier commit's, side by side.

Both servers run at once, each pinned to core 0 in turn while wrk drives it from core 1; at each
point they take turns for several rounds (who goes first rotates) and the median is kept, so a
drift of the machine hits both alike and only their ratio is read. The baseline runs from a
temporary `git worktree` of BASE with this tree's virtual environment.

    python loadtests/bench_ab.py --base 14c679e
    python loadtests/bench_ab.py --base main --scenarios mnist --concurrency 64 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loadtests.harness import run_wrk, scenarios, wrk_script  # noqa: E402
from tests.support.servers import ServerProcess  # noqa: E402


def start(name: str, tree: Path, log_dir: Path) -> ServerProcess:
    """`tree`'s server on this repository's models, pinned to core 0, quiet, no gRPC."""
    env = {"DLWP_GRPC_PORT": "0", "DLWP_LOG_LEVEL": "warning"}
    server = ServerProcess(env, name=name, log_dir=log_dir, core=0, source=tree)
    return server.wait_ready(180)


@dataclass
class Row:
    scenario: str
    concurrency: int
    base_rps: float
    head_rps: float
    base_p50_ms: float
    head_p50_ms: float
    base_p99_ms: float
    head_p99_ms: float

    @property
    def ratio(self) -> float:
        return self.head_rps / self.base_rps if self.base_rps else float("nan")


def markdown(rows: list[Row], base: str, rounds: int, seconds: int) -> str:
    lines = [
        f"A/B: this tree (head) against `{base}` (base); {rounds} interleaved rounds of {seconds} s"
        " per point, medians; server on core 0, wrk on core 1.",
        "",
        "| scenario | c | base req/s | head req/s | head ÷ base | base p50 | head p50 | base p99 "
        "| head p99 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.scenario} | {r.concurrency} | {r.base_rps:,.0f} | {r.head_rps:,.0f} | "
        f"{r.ratio:.2f} | {r.base_p50_ms:.2f} ms | {r.head_p50_ms:.2f} ms | "
        f"{r.base_p99_ms:.2f} ms | {r.head_p99_ms:.2f} ms |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--base", required=True, help="git ref of the baseline")
    parser.add_argument("--scenarios", default="mnist,sentiment")
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "loadtests" / "reports")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="dlwp-ab-"))
    base_tree = scratch / "base"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base_tree),
                    args.base], check=True, capture_output=True)  # fmt: skip
    rows: list[Row] = []
    sides: list[ServerProcess] = []
    try:
        sides = [start("base", base_tree, scratch), start("head", REPO, scratch)]
        known = scenarios()
        for name in args.scenarios.split(","):
            script = wrk_script(known[name], scratch)
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
                for round_ in range(args.rounds):
                    for side in sides[round_ % 2 :] + sides[: round_ % 2]:
                        url = side.url + known[name].path
                        run_wrk(url, script, concurrency, 1)  # warm the connections
                        runs[side.name].append(run_wrk(url, script, concurrency, args.seconds))

                def median(side: str, key: str, runs: dict[str, list[dict[str, float]]] = runs
                           ) -> float:  # fmt: skip
                    return statistics.median(run[key] for run in runs[side])

                row = Row(name, concurrency, median("base", "requests_per_s"),
                          median("head", "requests_per_s"), median("base", "p50_ms"),
                          median("head", "p50_ms"), median("base", "p99_ms"),
                          median("head", "p99_ms"))  # fmt: skip
                print(json.dumps({**asdict(row), "ratio": round(row.ratio, 3)}), flush=True)
                rows.append(row)
    finally:
        for side in sides:
            side.stop()
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)],
                       check=False, capture_output=True)  # fmt: skip
    table = markdown(rows, args.base, args.rounds, args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_ab.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
