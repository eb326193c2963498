"""How long a stop may take, from the settings (the manifests are checked against it)."""

from __future__ import annotations

from service.process.budget import TEARDOWN_S, shutdown_budget
from service.settings import Settings


def test_a_stop_is_the_drain_then_http_and_grpc_finishing_side_by_side():
    budget = shutdown_budget(Settings(drain_seconds=10, request_timeout_s=10))

    assert budget.finish_s == 11, "every request meets its 10 s deadline, then its answer goes out"
    assert budget.grpc_grace_s == 11
    assert budget.total_s == 10 + 11 + TEARDOWN_S, "gRPC's grace runs beside HTTP's, not after"


def test_a_longer_request_deadline_lengthens_the_stop():
    short = shutdown_budget(Settings(request_timeout_s=10)).total_s
    long = shutdown_budget(Settings(request_timeout_s=25.5)).total_s

    assert long - short == 16
