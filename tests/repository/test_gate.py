"""The gate alone: when it decides, and which way, from the counts both sides produced."""

from __future__ import annotations

import pytest

from service.errors import BadRequestError
from service.repository.comparison import Labelled, RolloutStats, SideStats
from service.repository.gate import Gate, decide


def counts(compared: int, agreed: int, candidate_errors: int = 0, candidate_ms: float = 2.0,
           serving_ms: float = 2.0) -> RolloutStats:  # fmt: skip
    stats = RolloutStats()
    for _ in range(compared):
        stats.sides["serving"].observe(serving_ms / 1000)
        stats.sides["candidate"].observe(candidate_ms / 1000)
    stats.sides["candidate"].fail(candidate_errors)
    stats.compare(agreed, compared)
    return stats


def test_no_decision_before_the_minimum_of_compared_predictions():
    assert decide(Gate(), counts(199, 199), Labelled(), housing=False) is None


def test_a_candidate_that_agrees_and_keeps_up_is_promoted():
    verdict = decide(Gate(), counts(200, 196), Labelled(), housing=False)

    assert verdict is not None and verdict.decision == "promote"
    assert "agreement 0.980" in verdict.reason


def test_low_agreement_rolls_back_once_the_minimum_is_in():
    verdict = decide(Gate(), counts(200, 150), Labelled(), housing=False)

    assert verdict is not None and verdict.decision == "rollback"
    assert "agreement 0.750 < 0.9" in verdict.reason


def test_a_hard_error_limit_rolls_back_before_the_minimum():
    verdict = decide(Gate(), counts(60, 60, candidate_errors=30), Labelled(), housing=False)

    assert verdict is not None and verdict.decision == "rollback"
    assert verdict.reason.startswith("hard limit: candidate error rate")


def test_a_much_slower_candidate_breaks_the_hard_latency_limit_at_once():
    verdict = decide(Gate(), counts(200, 200, candidate_ms=20), Labelled(), housing=False)

    assert verdict is not None and verdict.reason.startswith("hard limit: candidate p99")


def test_a_manual_gate_never_decides():
    gate = Gate.from_overrides({"auto": 0})

    assert decide(gate, counts(1000, 0, candidate_errors=900), Labelled(), housing=False) is None


def test_a_slower_tail_is_confirmed_on_more_predictions_before_a_rollback():
    early = decide(Gate(), counts(200, 200, candidate_ms=9), Labelled(), housing=False)
    confirmed = decide(Gate(), counts(1000, 1000, candidate_ms=9), Labelled(), housing=False)

    assert early is None
    assert confirmed is not None and confirmed.decision == "rollback"
    assert "p99" in confirmed.reason


def test_enough_labels_can_promote_a_candidate_that_disagrees_by_being_right():
    labelled = Labelled(60, {"serving": 45, "candidate": 54}, {"serving": 0.0, "candidate": 0.0})

    verdict = decide(Gate(), counts(200, 160), labelled, housing=False)

    assert verdict is not None and verdict.decision == "promote"
    assert "live accuracy 0.900" in verdict.reason


def test_housing_is_judged_by_the_mean_price_difference():
    stats = counts(200, 0)
    stats.price_difference_sum = 200 * 3.0

    verdict = decide(Gate(), stats, Labelled(), housing=True)

    assert verdict is not None and verdict.decision == "rollback"
    assert "mean price difference 3.000 > 2.5" in verdict.reason


def test_latency_quantiles_add_up_across_workers():
    one, other = SideStats(), SideStats()
    for _ in range(99):
        one.observe(0.001)
    other.observe(0.5)
    one.add(other)

    assert one.quantile(0.5) == pytest.approx(0.001, rel=0.1)
    assert one.quantile(1.0) == pytest.approx(0.5, rel=0.1)


@pytest.mark.parametrize(
    "overrides",
    [{"min_compared": 1001}, {"min_compared": 0}, {"min_agreement": 1.2}, {"p99_ratio": "x"},
     {"min_labels": 2.5}, {"nonsense": 1}, [1, 2]],
)  # fmt: skip
def test_gate_overrides_are_checked(overrides):
    with pytest.raises(BadRequestError):
        Gate.from_overrides(overrides)
