"""What a rollout has seen of each side, in one worker, and the sum over workers.

Each worker counts, per side (`serving`, `candidate`): predictions computed, failures and a
latency histogram; and, for predictions both sides computed, how many agreed (classifiers) or
the summed absolute difference (housing prices); and shadow rows dropped because the server was
busy. A worker writes its counts to a small file in the state folder; whoever decides a gate, or
answers a status call, adds the files up. Counts and histogram buckets add exactly, so the sum
over workers is what one process would have counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ROLES = ("serving", "candidate")

# Latency buckets: 1 ms × 1.1^i, 0.1 ms to ~60 s in 140 steps (each ≤ 10% wide), so p50/p99
# from the sum of several workers' buckets are within 10% of the exact figure.
_BASE_S = 0.0001
_GROWTH = 1.1
_BUCKETS = 140


def _bucket(seconds: float) -> int:
    if seconds <= _BASE_S:
        return 0
    return min(_BUCKETS - 1, int(math.log(seconds / _BASE_S, _GROWTH)) + 1)


def _upper(bucket: int) -> float:
    return _BASE_S * _GROWTH**bucket


@dataclass
class SideStats:
    """One side's counts: predictions computed, failures, latency histogram (seconds), and its
    monitoring signals: predictions by class (label, topic, digit, price band) and the summed
    top-class probability."""

    requests: int = 0
    errors: int = 0
    latency: dict[int, int] = field(default_factory=dict)  # bucket → count
    predicted: dict[str, int] = field(default_factory=dict)  # class name → predictions
    confidence_sum: float = 0.0  # classifiers: Σ top-class probability over `predicted`

    def count_classes(self, names: list[str], indices: Any, confidence: Any) -> None:
        """Count predictions by class (`indices` into `names`), with their confidences."""
        for index, count in enumerate(np.bincount(indices, minlength=len(names)).tolist()):
            if count:
                self.predicted[names[index]] = self.predicted.get(names[index], 0) + count
        if confidence is not None:
            self.confidence_sum += float(confidence.sum())

    @property
    def mean_confidence(self) -> float | None:
        total = sum(self.predicted.values())
        return self.confidence_sum / total if total and self.confidence_sum else None

    def observe(self, seconds: float, rows: int = 1) -> None:
        self.requests += rows
        bucket = _bucket(seconds)
        self.latency[bucket] = self.latency.get(bucket, 0) + rows

    def fail(self, rows: int = 1) -> None:
        self.requests += rows
        self.errors += rows

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float | None:
        """The q-quantile of the latency in seconds (the bucket's upper bound), None if empty."""
        total = sum(self.latency.values())
        if not total:
            return None
        rank = q * total
        seen = 0
        for bucket in sorted(self.latency):
            seen += self.latency[bucket]
            if seen >= rank:
                return _upper(bucket)
        return _upper(max(self.latency))

    def add(self, other: SideStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for bucket, count in other.latency.items():
            self.latency[bucket] = self.latency.get(bucket, 0) + count
        for name, count in other.predicted.items():
            self.predicted[name] = self.predicted.get(name, 0) + count
        self.confidence_sum += other.confidence_sum

    def as_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors,
                "latency": {str(k): v for k, v in sorted(self.latency.items())},
                "predicted": dict(sorted(self.predicted.items())),
                "confidence_sum": self.confidence_sum}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SideStats:
        latency = {int(k): int(v) for k, v in dict(data.get("latency", {})).items()}
        predicted = {str(k): int(v) for k, v in dict(data.get("predicted", {})).items()}
        return cls(int(data.get("requests", 0)), int(data.get("errors", 0)), latency, predicted,
                   float(data.get("confidence_sum", 0.0)))  # fmt: skip


@dataclass
class RolloutStats:
    """One rollout's counts (one worker's, or the sum of several)."""

    sides: dict[str, SideStats] = field(default_factory=lambda: {r: SideStats() for r in ROLES})
    compared: int = 0  # predictions both sides computed
    agreed: int = 0  # of those, same label / top topic / digit
    price_difference_sum: float = 0.0  # housing: Σ |serving price - candidate price|
    shadow_dropped: int = 0  # shadow rows not computed because the server was busy

    def compare(self, agreed: int, compared: int, price_difference_sum: float = 0.0) -> None:
        self.compared += compared
        self.agreed += agreed
        self.price_difference_sum += price_difference_sum

    @property
    def agreement(self) -> float | None:
        """Share of compared predictions on which both sides agree (None before any)."""
        return self.agreed / self.compared if self.compared else None

    @property
    def mean_price_difference(self) -> float | None:
        return self.price_difference_sum / self.compared if self.compared else None

    def add(self, other: RolloutStats) -> None:
        for role in ROLES:
            self.sides[role].add(other.sides[role])
        self.compared += other.compared
        self.agreed += other.agreed
        self.price_difference_sum += other.price_difference_sum
        self.shadow_dropped += other.shadow_dropped

    def as_json(self) -> dict[str, Any]:
        return {
            "sides": {role: side.as_json() for role, side in self.sides.items()},
            "compared": self.compared,
            "agreed": self.agreed,
            "price_difference_sum": self.price_difference_sum,
            "shadow_dropped": self.shadow_dropped,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RolloutStats:
        sides = dict(data.get("sides", {}))
        return cls(
            {role: SideStats.from_json(dict(sides.get(role, {}))) for role in ROLES},
            int(data.get("compared", 0)),
            int(data.get("agreed", 0)),
            float(data.get("price_difference_sum", 0.0)),
            int(data.get("shadow_dropped", 0)),
        )


@dataclass
class Labelled:
    """Live accuracy from feedback, per side, on predictions both sides made and a user
    labelled: `correct` (classifiers) or the summed absolute price error (housing)."""

    count: int = 0
    correct: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    abs_error_sum: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ROLES, 0.0))

    def accuracy(self, role: str) -> float | None:
        return self.correct[role] / self.count if self.count else None

    def mae(self, role: str) -> float | None:
        return self.abs_error_sum[role] / self.count if self.count else None
