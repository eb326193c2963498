"""One prepared run on a GPU machine (an H200 when one is lent), and the same in CPU mode for CI.

    python3 -m loadtests.gpu run --mode gpu --wheels .whl --out "$OUT"    # on the GPU machine
    python -m loadtests.gpu run --mode cpu --block-tensorflow --out DIR  # here (the test does this)
    python -m loadtests.gpu wheels      # make gpu-wheels: what the GPU machine lacks, cp312 wheels
    python -m loadtests.gpu reference   # make gpu-reference: test rows + TensorFlow's CPU answers

`run` installs the carried wheels into a temp site (the GPU machine has JAX + CUDA but no Keras,
FastAPI or pydantic, and reaches no registry), starts `dlwp serve` with DLWP_BACKEND=jax on the
committed models, checks its answers against TensorFlow's CPU answers (gpu_reference.json), loads
it end to end while reading the batch sizes from /metrics and the GPU memory from nvidia-smi, then
times the model alone under jax.jit on each device, and last (GPU mode, time permitting) the
same server on the CPU. OUT/gpu.json and OUT/gpu.md are rewritten after every step, so a run cut
short still leaves all it measured; each step has a time budget and the run ends by --budget-s.
Only the standard library and numpy are imported before the wheels are installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).resolve().parent / "gpu_reference.json"
MODELS = ("mnist", "imdb", "reuters", "housing")
RTOL, ATOL = 1e-4, 1e-5  # float32 arithmetic in another order: far inside these

# What the GPU machine lacks (device README: its image has JAX 0.11 + CUDA 13, numpy, Pillow,
# grpcio, httpx, uvloop, prometheus-client, h5py, rich, absl-py, ml-dtypes, click, h11, …),
# carried as the versions installed here. anyio and typing-extensions are there too, but carried
# so that the versions Starlette and pydantic were tested with win.
WHEELS = ("keras", "namex", "optree", "fastapi", "starlette", "pydantic", "pydantic-core",
          "pydantic-settings", "python-dotenv", "typing-inspection", "annotated-types", "uvicorn",
          "httptools", "orjson", "python-multipart", "opentelemetry-api", "typing-extensions",
          "anyio")  # fmt: skip
# Read from the device README's package list for nvidia-h200 (2026-11-17), as far as our
# dependencies reach: a requirement of a carried wheel must be carried or be one of these.
GPU_MACHINE_HAS = frozenset(
    ("absl-py", "annotated-doc", "anyio", "certifi", "click", "grpcio", "h11", "h5py", "httpcore",
     "httpx", "idna", "jax", "jaxlib", "markdown-it-py", "mdurl", "ml-dtypes", "numpy",
     "packaging", "pillow", "prometheus-client", "protobuf", "pygments", "pyyaml", "rich",
     "typing-extensions", "uvloop")
)  # fmt: skip
WHEEL_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
TREE_LIMIT_MIB = 48  # of the 64 MiB that travel: room for what others add to the tree


@dataclass(frozen=True)
class Profile:
    workers: int
    server_cores: list[int] | None
    client_cores: list[int] | None
    concurrency: tuple[int, ...]
    duration_s: float
    warmup_s: float
    jit_sizes: list[int]
    jit_min_time_s: float
    cpu_server: bool  # the same server on the CPU too, for comparison
    budget_s: float


def profile(mode: str) -> Profile:
    if mode == "cpu":  # CI: two cores, small sizes, short loads
        return Profile(1, None, None, (1, 8), 1.0, 0.3, [1, 8, 64], 0.02, False, 240)
    cores = sorted(os.sched_getaffinity(0))
    # 16 cores: load generators on 6, the server on 10 with 8 workers (HTTP + JSON is a request's
    # cost, in Python: one worker a core; two cores spare for JAX's runtime threads).
    clients = max(1, len(cores) * 3 // 8)
    server = cores[: len(cores) - clients] or cores
    return Profile(
        workers=max(1, len(server) - 2),
        server_cores=server,
        client_cores=cores[len(cores) - clients :],
        concurrency=(1, 64, 256),
        duration_s=6.0,
        warmup_s=1.0,
        jit_sizes=[2**i for i in range(17)],
        jit_min_time_s=0.1,
        cpu_server=True,
        budget_s=320,
    )


# ---------------------------------------------------------------- results


class Results:
    """gpu.json and gpu.md in `out`, rewritten whole (atomically) after every step."""

    def __init__(self, out: Path, mode: str) -> None:
        self.out = out
        self.started = time.monotonic()
        self.data: dict[str, Any] = {
            "meta": {
                "mode": mode,
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            "answers": {},
            "server": [],
            "memory": [],
            "jit": [],
            "errors": [],
            "skipped": [],
        }

    def error(self, step: str, error: BaseException | str) -> None:
        self.data["errors"].append(f"{step}: {error if isinstance(error, str) else repr(error)}")

    @property
    def ok(self) -> bool:
        answers = self.data["answers"].values()
        return not self.data["errors"] and all(a["ok"] for a in answers)

    def save(self) -> None:
        self.data["meta"]["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        for name, text in (
            ("gpu.json", json.dumps(self.data, indent=1)),
            ("gpu.md", self.markdown()),
        ):
            temporary = self.out / f".{name}.tmp"
            temporary.write_text(text)
            temporary.replace(self.out / name)

    def markdown(self) -> str:
        d, meta = self.data, self.data["meta"]
        lines = [
            f"# dlwp-serving on {meta.get('gpu', {}).get('name') or 'the CPU'} "
            f"({meta['mode']} mode, {meta['started_utc']}, {meta['elapsed_s']} s)",
            "",
            f"{meta.get('cpus')} CPUs; python {meta.get('python')}; "
            + ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items()),
            f"JAX devices: {meta.get('jax_devices')}; server: {meta.get('server')}",
            "",
            "## Answers against TensorFlow on the CPU",
            "",
            "| model | rows | max abs diff | within rtol 1e-4, atol 1e-5 |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {s} {m} | {a['rows']} | {a['max_abs_diff']:.2e} | {a['ok']} |"
            for key, a in d["answers"].items()
            for s, m in [key.split("/")]
        ]
        lines += [
            "",
            "## Server end to end",
            "",
            "| server | workers | endpoint | c | req/s | p50 ms | p99 ms | errors | "
            "batches | mean batch | largest batch ≤ |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['server']} | {r['workers']} | `{r['path']}` | {r['concurrency']} | "
            f"{r['req_s']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['errors'] + r['connection_failures']} | {r['batches']} | {r['mean_batch']} "
            f"| {r['largest_batch_le']} |"
            for r in d["server"]
        ]
        lines += [
            "",
            "## GPU memory (nvidia-smi)",
            "",
            "| when | server processes MiB | card used MiB | card total MiB |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {m['when']} | {m['server_mib']} | {m['used_mib']} | {m['total_mib']} |"
            for m in d["memory"]
        ]
        lines += [
            "",
            "## The model alone under jax.jit",
            "",
            "ms a call and rows/s on inputs already on the device; `host`: numpy in and out "
            "(one copy each way), as the server calls it.",
            "",
        ]
        lines += _jit_tables(d["jit"])
        if d["skipped"] or d["errors"]:
            lines += ["", "## Skipped and failed", ""] + [f"- skipped: {s}" for s in d["skipped"]]
            lines += [f"- error: {e}" for e in d["errors"]]
        return "\n".join(lines) + "\n"


def _jit_tables(rows: list[dict[str, Any]]) -> list[str]:
    """One table per model: a row per batch size, four columns per device, then GPU ÷ CPU."""
    lines: list[str] = []
    devices = list(dict.fromkeys(r["device"] for r in rows))
    ratio = devices[:1] != ["cpu"] and "cpu" in devices
    head = " | ".join(f"{d} ms | {d} rows/s | {d} host ms | {d} host rows/s" for d in devices)
    head += f" | {devices[0]} ÷ cpu rows/s |" if ratio else " |"
    for model in dict.fromkeys(r["model"] for r in rows):
        by = {(r["batch"], r["device"]): r for r in rows if r["model"] == model and "rows_s" in r}
        lines += [f"**{model}**", "", f"| batch | {head}",
                  "|---" * (1 + 4 * len(devices) + ratio) + "|"]  # fmt: skip
        for batch in sorted({b for b, _ in by}):
            cells = []
            for device in devices:
                r = by.get((batch, device))
                cells += _jit_cells(r) if r else ["–"] * 4
            if ratio:
                fast, cpu = by.get((batch, devices[0])), by.get((batch, "cpu"))
                cells.append(f"{fast['rows_s'] / cpu['rows_s']:.1f}" if fast and cpu else "–")
            lines.append(f"| {batch:,} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _jit_cells(r: dict[str, Any]) -> list[str]:
    ms, host_ms = r["ms_per_call"], r["host_ms_per_call"]
    return [f"{ms:.3f}", f"{r['rows_s']:,}", f"{host_ms:.3f}", f"{r['host_rows_s']:,}"]


def step(results: Results, name: str, action: Callable[[], None]) -> None:
    """Run one step; a failure is recorded and the run goes on to the next step."""
    print(f"== {name} (at {time.monotonic() - results.started:.0f} s)", flush=True)
    started = time.monotonic()
    try:
        action()
    except Exception as error:
        traceback.print_exc()
        results.error(name, error)
    results.data["meta"].setdefault("step_s", {})[name] = round(time.monotonic() - started, 1)
    results.save()


# ---------------------------------------------------------------- the environment


NO_TENSORFLOW = '''"""Written by loadtests/gpu.py: no TensorFlow here, as on the GPU machine."""
import sys


class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
'''


def block_tensorflow() -> None:
    """Make TensorFlow unimportable in this process and every process it starts."""
    folder = Path(tempfile.mkdtemp(prefix="dlwp-no-tf-"))
    (folder / "dlwp_no_tensorflow.py").write_text(NO_TENSORFLOW)
    (folder / "sitecustomize.py").write_text("import dlwp_no_tensorflow  # noqa: F401\n")
    _prepend_path(folder)
    importlib.import_module("dlwp_no_tensorflow")


def install_wheels(folder: Path) -> None:
    """Install the carried wheels into a temp site used by this process and its children."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"no wheels in {folder}: run `make gpu-wheels` here and carry .whl")
    site = Path(tempfile.mkdtemp(prefix="dlwp-site-"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--target",
            str(site),
            *map(str, wheels),
        ],
        check=True,
    )
    _prepend_path(site)


