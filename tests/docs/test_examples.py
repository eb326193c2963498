"""Every shell and Python example of README.md and docs/*.md, run against a live server.

One server (the suite's `server` fixture, on the committed models) answers every example, in the
order the pages give them. The examples are written for `localhost:8000` (HTTP) and
`localhost:8001` (gRPC), the defaults of `dlwp serve`; they are pointed at the test server's free
ports, and `dlwp predict` finds it through `DLWP_URL`. The convention: tests/docs/examples.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO
from tests.docs.examples import Example, examples, json_pattern, mismatch

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLES = [example for page in PAGES for example in examples(page)]
if TYPE_CHECKING:
    from tests.support.servers import ServerProcess

HTTP = re.compile(r"\b(?:localhost|127\.0\.0\.1):8000\b")
GRPC = re.compile(r"\b(?:localhost|127\.0\.0\.1):8001\b")


def pointed_at(code: str, server: ServerProcess) -> str:
    return GRPC.sub(server.grpc_target, HTTP.sub(f"127.0.0.1:{server.port}", code))


def run(example: Example, server: ServerProcess) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "DLWP_URL": server.url, "PATH": path}
    env.pop("DLWP_API_KEY", None)
    code = pointed_at(example.code, server)
    command = (
        [sys.executable, "-c", code]
        if example.lang == "python"
        else ["bash", "-c", "set -eo pipefail\n" + code]
    )
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_answers_as_printed(example: Example, server: ServerProcess) -> None:
    assert example.problem is None, f"{example.id}: {example.problem}"
    if example.skip:
        pytest.skip(f"{example.id}: {example.skip}")
    result = run(example, server)
    assert result.returncode == 0, (
        f"{example.id} exited {result.returncode}:\n{example.code}\n{result.stderr[-2000:]}"
    )
    if example.expected is not None:
        problem = mismatch(example.expected, result.stdout, example.expected_lang or "text")
        assert problem is None, f"{example.id}:\n{example.code}\n{problem}"


def test_the_readme_and_the_docs_have_examples_that_run() -> None:
    ran = [e for e in EXAMPLES if not e.skip]
    checked = [e for e in ran if e.expected is not None]
    assert len(ran) >= 20, [e.id for e in ran]
    assert len(checked) >= 15, [e.id for e in checked]


# ------------------------------------------------------------------------ the convention itself


def test_ellipsis_allows_more_members_and_items_but_labels_must_match() -> None:
    expected = '{"model": "imdb", "predictions": [{"label": "positive", "score": 0.73}, ...], ...}'
    close = (
        '{"model": "imdb", "version": 1, "predictions": [{"label": "positive", "score": 0.7269}]}'
    )
    wrong_label = '{"model": "imdb", "predictions": [{"label": "negative", "score": 0.7269}]}'

    assert mismatch(expected, close, "json") is None
    assert "negative" in (mismatch(expected, wrong_label, "json") or "")


def test_a_number_matches_within_one_unit_of_its_last_printed_digit() -> None:
    assert mismatch('{"price": 23.9}', '{"price": 23.9078}', "json") is None
    assert mismatch('{"price": 23.9}', '{"price": 24.1}', "json") is not None
    assert mismatch('{"version": 1}', '{"version": 2}', "json") is not None


def test_an_object_without_ellipsis_refuses_unexpected_members() -> None:
    assert mismatch('{"ready": true}', '{"ready": true, "extra": 1}', "json") is not None
    assert json_pattern('{"a": ...}') == [{"a": "\x00more:any"}]


def test_a_console_block_or_a_skip_without_reason_is_a_failing_example(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```console\n$ curl x\n```\n\n<!-- example: skip -->\n```bash\nmake\n```\n")

    problems = [example.problem for example in examples(page)]

    assert len(problems) == 2 and all(problems), problems


def test_text_output_matches_lines_with_ellipsis_and_numbers() -> None:
    expected = "...\ndlwp_requests_total{...} 3.0\n...\n"
    actual = '# HELP x\ndlwp_requests_total{code="200"} 3.0\nother 1\n'

    assert mismatch(expected, actual, "text") is None
    assert mismatch("[[0.626]]\n", "[[0.62591267]]\n", "text") is None
    assert mismatch("[[0.626]]\n", "[[0.7]]\n", "text") is not None
