"""`dlwp train NAME --data PATH`: add vs only, the evaluation and its decision, the manifest's
provenance, nothing published on bad data, and a user-trained version served as it is."""

from __future__ import annotations

import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from service.model import artifacts
from training.datasets import reuters_label_names, sha256_of
from training.retrain import Request, Scores, decide, retrain

from ..conftest import COMMITTED_MODELS, make_client, needs_datasets
from .test_cli import dlwp
from .test_user_data import FIXTURES, HEADER

FEATURES = HEADER.split(",")[:-1]
OWN_TOPICS = {
    "weather": "rain storm wind snow cloud forecast cold warm",
    "sport": "match goal team score league coach player season",
    "markets": "shares index stocks bonds traders rally dollar yields",
}
BOOK_TOPICS = {
    "earn": "shr cts net revs qtr profit dividend",
    "acq": "acquire merger stake takeover buy bid",
    "grain": "wheat corn tonnes harvest usda export",
}


def _wires(path: Path, topics: dict[str, str], per_topic: int = 20) -> Path:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(per_topic):
            for topic, words in topics.items():
                text = " ".join(rng.choices(words.split(), k=8))
                handle.write(json.dumps({"text": f"Reuters: {text}.", "topic": topic}) + "\n")
    return path


def _houses(path: Path, data_dir: Path, rows: int = 40) -> Path:
    with np.load(data_dir / "boston_housing.npz") as arrays:
        x, y = arrays["x"][-rows:], arrays["y"][-rows:]
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["price", *FEATURES])
        for features, price in zip(x, y, strict=True):
            writer.writerow([price, *features])
    return path


def _repository(tmp_path: Path, *names: str) -> Path:
    models = tmp_path / "models"
    for name in names:
        shutil.copytree(COMMITTED_MODELS / name / "1", models / name / "1")
    return models


def _versions(models: Path, name: str) -> list[str]:
    return sorted(path.name for path in (models / name).iterdir())


# ------------------------------------------------------------------------------ the decision


def test_promotion_needs_a_better_holdout_and_the_book_test_within_tolerance():
    better = Scores(100, 0.95, 0.80)
    kept = Scores(10_000, 0.974, 0.9777)  # 0.37 points lower: within the default 0.5
    dropped = Scores(10_000, 0.970, 0.9777)

    assert decide("accuracy", better, kept, True, serving_version=1)[0] is True
    assert decide("accuracy", better, dropped, True, serving_version=1)[0] is False
    assert decide("accuracy", Scores(100, 0.80, 0.80), kept, True)[0] is False
    assert decide("accuracy", better, dropped, True, tolerance=0.01)[0] is True


def test_promotion_on_mae_wants_lower_within_0_2():
    holdout = Scores(20, 2.1, 2.6)

    assert decide("mae", holdout, Scores(102, 2.60, 2.43), True)[0] is True
    assert decide("mae", holdout, Scores(102, 2.70, 2.43), True)[0] is False


def test_the_decision_says_why_with_its_figures():
    publish, reason = decide(
        "accuracy", Scores(100, 0.95, 0.80), Scores(10_000, 0.97, 0.9777), True, None, 1
    )

    assert publish is False
    assert reason.startswith("not published: accuracy on the holdout 0.9500 beats version 1's")
    assert "0.9700 is past the tolerance (≥ 0.9727: version 1's 0.9777 − 0.0050)" in reason


def test_without_promote_if_better_a_version_is_always_published():
    assert decide("mae", Scores(20, 9.0, 2.0), Scores(102, 9.0, 2.4), False)[0] is True


def test_with_nothing_serving_there_is_nothing_to_beat():
    publish, reason = decide("mae", Scores(20, 3.0, None), Scores(102, 3.0, None), True)

    assert publish is True and "no version is serving" in reason


# ------------------------------------------------------------------------------ training


@needs_datasets
def test_houses_added_to_the_book_publish_a_version_with_their_provenance(tmp_path, data_dir):
    models = _repository(tmp_path, "housing")
    houses = _houses(tmp_path / "houses.csv", data_dir)

    outcome = retrain(Request("housing", houses, models, epochs=3, data_dir=data_dir, verbose=0))

    assert outcome.version == 2 and _versions(models, "housing") == ["1", "2"]
    manifest = artifacts.read_manifest(models / "housing" / "2")
    user = manifest.dataset["user_data"]
    assert user["sha256"] == sha256_of(houses)
    assert (user["rows"], user["train_rows"], user["holdout_rows"]) == (40, 32, 8)
    assert (user["mode"], user["holdout"], user["seed"]) == ("add", 0.2, 0)
    assert user["repeat"] == 4  # 32 rows beside 404 book houses make about a fifth of an epoch
    assert manifest.dataset["train_size"] == 404 + 32
    assert set(manifest.metrics) == {"test_mae", "holdout_mae"}
    evaluation = manifest.model_extra["evaluation"]  # type: ignore[index]
    assert evaluation["holdout"]["rows"] == 8 and evaluation["test"]["rows"] == 102
    assert evaluation["serving_version"] == 1 and evaluation["test"]["serving"] > 0
    # Normalisation recomputed from the training rows (the book's and the user's).
    v1 = artifacts.read_manifest(models / "housing" / "1").preprocessing["mean"]
    assert manifest.preprocessing["mean"] != v1


