"""Batches for `model.fit`, built as they are asked for (a `keras.utils.PyDataset`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np

Features = Callable[[np.ndarray], np.ndarray]  # row numbers → model rows


class Batches(keras.utils.PyDataset):  # type: ignore[misc]
    """Rows `plan` (row numbers, repeats allowed) in batches; reshuffled every epoch when seeded.

    `features(rows)` builds the model rows of a batch, so only one batch of multi-hot vectors
    exists at a time, however large the data.
    """

    def __init__(
        self,
        features: Features,
        targets: np.ndarray,
        plan: np.ndarray,
        batch_size: int,
        shuffle_seed: int | None = None,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=4)
        self.features = features
        self.targets = targets
        self.plan = np.asarray(plan, dtype=np.int64)
        self.batch_size = batch_size
        self.rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
        self.order = self.rng.permutation(self.plan) if self.rng is not None else self.plan

    def __len__(self) -> int:
        return math.ceil(len(self.plan) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        return self.features(rows), self.targets[rows]

    def on_epoch_end(self) -> None:
        if self.rng is not None:
            self.order = self.rng.permutation(self.plan)
