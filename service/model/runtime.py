"""The one seam between the service and a deep-learning framework: array in, array out.

`compile_model` loads a `.keras` file (safe mode on) and returns a `Predictor`, a plain function
on float32 numpy arrays. TensorFlow (`tf.function` with a fixed input signature, so a batch of
any size reuses one graph) is the default; the same artifact also runs under Keras' JAX backend
with `jax.jit`, padded to power-of-two batch sizes so it compiles once per bucket, on whatever
device JAX finds (a GPU where its CUDA plugin is installed). Nothing else in the service imports a
framework. `device_batching` gives the batch cap and queue bound that suit the device.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]


def bucket_sizes(max_batch_size: int) -> list[int]:
    """Powers of two up to `max_batch_size`, then `max_batch_size` itself."""
    sizes = [1]
    while sizes[-1] * 2 < max_batch_size:
        sizes.append(sizes[-1] * 2)
    if sizes[-1] != max_batch_size:
        sizes.append(max_batch_size)
    return sizes


def configure_threads(compute_threads: int) -> None:
    """Size the math libraries' thread pools before they start, so they don't fight the server."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(compute_threads))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def configure_backend(backend: str, compute_threads: int) -> None:
    """Size TensorFlow's thread pools (before its first op); set JAX's options (before import)."""
    if backend == "jax":
        prepare_jax()
    if backend != "tensorflow":
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(compute_threads)
        tf.config.threading.set_inter_op_parallelism_threads(compute_threads)
    except RuntimeError:
        pass  # already initialised (a second app in the same process): keep its sizes


def compile_model(path: Path, input_size: int, max_batch_size: int, backend: str) -> Predictor:
    """Load a model file and return its batch function, warmed at every bucket size."""
    if backend == "jax":
        predictor = _jax_predictor(path, max_batch_size)
    elif backend == "tensorflow":
        predictor = _tensorflow_predictor(path, input_size)
    else:
        raise ValueError(f"unknown backend {backend!r}: expected tensorflow or jax")
    for size in bucket_sizes(max_batch_size):
        predictor(np.zeros((size, input_size), dtype=np.float32))
    return predictor


def _tensorflow_predictor(path: Path, input_size: int) -> Predictor:
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(path, safe_mode=True, compile=False)

    @tf.function(input_signature=[tf.TensorSpec([None, input_size], tf.float32)])  # type: ignore[untyped-decorator]
    def serve(batch: tf.Tensor) -> tf.Tensor:
        return model(batch, training=False)

    # Calling the concrete graph skips tf.function's argument dispatch: 0.32 ms instead of
    # 0.52 ms a call at batch 1 (MNIST, one thread, measured here).
    graph = serve.get_concrete_function()

    def predict(batch: np.ndarray) -> np.ndarray:
        return graph(tf.constant(batch, dtype=tf.float32)).numpy()  # type: ignore[no-any-return]

    return predict


def _jax_predictor(path: Path, max_batch_size: int) -> Predictor:
    model = load_jax_model(path)
    sizes = bucket_sizes(max_batch_size)

    def predict(batch: np.ndarray) -> np.ndarray:
        rows = len(batch)
        size = next((s for s in sizes if s >= rows), rows)
        batch = np.asarray(batch, dtype=np.float32)
        if size != rows:  # a batch already at a bucket size goes as it is, with no copy
            padded = np.zeros((size, batch.shape[1]), dtype=np.float32)
            padded[:rows] = batch
            batch = padded
        # One copy to the device for the whole batch and one back, never row by row: each
        # transfer to a GPU has a fixed cost before its first byte.
        return np.asarray(model(batch))[:rows]

    return predict


# ---------------------------------------------------------------- JAX and the device


def prepare_jax() -> None:
    """JAX's options, set before it is first imported; each can still be overridden by env.

    Keras picks its backend at import, so `DLWP_BACKEND=jax` alone is enough (no TensorFlow is
    needed or imported). JAX would otherwise take 75 % of a GPU's memory at start, in each worker
    process: it allocates as it needs instead. Matrix products in full float32, so a GPU answers
    like the CPU (TF32, a GPU's default, keeps ~3 significant digits; models this small are bound
    by launches and transfers, not arithmetic).
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")


@dataclass(frozen=True)
class JaxModel:
    """A `.keras` model as one jitted function of its weights and a batch; weights on the device."""

    serve: Callable[[list[Any], list[Any], Any], Any]
    trainable: list[Any]
    non_trainable: list[Any]

    def __call__(self, batch: Any) -> Any:
        return self.serve(self.trainable, self.non_trainable, batch)


def load_jax_model(path: Path) -> JaxModel:
    """Load a model file under Keras' JAX backend (safe mode on); compiled per input shape."""
    prepare_jax()
    import jax
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(
            f"the jax backend needs Keras on JAX, but Keras was already imported with "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND=jax"
        )
    model = keras.saving.load_model(path, safe_mode=True, compile=False)

    @jax.jit  # type: ignore[untyped-decorator]
    def serve(trainable: list[Any], non_trainable: list[Any], batch: Any) -> Any:
        outputs, _ = model.stateless_call(trainable, non_trainable, batch, training=False)
        return outputs

    return JaxModel(
        serve,
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
    )


@dataclass(frozen=True)
class Batching:
    """How many rows one model call takes, and how many may wait, on one kind of device."""

    max_batch_size: int
    max_queue_rows: int


# One CPU core: 128 rows a call is past the knee of rows/s (TensorFlow, MNIST: 2.7k rows/s at 1,
# 65k at 64; README) and 1,024 queued rows drain in ~20 ms. A GPU call costs about the same from
# 1 to thousands of rows (launch- and transfer-bound for these models), so it takes the largest
# cap allowed and a queue of four full batches. The GPU figures await the first H200 run
# (loadtests/gpu.py); README "GPU".
DEVICE_BATCHING = {
    "cpu": Batching(max_batch_size=128, max_queue_rows=1024),
    "gpu": Batching(max_batch_size=4096, max_queue_rows=16384),
}


def device_platform(backend: str) -> str:
    """Where the backend runs model calls: "gpu" or "cpu" (other accelerators count as "gpu")."""
    if backend == "jax":
        prepare_jax()
        import jax

        platform = jax.devices()[0].platform
    elif backend == "tensorflow":
        import tensorflow as tf

        platform = "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    else:
        raise ValueError(f"unknown backend {backend!r}: expected tensorflow or jax")
    return "cpu" if platform == "cpu" else "gpu"


def device_batching(backend: str) -> Batching:
    """The default batch cap and queue bound for the device the backend runs on."""
    return DEVICE_BATCHING[device_platform(backend)]
