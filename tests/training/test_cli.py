"""The `dlwp` command line: train and roll out, promote only if better, evaluate, list, predict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx

from ..conftest import COMMITTED_MODELS, REPO, ServerProcess, needs_datasets

HOUSE = ["CRIM=0.0063", "ZN=18", "INDUS=2.31", "CHAS=0", "NOX=0.538", "RM=6.575", "AGE=65.2",
         "DIS=4.09", "RAD=1", "TAX=296", "PTRATIO=15.3", "B=396.9", "LSTAT=4.98"]  # fmt: skip


def dlwp(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=600, input=stdin,
    )  # fmt: skip


@needs_datasets
def test_train_with_serve_url_ends_with_the_server_on_the_new_version(tmp_path, data_dir):
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", tmp_path / "housing" / "1")
    server = ServerProcess({"DLWP_MODELS_DIR": str(tmp_path)}).wait_ready()
    try:
        result = dlwp("train", "housing", "--epochs", "1", "--quiet", "--models-dir", str(tmp_path),
                      "--data-dir", str(data_dir), "--serve-url", server.url)  # fmt: skip
        answer = httpx.post(f"{server.url}/v1/housing", json={"features": {
            k: float(v) for k, v in (pair.split("=") for pair in HOUSE)}}).json()  # fmt: skip
    finally:
        server.stop()

    assert result.returncode == 0, result.stderr[-2000:]
    assert "now serves version 2" in result.stdout
    assert answer["version"] == 2


@needs_datasets
def test_promote_if_better_keeps_a_worse_model_out(tmp_path, data_dir):
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", tmp_path / "housing" / "1")

    result = dlwp("train", "housing", "--epochs", "1", "--quiet", "--promote-if-better",
                  "--models-dir", str(tmp_path), "--data-dir", str(data_dir))  # fmt: skip

    assert result.returncode == 0, result.stderr[-2000:]
    assert "not exported" in result.stdout
    assert sorted(p.name for p in (tmp_path / "housing").iterdir()) == ["1"]


@needs_datasets
def test_evaluate_json_prints_one_object_per_model(data_dir):
    result = dlwp("evaluate", "housing", "--json", "--data-dir", str(data_dir))

    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["model"] == "housing" and line["version"] == 1
    assert 2.0 < line["metrics"]["mae"] < 2.9


def test_models_lists_every_version_with_its_metrics():
    result = dlwp("models", "--json")

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {row["model"] for row in rows} == {"housing", "imdb", "mnist", "reuters"}
    assert all("metrics" in row for row in rows)


def test_predict_asks_a_running_server(server):
    sentiment = dlwp("predict", "sentiment", "--url", server.url, "A superb, moving film.")
    topics = dlwp("predict", "topics", "--url", server.url, stdin="Shr 45 cts vs 38 cts net")
    housing = dlwp("predict", "housing", "--url", server.url, *HOUSE)

    assert json.loads(sentiment.stdout)["predictions"][0]["label"] == "positive"
    assert json.loads(topics.stdout)["predictions"][0]["topics"][0]["label"] == "earn"
    assert json.loads(housing.stdout)["predictions"][0]["price"] > 0


def test_predict_reports_a_server_error_clearly(server):
    result = dlwp("predict", "housing", "--url", server.url, "CRIM=1")

    assert result.returncode == 2
    assert "missing ZN" in result.stderr
