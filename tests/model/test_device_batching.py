"""Batching defaults by device: the batch cap and queue bound suit where the model runs."""

from __future__ import annotations

import pytest

from service import settings as settings_module
from service.model.runtime import DEVICE_BATCHING, Batching, device_platform
from service.settings import Settings


@pytest.fixture
def on_gpu(monkeypatch):
    monkeypatch.setattr(settings_module, "device_batching", lambda backend: DEVICE_BATCHING["gpu"])


def test_a_gpu_takes_larger_batches_and_a_longer_queue_than_a_cpu():
    gpu, cpu = DEVICE_BATCHING["gpu"], DEVICE_BATCHING["cpu"]
    assert gpu.max_batch_size > cpu.max_batch_size and gpu.max_queue_rows > cpu.max_queue_rows
    # Each default is valid as a setting (the cap's own bound included).
    for batching in (gpu, cpu):
        Settings(max_batch_size=batching.max_batch_size, max_queue_rows=batching.max_queue_rows)


def test_unset_batching_follows_the_device(on_gpu):
    assert Settings(backend="jax").batching == DEVICE_BATCHING["gpu"]


def test_batching_set_by_the_user_wins_over_the_device(on_gpu, monkeypatch):
    assert Settings(max_batch_size=32).batching == Batching(
        32, DEVICE_BATCHING["gpu"].max_queue_rows
    )
    monkeypatch.setenv("DLWP_MAX_QUEUE_ROWS", "100")
    assert Settings().batching == Batching(DEVICE_BATCHING["gpu"].max_batch_size, 100)


def test_tensorflow_on_this_machine_keeps_the_cpu_defaults():
    assert device_platform("tensorflow") == "cpu"
    assert Settings().batching == Batching(128, 1024)
