"""Prometheus metrics (prefix `dlwp_`), correct across several worker processes.

With more than one worker, `dlwp serve` sets PROMETHEUS_MULTIPROC_DIR before the workers start;
prometheus_client then keeps each process's values in shared files and `/metrics` adds them up,
so a scrape that lands on any worker sees the whole server.
"""

from __future__ import annotations

import functools
import os
import weakref
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)  # GPU caps reach 4,096

REQUESTS = Counter(
    "dlwp_requests_total", "HTTP requests answered, by model, route and status code.",
    ["model", "route", "code"],
)  # fmt: skip
REQUEST_LATENCY = Histogram(
    "dlwp_request_latency_seconds", "Time from request received to response sent.",
    ["model", "route"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
QUEUE_WAIT = Histogram(
    "dlwp_queue_wait_seconds", "Time a request's rows waited in the batch queue.",
    ["model"], buckets=_LATENCY_BUCKETS,
)  # fmt: skip
COMPUTE_TIME = Histogram(
    "dlwp_compute_seconds", "Time of one batched model call.", ["model"], buckets=_LATENCY_BUCKETS
)
BATCH_SIZE = Histogram(
    "dlwp_batch_size", "Rows in one batched model call.", ["model"], buckets=_BATCH_BUCKETS
)
QUEUE_DEPTH = Gauge(
    "dlwp_queue_depth",
    "Rows waiting in the batch queue (sampled as each batch is taken).",
    ["model"],
    multiprocess_mode="livesum",
)
MODEL_INFO = Gauge(
    "dlwp_model_info", "1 for each model version being served.", ["model", "version"],
    multiprocess_mode="livemax",
)  # fmt: skip
LOAD_FAILURES = Counter(
    "dlwp_model_load_failures_total", "Model versions that failed to load.", ["model"]
)
BACKGROUND_FAILURES = Counter(
    "dlwp_background_failures_total",
    "Failed rounds of a background loop (sync: following the desired state; poll: looking "
    "for new versions), each retried with back-off.",
    ["loop"],
)
REJECTED = Counter(
    "dlwp_rejected_total", "Requests refused by overload protection (queue full).", ["model"]
)


# What the models see and answer (signals.py), per model and version: during a rollout the
# candidate's predictions (its shadow work too) show beside the serving version's, so a drift
# alert names the version that drifts. Buckets are set around the healthy ranges measured on the
# test sets (docs/monitoring.md).
_OOV_BUCKETS = (0.0, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
_CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
_INK_BUCKETS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)

INPUT_OOV = Histogram(
    "dlwp_input_oov_ratio", "Share of a text's words outside the model's vocabulary.",
    ["model", "version"], buckets=_OOV_BUCKETS,
)  # fmt: skip
PREDICTIONS = Counter(
    "dlwp_predictions_total",
    "Predictions by predicted label: sentiment, top topic, digit, or housing price band.",
    ["model", "version", "label"],
)
CONFIDENCE = Histogram(
    "dlwp_prediction_confidence", "Probability of the top class of one prediction.",
    ["model", "version"], buckets=_CONFIDENCE_BUCKETS,
)  # fmt: skip
OUT_OF_RANGE = Counter(
    "dlwp_input_out_of_range_total",
    "Input feature values outside the training set's min-max range.",
    ["model", "version", "feature"],
)
INPUT_INK = Histogram(
    "dlwp_input_ink_ratio",
    "Share of an image's pixels brighter than half (blank: 0, inverted: about 0.85).",
    ["model", "version"], buckets=_INK_BUCKETS,
)  # fmt: skip


# Rollouts (repository/routing.py): each side of a running rollout, labelled model, version
# and role ("serving" or "candidate"), so a dashboard or a controller can compare them.
_SIDE = ["model", "version", "role"]
ROLLOUT_INFO = Gauge(
    "dlwp_rollout_info", "1 for each version in a running rollout, by role and mode.",
    [*_SIDE, "mode"], multiprocess_mode="livemax",
)  # fmt: skip
ROLLOUT_PREDICTIONS = Counter(
    "dlwp_rollout_predictions_total", "Predictions computed by each side of a rollout.", _SIDE
)
ROLLOUT_ERRORS = Counter(
    "dlwp_rollout_errors_total", "Predictions a side of a rollout failed to compute.", _SIDE
)
ROLLOUT_LATENCY = Histogram(
    "dlwp_rollout_latency_seconds", "Time one side of a rollout took for a request's rows.",
    _SIDE, buckets=_LATENCY_BUCKETS,
)  # fmt: skip
ROLLOUT_COMPARED = Counter(
    "dlwp_rollout_compared_total", "Predictions both sides of a rollout computed.", _SIDE
)
ROLLOUT_AGREED = Counter(
    "dlwp_rollout_agreed_total",
    "Compared predictions on which both sides agree (label, top topic, digit).",
    _SIDE,
)
ROLLOUT_PRICE_DIFFERENCE = Counter(
    "dlwp_rollout_price_difference_sum",
    "Housing: summed |serving - candidate| price over compared predictions ($1000s).",
    _SIDE,
)
ROLLOUT_SHADOW_DROPPED = Counter(
    "dlwp_rollout_shadow_dropped_total",
    "Shadow rows not computed because the server was busy (never an error to a client).",
    _SIDE,
)
ROLLOUT_DECISIONS = Counter(
    "dlwp_rollout_decisions_total",
    "Rollouts ended, by decision (promoted, rolled_back, aborted) and by whom (gate, request).",
    ["model", "decision", "by"],
)
FEEDBACK = Counter(
    "dlwp_feedback_total",
    "Labels received for earlier answers, by the version that made the prediction and whether "
    "it was right (housing: outcome 'labelled', see dlwp_feedback_abs_error_sum).",
    [*_SIDE, "outcome"],
)
FEEDBACK_ABS_ERROR = Counter(
    "dlwp_feedback_abs_error_sum", "Housing: summed |predicted - labelled price| ($1000s).", _SIDE
)


_BEFORE_SCRAPE: list[weakref.WeakMethod[Callable[[], None]]] = []


def before_scrape(flush: Callable[[], None]) -> None:
    """Have `exposition` call the bound method `flush` first (for as long as its object lives)."""
    _BEFORE_SCRAPE.append(weakref.WeakMethod(flush))  # type: ignore[arg-type]


@functools.cache
def _request_series(model: str, route: str, status: int) -> tuple[Any, Any]:
    # labels() validates and locks on every call; the series are few (models × routes × codes),
    # so each is looked up once.
    return REQUESTS.labels(model, route, str(status)), REQUEST_LATENCY.labels(model, route)


def observe_request(model: str, route: str, status: int, seconds: float) -> None:
    """Count and time one answered request, HTTP or gRPC alike."""
    requests, latency = _request_series(model, route, status)
    requests.inc()
    latency.observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus text format, summed over worker processes if several."""
    for reference in list(_BEFORE_SCRAPE):
        flush = reference()
        if flush is None:
            _BEFORE_SCRAPE.remove(reference)
        else:
            flush()
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
