"""The framework seam: the same artifacts under TensorFlow and under Keras' JAX backend."""

from __future__ import annotations

import importlib.util

import httpx
import numpy as np
import pytest

from service.model.runtime import bucket_sizes
from tests.support.servers import ServerProcess

HOUSE_ROW = [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98]
INSTANCES = {
    "mnist": [np.linspace(0, 255, 784).tolist()],
    "housing": [HOUSE_ROW],
    "imdb": ["A wonderful, moving film. The acting was superb."],
    "reuters": ["Shr 45 cts vs 38 cts. Net 12.4 mln dlrs vs 10.1 mln"],
}


def test_bucket_sizes_are_powers_of_two_up_to_the_cap():
    assert bucket_sizes(1) == [1]
    assert bucket_sizes(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert bucket_sizes(128) == [1, 2, 4, 8, 16, 32, 64, 128]


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_the_jax_backend_answers_like_tensorflow(server):
    jax_server = ServerProcess({"KERAS_BACKEND": "jax", "DLWP_BACKEND": "jax"}, name="jax")
    try:
        jax_server.wait_ready()
        for model, instances in INSTANCES.items():
            body = {"instances": instances}
            on_tf = httpx.post(f"{server.url}/v1/models/{model}:predict", json=body, timeout=30)
            on_jax = httpx.post(f"{jax_server.url}/v1/models/{model}:predict", json=body,
                                timeout=30)  # fmt: skip

            np.testing.assert_allclose(on_jax.json()["predictions"], on_tf.json()["predictions"],
                                       rtol=1e-4, atol=1e-5, err_msg=model)  # fmt: skip
    finally:
        jax_server.stop()
