"""A rollout's status as a table a person reads at a glance (`dlwp rollout status`)."""

from __future__ import annotations

from typing import Any


def rollout_table(status: dict[str, Any]) -> str:
    """The status JSON of `GET /v2/repository/models/{name}/rollout` as text."""
    sides = status.get("sides") or {}
    serving, candidate = sides.get("serving", {}), sides.get("candidate", {})
    live = "live_mae" if "live_mae" in serving else "live_accuracy"
    lines = [
        f"{status['model']} rollout {status['id']}: {status['state'].upper()}  "
        f"({status['mode']}, share {status['share']:g})",
        f"{'':<16}{'serving':>18}{'candidate':>18}",
        f"{'version':<16}{status['serving_version']:>18}{status['candidate_version']:>18}",
    ]
    rows = [("requests", "requests"), ("errors", "errors"), ("error rate", "error_rate"),
            ("p50 ms", "p50_ms"), ("p99 ms", "p99_ms"),
            ("live MAE" if live == "live_mae" else "live accuracy", live)]  # fmt: skip
    if live != "live_mae":
        rows.append(("mean confidence", "mean_confidence"))
    for title, key in rows:
        lines.append(f"{title:<16}{_cell(serving.get(key)):>18}{_cell(candidate.get(key)):>18}")
    lines.append(f"{'top prediction':<16}{_top(serving):>18}{_top(candidate):>18}")
    agreement = status.get("agreement")
    compared = (f"compared {status.get('compared', 0)}, agreement "
                f"{_cell(agreement)} ({status.get('agreed', 0)} agreed)")  # fmt: skip
    if status.get("mean_price_difference") is not None:
        compared += f", mean price difference {_cell(status['mean_price_difference'])}"
    lines.append(compared)
    lines.append(f"shadow rows dropped {status.get('shadow_dropped', 0)}, "
                 f"labelled {status.get('labelled', 0)}")  # fmt: skip
    gate = status.get("gate") or {}
    if gate:
        lines.append(f"gate: min_compared {gate.get('min_compared')}, min_agreement "
                     f"{gate.get('min_agreement')}, p99_ratio {gate.get('p99_ratio')}, "
                     f"error_margin {gate.get('error_margin')}")  # fmt: skip
    if status.get("reason"):
        lines.append(f"decision: {status['reason']}")
    return "\n".join(lines)


def _top(side: dict[str, Any]) -> str:
    """The side's most frequent prediction and its share, e.g. "positive 53%"."""
    top = side.get("top_prediction")
    return "-" if not top else f"{top[0]} {top[1]:.0%}"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
