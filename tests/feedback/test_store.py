"""The feedback store's one interface, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.feedback.store import COLUMNS, Answer, FeedbackStore, open_store
from tests.support.servers import free_port


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on a temporary data folder, run as an unprivileged user."""
    binaries = _postgres_bin()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("psycopg is not installed: pip install 'dlwp-serving[postgres]'")
    user = "postgres" if os.getuid() == 0 else None  # initdb refuses to run as root
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
    folder = Path(tempfile.mkdtemp(prefix="dlwp-pg-"))
    data, port = folder / "data", free_port()
    if user is not None:
        shutil.chown(folder, user)

    def run(*command: str) -> None:
        prefix = ["runuser", "-u", user, "--"] if user is not None else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    run(str(binaries / "initdb"), "-D", str(data), "-U", "dlwp", "--auth=trust")
    run(str(binaries / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"), "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start")  # fmt: skip
    try:
        yield f"postgresql://dlwp@127.0.0.1:{port}/postgres"
    finally:
        run(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FeedbackStore]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    opened = open_store(url, tmp_path, max_answers=3, max_age_s=60)
    opened._execute("DELETE FROM dlwp_answers")  # a server shared by the module's tests
    opened._db.commit()
    yield opened
    opened.close()


def answer(
    request_id: str, created: float, rollout: str | None = "r1", said: str = "positive"
) -> list[object]:
    """A row as the recorder writes it (`COLUMNS`)."""
    answer = Answer(request_id, 0, "imdb", created, "serving", rollout, 1, said, 2, "negative",
                    '"a review"')  # fmt: skip
    return [getattr(answer, column) for column in COLUMNS]


def test_an_answer_is_found_labelled_once_and_scored_for_both_sides(store):
    store.record([answer("a", 100.0), answer("b", 100.0)])

    found = store.find("a", 0)
    first = store.label("a", 0, "negative")
    second = store.label("a", 0, "positive")

    assert found is not None and found.serving_answer == "positive" and found.label is None
    assert (first, second) == (True, False), "a label is given once"
    assert store.rollout_labels("r1") == [("positive", "negative", "negative")]
    assert store.labelled("imdb") == [('"a review"', "negative")]
    assert store.find("nope", 0) is None


def test_the_window_keeps_the_newest_unlabelled_answers_and_every_labelled_one(store):
    store.record([answer(f"old-{i}", 1.0) for i in range(2)])
    store.label("old-0", 0, "positive")
    store.record([answer(f"new-{i}", 50.0 + i) for i in range(5)])

    store.prune(now=62.0)  # max_age_s 60: the old ones expire; max_answers 3 unlabelled

    kept = {f"new-{i}" for i in range(5) if store.find(f"new-{i}", 0) is not None}
    assert kept == {"new-2", "new-3", "new-4"}
    assert store.find("old-1", 0) is None
    assert store.find("old-0", 0) is not None, "a labelled example outlives the window"


def test_a_request_id_answered_again_keeps_its_last_answer_whether_written_together_or_apart(store):
    store.record([answer("twice", 1.0), answer("twice", 2.0, said="negative")])
    together = store.find("twice", 0)
    store.label("twice", 0, "positive")
    store.record([answer("twice", 3.0)])
    apart = store.find("twice", 0)

    assert together is not None and (together.created, together.serving_answer) == (2.0, "negative")
    assert apart is not None and (apart.created, apart.serving_answer) == (3.0, "positive")
    assert apart.label is None, "a new answer under the same id waits for a label of its own"
    assert (together.candidate_version, together.input) == (2, '"a review"')
