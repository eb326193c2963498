"""The committed version-1 models reach the book's results on the real test sets."""

from __future__ import annotations

import pytest

from training.pipeline import evaluate_version

from ..conftest import COMMITTED_MODELS, needs_datasets

pytestmark = needs_datasets


@pytest.mark.parametrize(
    ("name", "metric", "at_least"),
    [
        ("mnist", "test_accuracy", 0.975),
        ("imdb", "test_accuracy", 0.875),
        ("reuters", "test_accuracy", 0.77),
    ],
)
def test_committed_classifier_reaches_the_book(name, metric, at_least, data_dir):  # type: ignore[no-untyped-def]
    _, metrics = evaluate_version(COMMITTED_MODELS, name, 1, data_dir)

    assert metrics[metric] >= at_least


def test_committed_housing_model_reaches_the_book(data_dir):  # type: ignore[no-untyped-def]
    _, metrics = evaluate_version(COMMITTED_MODELS, "housing", 1, data_dir)

    assert metrics["test_mae"] <= 2.9
