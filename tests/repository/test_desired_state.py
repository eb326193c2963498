"""Desired state in one process: pins set through the API, restarts, artifact digests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from service.model import artifacts
from service.repository.desired_state import STATE_DIR_NAME

from ..conftest import COMMITTED_MODELS, add_version, make_client

HOUSE = [0.0063, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 396.9, 4.98]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with housing versions 1 and 2 (the same network twice)."""
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", tmp_path / "housing" / "1")
    add_version(tmp_path, "housing")
    return tmp_path


def served_version(client) -> int:  # type: ignore[no-untyped-def]
    response = client.post("/v1/models/housing:predict", json={"instances": [HOUSE]})
    assert response.status_code == 200, response.text
    return int(client.get("/v2/models/housing").json()["versions"][0])


@pytest.mark.parametrize("name", ["housing", "imdb", "mnist", "reuters"])
def test_committed_versions_record_the_sha256_of_every_file(name):
    folder = COMMITTED_MODELS / name / "1"
    manifest = artifacts.read_manifest(folder)

    assert manifest.sha256 == artifacts.file_digests(folder)
    assert set(manifest.sha256) == {p.name for p in folder.iterdir()} - {"manifest.json"}


def test_export_records_the_digests_of_what_it_wrote(repo):
    folder = repo / "housing" / "2"

    assert artifacts.read_manifest(folder).sha256 == artifacts.file_digests(folder)


def test_a_file_changed_after_export_is_a_failed_load_and_the_old_version_keeps_serving(tmp_path):
    shutil.copytree(COMMITTED_MODELS / "housing" / "1", tmp_path / "housing" / "1")
    with make_client(models_dir=tmp_path) as client:
        version = add_version(tmp_path, "housing")
        (tmp_path / "housing" / str(version) / "history.png").write_bytes(b"not the exported plot")

        load = client.post("/v2/repository/models/housing/load")
        row = next(r for r in client.get("/v2/repository/index").json() if r["version"] == "2")

        assert load.status_code == 400
        assert "history.png has sha256" in load.json()["error"]
        assert "version 1 keeps serving" in load.json()["error"]
        assert served_version(client) == 1
        assert row["state"] == "FAILED" and "changed after export" in row["reason"]


def test_a_pin_set_through_the_api_wins_over_the_environment_and_survives_a_restart(repo):
    with make_client(models_dir=repo, model_versions="housing=1") as client:
        assert served_version(client) == 1
        pin = client.post("/v2/repository/models/housing/load",
                          json={"parameters": {"version": "2"}})  # fmt: skip
        assert pin.status_code == 200 and pin.json()["version"] == "2"

    with make_client(models_dir=repo, model_versions="housing=1") as restarted:
        assert served_version(restarted) == 2
    desired = json.loads((repo / STATE_DIR_NAME / "desired.json").read_text())
    assert desired["models"]["housing"] == {"version": 2, "pin": 2}


def test_latest_follows_the_newest_version_despite_an_environment_pin(repo):
    with make_client(models_dir=repo, model_versions="housing=1") as client:
        latest = client.post("/v2/repository/models/housing/load",
                             json={"parameters": {"version": "latest"}})  # fmt: skip

        assert latest.status_code == 200 and latest.json()["version"] == "2"
        assert served_version(client) == 2


def test_an_unloaded_model_stays_unloaded_after_a_restart(repo):
    with make_client(models_dir=repo) as client:
        assert client.post("/v2/repository/models/housing/unload").status_code == 200

    with make_client(models_dir=repo) as restarted:
        gone = restarted.post("/v1/models/housing:predict", json={"instances": [HOUSE]})
        ready = restarted.get("/v2/health/ready")

        assert gone.status_code == 404 and "unloaded" in gone.json()["error"]
        assert ready.status_code == 200, "an unloaded model does not hold readiness back"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"parameters": {"version": "two"}}, 400, "positive integer"),
        ({"parameters": {"version": 1.5}}, 400, "version"),
        ({"parameters": {"version": True}}, 400, "version"),
        ({"parameters": ["version"]}, 400, "parameters"),
        ([1, 2], 400, "parameters"),
        (
            {"parameters": {"version": 7}},
            404,
            "pinned version 7 of 'housing' is not in the repository (versions: 1, 2)",
        ),
    ],
)
def test_a_wrong_version_parameter_is_refused_and_nothing_changes(repo, body, status, says):
    with make_client(models_dir=repo) as client:
        response = client.post("/v2/repository/models/housing/load", json=body)

        assert response.status_code == status and says in response.json()["error"]
        assert served_version(client) == 2


def test_repository_calls_for_an_unknown_model_are_404_and_write_nothing(repo):
    with make_client(models_dir=repo) as client:
        load = client.post("/v2/repository/models/..%2F..%2Fetc/load")
        unload = client.post("/v2/repository/models/nope/unload")

    assert load.status_code == 404 and unload.status_code == 404
    assert not (repo / STATE_DIR_NAME / "desired.json").exists()