@needs_datasets
def test_only_mode_serves_the_users_own_topics_with_no_code_change(tmp_path, data_dir):
    models = _repository(tmp_path, "reuters")
    wires = _wires(tmp_path / "wires.jsonl", OWN_TOPICS)

    outcome = retrain(
        Request("reuters", wires, models, mode="only", epochs=8, data_dir=data_dir, verbose=0)
    )
    with make_client(models_dir=models) as client:
        answer = client.post(
            "/v1/topics", json={"text": "Heavy rain and a cold wind: the storm forecast."}
        ).json()
        metadata = client.get("/v2/models/reuters").json()

    folder = models / "reuters" / "2"
    manifest = artifacts.read_manifest(folder)
    assert manifest.labels == ["markets", "sport", "weather"]
    assert manifest.signature.outputs[0].shape == [-1, 3]
    assert manifest.dataset["user_data"]["vocabulary"] == "user"
    assert manifest.dataset["user_data"]["rows_per_label"] == dict.fromkeys(OWN_TOPICS, 20)
    assert "forecast" in artifacts.read_vocabulary(folder)
    assert outcome.holdout.new == 1.0, "three topics with their own words are told apart"
    assert outcome.holdout.serving == 0.0, "the book's model knows none of these topics"
    assert answer["version"] == 2
    assert answer["predictions"][0]["topics"][0]["label"] == "weather"
    assert metadata["parameters"]["labels"] == ["markets", "sport", "weather"]


@needs_datasets
def test_add_mode_keeps_the_book_vocabulary_and_its_46_topics(tmp_path, data_dir):
    models = _repository(tmp_path, "reuters")
    wires = _wires(tmp_path / "wires.jsonl", BOOK_TOPICS, per_topic=10)

    retrain(Request("reuters", wires, models, epochs=1, data_dir=data_dir, verbose=0))

    folder = models / "reuters" / "2"
    manifest = artifacts.read_manifest(folder)
    assert manifest.labels == reuters_label_names()
    assert artifacts.read_vocabulary(folder) == artifacts.read_vocabulary(models / "reuters" / "1")
    assert manifest.dataset["user_data"]["vocabulary"] == "book"
    assert manifest.dataset["train_size"] == 8982 + 24


@needs_datasets
def test_a_folder_of_digit_pictures_trains_and_is_served_from_png(tmp_path, data_dir):
    models = _repository(tmp_path, "mnist")
    digits = FIXTURES / "digits"

    retrain(Request("mnist", digits, models, mode="only", epochs=2, data_dir=data_dir, verbose=0))
    with make_client(models_dir=models) as client:
        picture = next((digits / "3").iterdir()).read_bytes()
        answer = client.post("/v1/digits", content=picture, headers={"content-type": "image/png"})

    user = artifacts.read_manifest(models / "mnist" / "2").dataset["user_data"]
    assert (user["format"], user["files"], user["rows"]) == ("folder", 20, 20)
    assert user["rows_per_label"] == {str(digit): 2 for digit in range(10)}
    assert answer.status_code == 200 and answer.json()["version"] == 2


# ------------------------------------------------------------------------------ the command


@needs_datasets
def test_promote_if_better_keeps_a_worse_model_out_and_prints_the_table(tmp_path, data_dir):
    models = _repository(tmp_path, "housing")
    houses = _houses(tmp_path / "houses.csv", data_dir)

    result = dlwp("train", "housing", "--data", str(houses), "--data-mode", "only", "--epochs",
                  "1", "--quiet", "--promote-if-better", "--models-dir", str(models),
                  "--data-dir", str(data_dir))  # fmt: skip

    assert result.returncode == 0, result.stderr[-2000:]
    assert "user holdout (8 rows)" in result.stdout and "book test set (102 rows)" in result.stdout
    assert "serving version 1" in result.stdout
    assert "not published: mae on the holdout" in result.stdout
    assert _versions(models, "housing") == ["1"]


def test_bad_data_exits_non_zero_naming_the_line_and_publishes_nothing(tmp_path):
    models = _repository(tmp_path, "imdb")
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text,label\ngreat film,positive\nawful,terrible\n")

    result = dlwp("train", "imdb", "--data", str(reviews), "--models-dir", str(models))

    assert result.returncode == 2
    assert f"{reviews}:3: column 'label': unknown label 'terrible'" in result.stderr
    assert "nothing was trained or published" in result.stderr
    assert _versions(models, "imdb") == ["1"], "no version folder, not even a temporary one"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["imdb", "--dat", "x.jsonl"], "unrecognized arguments: --dat"),
        (["imdb", "--data-d", "x"], "unrecognized arguments: --data-d"),
        (["all", "--data", "x.jsonl"], "--data trains one model"),
        (["imdb", "--holdout", "0.3"], "--holdout goes with --data PATH"),
    ],
)
def test_options_are_never_abbreviated_or_misapplied(args, message):
    result = dlwp("train", *args)

    assert result.returncode == 2 and message in result.stderr


def test_help_shows_a_three_line_example_of_each_format():
    result = dlwp("train", "--help")

    assert '{"text": "A superb, moving film.", "label": "positive"}' in result.stdout
    assert '"topic": "earn"}' in result.stdout
    assert "CRIM,ZN,INDUS,CHAS,NOX,RM,AGE,DIS,RAD,TAX,PTRATIO,B,LSTAT,MEDV" in result.stdout
    assert "digits/0/a.png" in result.stdout
