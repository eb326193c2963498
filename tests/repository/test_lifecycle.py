"""Model lifecycle: new versions swap in without a failed request; bad versions never serve."""

from __future__ import annotations

import concurrent.futures
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from service.model import artifacts
from training.pipeline import train_and_export

from ..conftest import COMMITTED_MODELS, ServerProcess, add_version, make_client, needs_datasets

HOUSE = {"CRIM": 0.0063, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575,
         "AGE": 65.2, "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9,
         "LSTAT": 4.98}  # fmt: skip


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A model repository holding a copy of the committed housing version 1."""
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", tmp_path / "housing" / "1")
    return tmp_path


def _price_version(client) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/v1/housing", json={"features": HOUSE})
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


@needs_datasets
def test_hot_swap_under_load_fails_no_request(tmp_path, data_dir):
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", tmp_path / "housing" / "1")
    server = ServerProcess({"DLWP_MODELS_DIR": str(tmp_path)}).wait_ready()
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> list[int]:
        versions = []
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                response = http.post("/v1/housing", json={"features": HOUSE})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    versions.append(response.json()["version"])
        return versions

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            clients = [pool.submit(keep_asking) for _ in range(4)]
            trained = train_and_export("housing", models_dir=tmp_path, data_dir=data_dir,
                                       epochs=2, verbose=0)  # fmt: skip
            load = httpx.post(f"{server.url}/v2/repository/models/housing/load", timeout=60)
            time.sleep(0.5)
            stop.set()
            seen = [future.result() for future in clients]
    finally:
        stop.set()
        server.stop()

    assert trained.version == 2
    assert load.status_code == 200 and load.json()["version"] == "2"
    assert statuses and set(statuses) == {200}, "zero failed requests during the swap"
    for versions in seen:
        assert versions[0] == 1 and versions[-1] == 2
        assert versions == sorted(versions), "once on the new version, never back"


def test_polling_picks_up_a_new_version_but_never_a_temporary_folder(repo):
    (repo / "housing" / ".tmp-half-written").mkdir()
    (repo / "housing" / ".tmp-half-written" / "model.keras").write_bytes(b"partial")
    with make_client(models_dir=repo, poll_seconds=0.2) as client:
        assert _price_version(client) == 1
        add_version(repo)
        deadline = time.monotonic() + 20
        while _price_version(client) != 2 and time.monotonic() < deadline:
            time.sleep(0.1)

        assert _price_version(client) == 2
        index = client.post("/v2/repository/index").json()
        assert [(row["version"], row["state"]) for row in index] == [
            ("1", "UNAVAILABLE"),
            ("2", "READY"),
        ]


@pytest.mark.parametrize("corrupt", ["model", "manifest", "signature"])
def test_a_corrupt_version_leaves_the_old_one_serving(repo, corrupt):
    with make_client(models_dir=repo) as client:
        version = add_version(repo, corrupt=corrupt)

        load = client.post("/v2/repository/models/housing/load")

        assert load.status_code == 400
        assert "failed to load" in load.json()["error"]
        assert _price_version(client) == 1
        row = next(r for r in client.post("/v2/repository/index").json()
                   if r["version"] == str(version))  # fmt: skip
        assert row["state"] == "FAILED" and row["reason"]
        assert 'dlwp_model_load_failures_total{model="housing"}' in client.get("/metrics").text


def test_a_pinned_version_serves_and_other_versions_are_404(repo):
    add_version(repo)
    with make_client(models_dir=repo, model_versions="housing=1") as client:
        assert _price_version(client) == 1
        pinned = client.post("/v2/models/housing/versions/1/infer", json={"inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, 13],
             "data": list(HOUSE.values())}]})  # fmt: skip
        other = client.post("/v1/models/housing/versions/2:predict",
                            json={"instances": [list(HOUSE.values())]})  # fmt: skip
        missing = client.get("/v2/models/housing/versions/7")

    assert pinned.status_code == 200 and pinned.json()["model_version"] == "1"
    assert other.status_code == 404 and "exists but is not served" in other.json()["error"]
    assert missing.status_code == 404 and "does not exist" in missing.json()["error"]


def test_unload_then_predict_is_404_until_loaded_again(repo):
    with make_client(models_dir=repo) as client:
        assert client.post("/v2/repository/models/housing/unload").status_code == 200
        gone = client.post("/v1/housing", json={"features": HOUSE})
        reloaded = client.post("/v2/repository/models/housing/load")

        assert gone.status_code == 404 and "unloaded" in gone.json()["error"]
        assert reloaded.status_code == 200
        assert _price_version(client) == 1


def test_concurrent_load_and_unload_calls_leave_a_consistent_state(repo):
    add_version(repo)
    with make_client(models_dir=repo) as client:
        calls = ["load", "unload"] * 10
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(
                lambda verb: client.post(f"/v2/repository/models/housing/{verb}").status_code,
                calls))  # fmt: skip
        final = client.post("/v2/repository/models/housing/load")

        assert set(codes) == {200}
        assert final.status_code == 200 and final.json()["version"] == "2"
        assert _price_version(client) == 2
        states = [row["state"] for row in client.post("/v2/repository/index").json()]
        assert states.count("READY") == 1


def test_the_api_key_guards_load_and_unload_only(repo):
    with make_client(models_dir=repo, api_key="s3cret") as client:
        no_key = client.post("/v2/repository/models/housing/load")
        wrong = client.post("/v2/repository/models/housing/load",
                            headers={"Authorization": "Bearer nope"})  # fmt: skip
        right = client.post("/v2/repository/models/housing/load",
                            headers={"Authorization": "Bearer s3cret"})  # fmt: skip

        assert no_key.status_code == 401 and "Bearer" in no_key.json()["error"]
        assert wrong.status_code == 401
        assert right.status_code == 200
        assert _price_version(client) == 1, "prediction needs no key"
        assert client.get("/metrics").status_code == 200


def test_without_an_api_key_setting_no_key_is_needed(repo):
    with make_client(models_dir=repo) as client:
        assert client.post("/v2/repository/models/housing/load").status_code == 200


def test_versions_on_disk_are_listed_oldest_first(repo):
    add_version(repo)
    assert artifacts.list_versions(repo, "housing") == [1, 2]
