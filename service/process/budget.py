"""How long a stop may take, from the signal to the exit, computed from the settings.

A stop is: the drain window (`DLWP_DRAIN_SECONDS`, readiness 503 while serving), then HTTP and
gRPC stop accepting together and finish what they accepted. Every request meets its own deadline
(`DLWP_REQUEST_TIMEOUT_S`, then 504), so finishing takes at most that plus a second for the
answer to go out; HTTP's and gRPC's finishing run side by side. Tearing down (closing the
batchers, the repository) takes well under `TEARDOWN_S`. Whoever stops the server must wait at
least `total_s` before killing it: Kubernetes' `terminationGracePeriodSeconds`, counted from
the start of a `preStop` hook, must exceed the hook plus `total_s`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.settings import Settings

# Seconds for the last answers to be written after their deadline, and for teardown.
ANSWER_S = 1
TEARDOWN_S = 2


@dataclass(frozen=True)
class ShutdownBudget:
    drain_s: float
    finish_s: int  # HTTP: uvicorn's timeout_graceful_shutdown (whole seconds)
    grpc_grace_s: float

    @property
    def total_s(self) -> float:
        """The longest a stop can take from SIGTERM to exit."""
        return self.drain_s + max(self.finish_s, self.grpc_grace_s) + TEARDOWN_S


def shutdown_budget(settings: Settings) -> ShutdownBudget:
    finish = math.ceil(settings.request_timeout_s) + ANSWER_S
    return ShutdownBudget(settings.drain_seconds, finish, float(finish))
