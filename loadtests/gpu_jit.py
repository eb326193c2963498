"""The model alone under `jax.jit`, on each JAX device: ms per call and rows/s by batch size.

Two figures per point: `device` times the call on inputs already on the device (the model's own
cost), `host` times what the server pays for a batch — numpy in, one copy to the device, the call,
one copy back. Inputs are realistic, never zeros (pixels in [0, 1], multi-hot rows with ~2 % of
the words, standardised features), tiled from a seeded block. Times are medians over repeated
calls after a warm-up call that compiles the shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.model import artifacts
from service.model.runtime import load_jax_model

MODELS = ("mnist", "imdb", "reuters", "housing")


def input_rows(name: str, width: int, rows: int) -> np.ndarray:
    rng = np.random.default_rng(14)
    block_rows = min(rows, 1024)
    if name == "mnist":
        block = rng.random((block_rows, width), dtype=np.float32)
    elif name in ("imdb", "reuters"):
        block = (rng.random((block_rows, width)) < 0.02).astype(np.float32)
    else:
        block = rng.standard_normal((block_rows, width), dtype=np.float32)
    repeats = -(-rows // block_rows)
    return np.tile(block, (repeats, 1))[:rows] if repeats > 1 else block


def _median_s(call: Callable[[], Any], min_time_s: float, max_calls: int) -> tuple[float, int]:
    times: list[float] = []
    spent = 0.0
    while len(times) < 3 or (spent < min_time_s and len(times) < max_calls):
        started = time.perf_counter()
        call()
        elapsed = time.perf_counter() - started
        times.append(elapsed)
        spent += elapsed
    return float(np.median(times)), len(times)


def bench_model(
    models_dir: Path,
    name: str,
    sizes: list[int],
    devices: list[Any],
    deadline: float,
    record: Callable[[dict[str, Any]], None],
    min_time_s: float = 0.1,
) -> None:
    """Time `name` at each batch size on each device, until `deadline` (time.monotonic())."""
    import jax

    folder = artifacts.version_dir(models_dir, name, artifacts.list_versions(models_dir, name)[-1])
    width = artifacts.read_manifest(folder).signature.model_input.shape[-1]
    model = load_jax_model(folder / artifacts.MODEL_FILE)
    inputs = input_rows(name, width, 1)
    weights = {
        device: jax.device_put((model.trainable, model.non_trainable), device) for device in devices
    }
    for size in sizes:
        for device in devices:
            if time.monotonic() > deadline:
                record(
                    {
                        "model": name,
                        "device": device.platform,
                        "batch": size,
                        "skipped": "out of time",
                    }
                )
                continue
            trainable, non_trainable = weights[device]
            if len(inputs) < size:  # made as the sizes grow: a run cut short never makes them
                inputs = input_rows(name, width, size)
            host = inputs[:size]
            on_device = jax.device_put(host, device).block_until_ready()

            def device_call(x: Any = on_device, t: Any = trainable, n: Any = non_trainable) -> Any:
                return model.serve(t, n, x).block_until_ready()

            def host_call(
                x: Any = host, t: Any = trainable, n: Any = non_trainable, d: Any = device
            ) -> Any:
                return np.asarray(model.serve(t, n, jax.device_put(x, d)))

            started = time.perf_counter()
            device_call()  # compiles this shape for this device
            compile_s = time.perf_counter() - started
            device_s, calls = _median_s(device_call, min_time_s, 2000)
            host_s, _ = _median_s(host_call, min_time_s, 2000)
            record(
                {
                    "model": name,
                    "device": device.platform,
                    "batch": size,
                    "ms_per_call": round(device_s * 1000, 4),
                    "rows_s": round(size / device_s),
                    "host_ms_per_call": round(host_s * 1000, 4),
                    "host_rows_s": round(size / host_s),
                    "calls_timed": calls,
                    "compile_s": round(compile_s, 3),
                    "input_mib": round(host.nbytes / 2**20, 2),
                }
            )
    del weights, inputs