def _prepend_path(folder: Path) -> None:
    sys.path.insert(0, str(folder))
    parts = [str(folder), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    os.environ["PYTHONPATH"] = ":".join(dict.fromkeys(parts))


def importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def describe_machine(results: Results) -> None:
    meta = results.data["meta"]
    meta["python"] = platform.python_version()
    meta["cpus"] = len(os.sched_getaffinity(0))
    meta["tensorflow_importable"] = importable("tensorflow")
    versions = {}
    for name in ("numpy", "jax", "jaxlib", "keras", "fastapi", "uvicorn", "pydantic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    meta["versions"] = versions
    query = _nvidia_smi("--query-gpu=name,driver_version,memory.total")
    if query:
        name, driver, total = query[0]
        meta["gpu"] = {"name": name, "driver": driver, "memory_total_mib": int(total)}


def _nvidia_smi(query: str) -> list[list[str]]:
    if shutil.which("nvidia-smi") is None:
        return []
    answer = subprocess.run(
        ["nvidia-smi", query, "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [[cell.strip() for cell in line.split(",")] for line in answer.stdout.splitlines()]


def gpu_memory(results: Results, when: str, root_pid: int | None) -> None:
    """The card's used memory, and what the server's processes hold of it."""
    card = _nvidia_smi("--query-gpu=memory.used,memory.total")
    if not card:
        return
    pids = _process_tree(root_pid) if root_pid else set()
    apps = _nvidia_smi("--query-compute-apps=pid,used_memory")
    held = sum(int(mib) for pid, mib in apps if pid.isdigit() and int(pid) in pids)
    results.data["memory"].append(
        {
            "when": when,
            "server_mib": held,
            "used_mib": int(card[0][0]),
            "total_mib": int(card[0][1]),
        }
    )


def _process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grew = bool(children)
    return tree


@contextlib.contextmanager
def cpu_affinity(cores: list[int] | None) -> Iterator[None]:
    """Processes started inside inherit these cores (the server, away from the load generators)."""
    before = os.sched_getaffinity(0)
    if cores:
        os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


# ---------------------------------------------------------------- the server


def check_answers(results: Results, label: str, url: str) -> None:
    """The server's raw outputs for the reference rows, against TensorFlow's on the CPU."""
    import httpx

    from service.model import artifacts

    reference = json.loads(REFERENCE.read_text())
    for name, expected in reference["models"].items():
        served = artifacts.list_versions(REPO / "models", name)[-1]
        if served != expected["version"]:
            results.error(
                f"answers {name}",
                f"the reference is for version "
                f"{expected['version']}, models/ serves {served}: make gpu-reference",
            )
        answer = httpx.post(
            f"{url}/v1/models/{name}:predict", json={"instances": expected["instances"]}, timeout=60
        )
        answer.raise_for_status()
        got = np.asarray(answer.json()["predictions"], dtype=np.float64)
        want = np.asarray(expected["predictions"], dtype=np.float64)
        results.data["answers"][f"{label}/{name}"] = {
            "rows": len(want),
            "max_abs_diff": float(np.max(np.abs(got - want))) if got.shape == want.shape else 1e9,
            "ok": got.shape == want.shape and bool(np.allclose(got, want, RTOL, ATOL)),
        }


def load_bodies(model: str) -> tuple[str, list[bytes]]:
    """Task-endpoint bodies made from the reference rows (the datasets do not travel)."""
    instances = json.loads(REFERENCE.read_text())["models"][model]["instances"]
    if model == "mnist":
        return "/v1/digits", [json.dumps({"pixels": pixels}).encode() for pixels in instances]
    return "/v1/sentiment", [json.dumps({"text": text}).encode() for text in instances]


_SAMPLE = re.compile(r"^dlwp_batch_size_(bucket|sum|count)\{([^}]*)\} (\S+)$", re.M)


def batch_histogram(url: str, model: str) -> dict[str, float]:
    """dlwp_batch_size for one model, summed over workers: {"sum", "count", "le=<bound>"...}."""
    import httpx

    values: dict[str, float] = {}
    for kind, labels, value in _SAMPLE.findall(httpx.get(f"{url}/metrics", timeout=30).text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("model") == model:
            key = f"le={float(found['le']):g}" if kind == "bucket" else kind
            values[key] = values.get(key, 0.0) + float(value)
    return values


def batch_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    calls = after.get("count", 0) - before.get("count", 0)
    if calls <= 0:
        return {"batches": 0, "mean_batch": None, "largest_batch_le": None}
    bounds = sorted((float(k[3:]), after[k] - before.get(k, 0)) for k in after if k[:3] == "le=")
    largest = next((bound for bound, count in bounds if count >= calls), None)
    return {
        "batches": int(calls),
        "mean_batch": round((after.get("sum", 0) - before.get("sum", 0)) / calls, 1),
        "largest_batch_le": f"{largest:g}" if largest is not None else None,
    }


def serve_and_load(
    results: Results, prof: Profile, label: str, env: dict[str, str], deadline: float
) -> None:
    """Start the JAX server, check its answers, load it end to end; stop it."""
    from loadtests.gpu_load import run_load
    from tests.support.servers import ServerProcess

    full_env = {"DLWP_BACKEND": "jax", "DLWP_MODELS_DIR": str(REPO / "models"), **env}
    with cpu_affinity(prof.server_cores):
        server = ServerProcess(
            full_env, workers=prof.workers, name=f"jax-{label}", log_dir=results.out
        )
    try:
        started = time.monotonic()
        server.wait_ready(timeout_s=max(10.0, min(180.0, deadline - time.monotonic())))
        _wait_for_workers(server.log_path, prof.workers, deadline)
        results.data["meta"]["server"] = (
            f"{prof.workers} worker(s) on cores "
            f"{_cores(prof.server_cores)}, load generators on "
            f"{_cores(prof.client_cores)}"
        )
        results.data["meta"][f"server_{label}_ready_s"] = round(time.monotonic() - started, 1)
        check_answers(results, label, server.url)
        gpu_memory(results, f"{label} server, idle", server.process.pid)
        results.save()
        # Concurrency outermost: a run cut short still has both models at the lower levels.
        for concurrency in prof.concurrency:
            for model in ("mnist", "imdb"):
                path, bodies = load_bodies(model)
                point = f"{label} server {path} c={concurrency}"
                if time.monotonic() + prof.warmup_s + prof.duration_s + 4 > deadline:
                    results.data["skipped"].append(f"{point}: out of time")
                    continue
                print(f"   {point}", flush=True)
                before = batch_histogram(server.url, model)
                load = run_load(
                    server.url,
                    path,
                    bodies,
                    "application/json",
                    concurrency=concurrency,
                    duration_s=prof.duration_s,
                    warmup_s=prof.warmup_s,
                    processes=len(prof.client_cores or [1]),
                    cores=prof.client_cores,
                )
                stats = batch_stats(before, batch_histogram(server.url, model))
                results.data["server"].append(
                    {"server": label, "workers": prof.workers, "path": path, **load, **stats}
                )
                results.save()
        gpu_memory(results, f"{label} server, after the loads", server.process.pid)
    finally:
        server.stop()


def _wait_for_workers(log_path: Path, workers: int, deadline: float) -> None:
    """Every worker has loaded its models (each logs it): none is still compiling under load."""
    while time.monotonic() < deadline:
        if log_path.read_text(errors="replace").count("Application startup complete") >= workers:
            return
        time.sleep(0.2)
    raise TimeoutError(f"not every one of {workers} workers started; see {log_path}")


def _cores(cores: list[int] | None) -> str:
    return f"{cores[0]}–{cores[-1]}" if cores else "any"


# ---------------------------------------------------------------- the model alone


def time_models(results: Results, prof: Profile, mode: str, deadline: float) -> None:
    from loadtests.gpu_jit import MODELS as JIT_MODELS
    from loadtests.gpu_jit import bench_model
    from service.model.runtime import prepare_jax

    prepare_jax()
    import jax

    results.data["meta"]["jax_devices"] = [str(d) for d in jax.devices()]
    devices = [jax.devices()[0]]
    if devices[0].platform != "cpu":
        devices.append(jax.devices("cpu")[0])
    elif mode == "gpu":
        results.error("model alone", "JAX found no GPU: timing the CPU only")
    for i, name in enumerate(JIT_MODELS):
        share = (deadline - time.monotonic()) / (len(JIT_MODELS) - i)
        bench_model(
            REPO / "models",
            name,
            prof.jit_sizes,
            devices,
            time.monotonic() + share,
            lambda row: (results.data["jit"].append(row), results.save()),
            prof.jit_min_time_s,
        )
    stats = devices[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        results.data["meta"]["jit_peak_device_mib"] = round(stats["peak_bytes_in_use"] / 2**20)


# ---------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    # `timeout` ends a run with SIGTERM: unwind, so the server is stopped and the results stay.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(124))
    prof = profile(args.mode)
    if args.max_batch:
        prof = replace(prof, jit_sizes=[s for s in prof.jit_sizes if s <= args.max_batch])
    budget = args.budget_s or prof.budget_s
    results = Results(args.out, args.mode)
    end = results.started + budget
    if args.block_tensorflow:
        block_tensorflow()
    if args.wheels:
        step(results, "install wheels", lambda: install_wheels(args.wheels))
    describe_machine(results)
    results.data["meta"]["budget_s"] = budget
    results.save()
    label = args.mode
    # Shares of the budget: the GPU server first (it also checks the answers), then the model
    # alone, then (GPU mode) the CPU server for comparison with whatever is left.
    server_end = results.started + budget * (0.55 if prof.cpu_server else 0.6)
    step(results, f"{label} server", lambda: serve_and_load(results, prof, label, {}, server_end))
    jit_end = results.started + budget * (0.85 if prof.cpu_server else 1.0) - 5
    step(results, "model alone", lambda: time_models(results, prof, args.mode, jit_end))
    if prof.cpu_server and end - time.monotonic() > 40:
        step(
            results,
            "cpu server",
            lambda: serve_and_load(results, prof, "cpu", {"JAX_PLATFORMS": "cpu"}, end),
        )
    elif prof.cpu_server:
        results.data["skipped"].append("cpu server: out of time")
    results.save()
    print((args.out / "gpu.md").read_text(), flush=True)
    return 0 if results.ok else 1


def cmd_reference(args: argparse.Namespace) -> int:
    """Write gpu_reference.json: a few test rows of each model and TensorFlow's CPU answers."""
    import httpx

    from loadtests import payloads
    from service.model import artifacts
    from tests.support.servers import ServerProcess

    rows = args.rows
    instances = {
        "mnist": [image.reshape(784).tolist() for image in payloads.digits(rows)[0]],
        "imdb": [t for t in payloads.reviews() if len(t) < 1000][:rows],
        "reuters": [t for t in payloads.wires() if len(t) < 1000][:rows],
        "housing": [[h[f] for f in payloads.HOUSING_FEATURES] for h in payloads.houses()[:rows]],
    }
    server = ServerProcess({"DLWP_MODELS_DIR": str(REPO / "models")}, name="reference")
    try:
        server.wait_ready()
        models = {}
        for name in MODELS:
            answer = httpx.post(
                f"{server.url}/v1/models/{name}:predict",
                json={"instances": instances[name]},
                timeout=60,
            )
            answer.raise_for_status()
            version = artifacts.list_versions(REPO / "models", name)[-1]
            models[name] = {
                "version": version,
                "instances": instances[name],
                "predictions": answer.json()["predictions"],
            }
    finally:
        server.stop()
    made_with = {n: importlib.metadata.version(n) for n in ("tensorflow", "keras")}
    REFERENCE.write_text(json.dumps({"made_with": made_with, "models": models}) + "\n")
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size:,} bytes)")
    return 0


def cmd_wheels(args: argparse.Namespace) -> int:
    """Download the wheels the GPU machine lacks; check their needs and the size that travels."""
    dest: Path = args.dest
    dest.mkdir(exist_ok=True)
    for old in dest.glob("*.whl"):  # one version of each: two stop the install there
        old.unlink()
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = [arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            args.python_version,
            "--implementation",
            "cp",
            *platforms,
            "--dest",
            str(dest),
            *pins,
        ],
        check=True,
    )
    missing = unmet_requirements(sorted(dest.glob("*.whl")), args.python_version)
    wheels_mib = sum(f.stat().st_size for f in dest.glob("*.whl")) / 2**20
    tree_mib = _tree_bytes() / 2**20
    print(
        f"{len(pins)} wheels, {wheels_mib:.1f} MiB; with the working tree {tree_mib:.1f} MiB: "
        f"{wheels_mib + tree_mib:.1f} MiB travel (device limit 64, ours {TREE_LIMIT_MIB})"
    )
    if missing:
        print(
            "needed by the wheels but neither carried nor on the GPU machine: " + ", ".join(missing)
        )
    return 1 if missing or wheels_mib + tree_mib > TREE_LIMIT_MIB else 0


def unmet_requirements(wheels: list[Path], python_version: str) -> list[str]:
    """Requirements (CPython on x86-64 Linux) that neither a carried wheel nor the machine meets."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    environment = {
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    carried = {canonicalize_name(w.name.split("-")[0]) for w in wheels}
    missing = set()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            text = archive.read(metadata).decode()
        for line in text.splitlines():
            if not line.startswith("Requires-Dist:"):
                continue
            requirement = Requirement(line.partition(":")[2].strip())
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            name = canonicalize_name(requirement.name)
            if name not in carried and name not in GPU_MACHINE_HAS:
                missing.add(f"{name} (for {wheel.name.split('-')[0]})")
    return sorted(missing)


def _tree_bytes() -> int:
    """What a device call sends: tracked and untracked-not-ignored files (committed models too)."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    files = (REPO / name for name in listing.decode().split("\0") if name)
    return sum(f.stat().st_size for f in files if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.gpu",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="measure (and check) the JAX server and models")
    run.add_argument("--mode", choices=["gpu", "cpu"], default="gpu")
    run.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "loadtests/reports")))
    run.add_argument("--wheels", type=Path, help="install these carried wheels first (.whl)")
    run.add_argument("--budget-s", type=float, help="end by then (gpu 320, cpu 240)")
    run.add_argument("--max-batch", type=int, help="time the model alone up to this batch")
    run.add_argument(
        "--block-tensorflow",
        action="store_true",
        help="make TensorFlow unimportable here and in the server, as on the H200",
    )
    run.set_defaults(func=cmd_run)
    reference = commands.add_parser("reference", help="write gpu_reference.json (TensorFlow)")
    reference.add_argument("--rows", type=int, default=8)
    reference.set_defaults(func=cmd_reference)
    wheels = commands.add_parser("wheels", help="download the wheels the GPU machine lacks")
    wheels.add_argument("--dest", type=Path, default=REPO / ".whl")
    wheels.add_argument("--python-version", default="3.12", help="the GPU machine's: 3.12")
    wheels.set_defaults(func=cmd_wheels)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
