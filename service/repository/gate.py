"""A rollout's gate: when the candidate is good enough to promote, or bad enough to roll back.

Pure logic over the summed counts (`comparison.py`) and the labels that came back (feedback).
The defaults decide within a few hundred compared predictions; a start may override any of them
(`min_compared` at most 1,000). See docs/rollouts.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from service.errors import BadRequestError
from service.repository.comparison import Labelled, RolloutStats

MAX_MIN_COMPARED = 1000

Decision = Literal["promote", "rollback"]


@dataclass(frozen=True)
class Gate:
    """Thresholds; each a field a start may override by name."""

    auto: int = 1  # 0: the gate never decides; only a promote or abort request ends it
    min_compared: int = 200  # predictions both sides computed before the gate decides
    error_margin: float = 0.01  # candidate error rate ≤ serving's + this
    p99_ratio: float = 1.5  # candidate p99 latency ≤ serving's × this (+ latency_slack_ms)
    # Sub-millisecond p99s differ by more than 1.5x from scheduling noise alone: a fixed
    # allowance keeps a fast identical candidate from failing on it.
    latency_slack_ms: float = 5.0
    # The p99 of 200 predictions is their second worst: one stalled batch decides it. A latency
    # failure (the rest passing) is confirmed on up to this many compared before a rollback.
    latency_confirm_compared: int = 1000
    min_agreement: float = 0.9  # classifiers: share of predictions where both sides agree
    max_price_difference: float = 2.5  # housing: mean |price difference| in $1000s
    min_labels: int = 50  # labelled predictions that let live accuracy decide instead
    accuracy_tolerance: float = 0.02  # candidate live accuracy ≥ serving's - this
    mae_tolerance: float = 0.5  # housing: candidate live MAE ≤ serving's + this ($1000s)
    # Hard limits, checked from the first predictions on, whatever min_compared says (the
    # latency one once both sides have min_compared predictions).
    hard_min_requests: int = 50
    hard_error_margin: float = 0.2
    hard_p99_ratio: float = 3.0

    @classmethod
    def from_overrides(cls, overrides: Any) -> Gate:
        """The defaults with `overrides` (a JSON object of field → number); 400 if invalid."""
        if overrides is None:
            return cls()
        if not isinstance(overrides, dict):
            raise BadRequestError("gate must be a JSON object of thresholds, e.g. "
                                  '{"min_compared": 300}')  # fmt: skip
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in overrides.items():
            if key not in known:
                raise BadRequestError(
                    f"unknown gate threshold {key!r}; known: {', '.join(sorted(known))}"
                )
            integer = known[key] == "int"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                integer and not float(value).is_integer()
            ) or value < 0:  # fmt: skip
                kind = "a whole number" if integer else "a number"
                raise BadRequestError(f"gate.{key} must be {kind} ≥ 0, got {value!r}")
            values[key] = int(value) if integer else float(value)
        gate = cls(**values)
        for name in ("min_compared", "latency_confirm_compared"):
            if not 1 <= getattr(gate, name) <= MAX_MIN_COMPARED:
                raise BadRequestError(
                    f"gate.{name} must be between 1 and {MAX_MIN_COMPARED}, "
                    f"got {getattr(gate, name)}"
                )
        if gate.auto not in (0, 1):
            raise BadRequestError(f"gate.auto is 1 (the gate decides) or 0, got {gate.auto}")
        if gate.min_agreement > 1:
            raise BadRequestError(
                f"gate.min_agreement is a share in [0, 1], got {gate.min_agreement}"
            )
        return gate

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str


def figures(stats: RolloutStats, labelled: Labelled, housing: bool) -> dict[str, Any]:
    """What the gate looks at, as numbers for the status, the log and the CLI table."""
    sides = {}
    for role, side in stats.sides.items():
        p50, p99 = side.quantile(0.5), side.quantile(0.99)
        entry: dict[str, Any] = {
            "requests": side.requests,
            "errors": side.errors,
            "error_rate": round(side.error_rate, 4),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        }
        live = labelled.mae(role) if housing else labelled.accuracy(role)
        entry["live_mae" if housing else "live_accuracy"] = None if live is None else round(live, 4)
        # Its monitoring signals: the prediction mix and, for classifiers, the mean confidence.
        total = sum(side.predicted.values())
        entry["predicted"] = dict(sorted(side.predicted.items(), key=lambda kv: -kv[1]))
        top = max(side.predicted.items(), key=lambda kv: kv[1], default=None)
        entry["top_prediction"] = None if top is None else [top[0], round(top[1] / total, 4)]
        if not housing:
            confidence = side.mean_confidence
            entry["mean_confidence"] = None if confidence is None else round(confidence, 4)
        sides[role] = entry
    agreement = stats.agreement
    result: dict[str, Any] = {
        "compared": stats.compared,
        "agreed": stats.agreed,
        "agreement": None if agreement is None else round(agreement, 4),
        "shadow_dropped": stats.shadow_dropped,
        "labelled": labelled.count,
        "sides": sides,
    }
    if housing:
        difference = stats.mean_price_difference
        result["mean_price_difference"] = None if difference is None else round(difference, 4)
    return result


def decide(gate: Gate, stats: RolloutStats, labelled: Labelled, housing: bool) -> Verdict | None:
    """Promote, roll back, or None: not enough evidence yet."""
    if not gate.auto:
        return None
    serving, candidate = stats.sides["serving"], stats.sides["candidate"]
    slack_s = gate.latency_slack_ms / 1000
    if candidate.requests >= gate.hard_min_requests:
        limit = serving.error_rate + gate.hard_error_margin
        if candidate.error_rate > limit:
            return Verdict("rollback", f"hard limit: candidate error rate "
                           f"{candidate.error_rate:.3f} > {limit:.3f} (serving "
                           f"{serving.error_rate:.3f} + {gate.hard_error_margin})")  # fmt: skip
        if min(serving.requests, candidate.requests) >= gate.min_compared:
            too_slow = _slower(serving.quantile(0.99), candidate.quantile(0.99),
                               gate.hard_p99_ratio, slack_s)  # fmt: skip
            if too_slow:
                return Verdict("rollback", f"hard limit: {too_slow}")
    if stats.compared < gate.min_compared:
        return None
    failures = []
    limit = serving.error_rate + gate.error_margin
    if candidate.error_rate > limit:
        failures.append(f"error rate {candidate.error_rate:.3f} > {limit:.3f}")
    too_slow = _slower(serving.quantile(0.99), candidate.quantile(0.99), gate.p99_ratio, slack_s)
    if too_slow:
        failures.append(too_slow)
    quality_ok, quality = _quality(gate, stats, labelled, housing)
    if not quality_ok:
        failures.append(quality)
    if failures == [too_slow] and stats.compared < gate.latency_confirm_compared:
        return None  # only the tail is slower: confirmed on more predictions first
    if failures:
        return Verdict("rollback", f"gate failed after {stats.compared} compared: "
                       + "; ".join(failures))  # fmt: skip
    return Verdict("promote", f"gate passed after {stats.compared} compared: {quality}, error "
                   f"rate {candidate.error_rate:.3f} ≤ {limit:.3f}, p99 within "
                   f"{gate.p99_ratio}x")  # fmt: skip


def _slower(serving_p99: float | None, candidate_p99: float | None, ratio: float,
            slack_s: float) -> str | None:  # fmt: skip
    if serving_p99 is None or candidate_p99 is None:
        return None
    limit = serving_p99 * ratio + slack_s
    if candidate_p99 <= limit:
        return None
    return (f"candidate p99 {candidate_p99 * 1000:.1f} ms > {limit * 1000:.1f} ms "
            f"({ratio}x serving {serving_p99 * 1000:.1f} ms + {slack_s * 1000:g} ms)")  # fmt: skip


def _quality(
    gate: Gate, stats: RolloutStats, labelled: Labelled, housing: bool
) -> tuple[bool, str]:
    """Agreement at least the threshold, or (with enough labels) live accuracy close enough."""
    if housing:
        difference = stats.mean_price_difference or 0.0
        agree_ok = difference <= gate.max_price_difference
        agree_text = (f"mean price difference {difference:.3f} "
                      f"{'≤' if agree_ok else '>'} {gate.max_price_difference}")  # fmt: skip
    else:
        agreement = stats.agreement or 0.0
        agree_ok = agreement >= gate.min_agreement
        agree_text = (f"agreement {agreement:.3f} "
                      f"{'≥' if agree_ok else '<'} {gate.min_agreement}")  # fmt: skip
    if agree_ok or labelled.count < gate.min_labels:
        return agree_ok, agree_text
    if housing:
        serving, candidate = labelled.mae("serving") or 0.0, labelled.mae("candidate") or 0.0
        ok = candidate <= serving + gate.mae_tolerance
        return ok, (f"{agree_text}, live MAE {candidate:.3f} {'≤' if ok else '>'} serving "
                    f"{serving:.3f} + {gate.mae_tolerance} on {labelled.count} labels")  # fmt: skip
    serving, candidate = labelled.accuracy("serving") or 0.0, labelled.accuracy("candidate") or 0.0
    ok = candidate >= serving - gate.accuracy_tolerance
    return ok, (f"{agree_text}, live accuracy {candidate:.3f} {'≥' if ok else '<'} serving "
                f"{serving:.3f} - {gate.accuracy_tolerance} on {labelled.count} "
                "labels")  # fmt: skip
