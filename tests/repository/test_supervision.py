"""Background loops (following the desired state, polling for versions) never fail silently:
each failure is logged and counted, retried with back-off, and a loop that keeps failing turns
readiness to 503 until it succeeds again."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

from service.observability import metrics
from service.repository.supervision import Supervisor

from ..conftest import COMMITTED_MODELS, add_version, make_client


def _failures(loop: str) -> float:
    return metrics.BACKGROUND_FAILURES.labels(loop)._value.get()  # type: ignore[attr-defined,no-any-return]


def _exported_failures(exposition: str, loop: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "dlwp_background_failures_total" and sample.labels == {"loop": loop}:
                return sample.value
    return 0.0


def _wait_for(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_failing_loop_is_counted_retried_reported_and_recovers():
    seen: list[str | None] = []
    rounds = 0

    async def flaky() -> None:
        nonlocal rounds
        rounds += 1
        if rounds <= 4:
            raise OSError(f"disk trouble {rounds}")

    async def run() -> None:
        supervisor = Supervisor(unready_after=3)
        supervisor.start("test-flaky", flaky, interval_s=0.005)
        while rounds < 5:
            seen.append(supervisor.trouble)
            await asyncio.sleep(0.002)
        seen.append(supervisor.trouble)
        await supervisor.stop()

    before = _failures("test-flaky")
    asyncio.run(run())

    troubles = [t for t in seen if t]
    assert troubles and "test-flaky" in troubles[0] and "disk trouble" in troubles[0]
    assert seen[-1] is None, "one good round clears it"
    assert rounds == 5, "retried after every failure"
    assert _failures("test-flaky") == before + 4


class _Fatal(BaseException):
    """Not an Exception: what the loop does not catch, so the loop ends."""


def test_a_loop_that_died_is_reported():
    async def fatal() -> None:
        raise _Fatal("out of the loop")

    async def run() -> str | None:
        supervisor = Supervisor()
        supervisor.start("test-fatal", fatal, interval_s=0.001)
        await asyncio.sleep(0.05)
        trouble = supervisor.trouble
        await supervisor.stop()
        return trouble

    trouble = asyncio.run(run())

    assert trouble is not None and "test-fatal" in trouble and "stopped" in trouble


def test_an_unusable_state_folder_turns_readiness_to_503_until_it_is_usable_again(tmp_path):
    models, state = tmp_path / "models", tmp_path / "state"
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", models / "housing" / "1")
    with make_client(models_dir=models, state_dir=state) as client:
        assert client.get("/v2/health/ready").status_code == 200
        before = _exported_failures(client.get("/metrics").text, "sync")

        shutil.rmtree(state)
        state.write_text("a file where the state folder was\n")  # every read: OSError
        unready = _wait_for(lambda: client.get("/v2/health/ready").status_code == 503)
        answer = client.get("/v2/health/ready").json()
        after = _exported_failures(client.get("/metrics").text, "sync")

        state.unlink()  # usable again: the next round rebuilds it
        recovered = _wait_for(lambda: client.get("/v2/health/ready").status_code == 200)

        assert unready, "readiness stayed 200 with the state folder gone"
        assert "sync" in answer["error"] and "NotADirectoryError" in answer["error"]
        assert after >= before + 3
        assert recovered
        assert client.post("/v1/models/housing:predict",
                           json={"instances": [[0.0] * 13]}).status_code == 200  # fmt: skip
        # The worker announced itself again, so repository calls still converge.
        assert client.post("/v2/repository/models/housing/unload").status_code == 200
        assert client.post("/v2/repository/models/housing/load").status_code == 200


def test_a_failing_poll_is_counted_under_its_own_name(tmp_path):
    models, state = tmp_path / "models", tmp_path / "state"
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", models / "housing" / "1")
    with make_client(models_dir=models, state_dir=state, poll_seconds=0.05) as client:
        before = _failures("poll")
        shutil.rmtree(state)
        state.write_text("a file where the state folder was\n")
        add_version(models)  # the poll's load of version 2 cannot take the state lock

        counted = _wait_for(lambda: _failures("poll") > before)
        state.unlink()
        served = _wait_for(lambda: client.get("/v2/models/housing").json()["versions"] == ["2"])

        assert counted
        assert served, "the poll retried and loaded version 2 once the folder was back"
