"""The GPU run script (loadtests/gpu.py) in its CPU mode: it must work before any GPU time is
spent on it. TensorFlow is unimportable in the script and in the server it starts, as on the
GPU machine, so this also shows `dlwp serve` with DLWP_BACKEND=jax needs no TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtests.gpu import MODELS, REPO, profile


def test_the_gpu_script_runs_in_cpu_mode_without_tensorflow(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtests.gpu",
            "run",
            "--mode",
            "cpu",
            "--block-tensorflow",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "gpu.json").read_text())

    assert results["meta"]["tensorflow_importable"] is False
    assert results["errors"] == [] and results["skipped"] == []
    # The JAX server answers like TensorFlow on the committed reference rows.
    assert sorted(results["answers"]) == sorted(f"cpu/{m}" for m in MODELS)
    assert all(answer["ok"] for answer in results["answers"].values())
    # End to end at every concurrency, without an error, batching under load.
    cpu = profile("cpu")
    points = {(r["path"], r["concurrency"]): r for r in results["server"]}
    assert sorted(points) == sorted(
        (path, c) for path in ("/v1/digits", "/v1/sentiment") for c in cpu.concurrency
    )
    assert all(
        r["requests"] > 0 and r["errors"] == r["connection_failures"] == 0 for r in points.values()
    )
    assert points["/v1/digits", 1]["mean_batch"] == 1.0
    assert points["/v1/digits", max(cpu.concurrency)]["mean_batch"] > 1.0
    # The model alone: every model at every batch size; batches pay (summed over the models, so
    # that one call slowed by a busy machine cannot flip it: batch 64 has 64 times the rows).
    timed = {(r["model"], r["batch"]): r for r in results["jit"]}
    assert sorted(timed) == sorted((m, b) for m in MODELS for b in cpu.jit_sizes)
    assert all(r["rows_s"] > 0 and r["host_rows_s"] > 0 for r in timed.values())
    largest = max(cpu.jit_sizes)
    assert sum(timed[m, largest]["rows_s"] for m in MODELS) > sum(
        timed[m, 1]["rows_s"] for m in MODELS
    )
    assert "| batch | cpu ms | cpu rows/s" in (tmp_path / "gpu.md").read_text()
