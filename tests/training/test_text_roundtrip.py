"""Raw text through the serving path lands on the vectors the text models were trained on.

The test sets are decoded back to text with the word index, then sent through the same text
path the server uses; the committed model's accuracy must match its accuracy on the original
index sequences within half a point.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from service.model import artifacts, preprocessing
from training import datasets, features, loop
from training.pipeline import load_model
from training.recipes import get_recipe

from ..conftest import COMMITTED_MODELS, needs_datasets

pytestmark = needs_datasets


def _accuracy(name: str, model, x: np.ndarray, y: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    return loop.evaluate_arrays(model, get_recipe(name), x, y)["test_accuracy"]


@pytest.mark.parametrize("name", ["imdb", "reuters"])
def test_decoded_test_set_scores_as_the_original_sequences(name, data_dir):  # type: ignore[no-untyped-def]
    folder = artifacts.version_dir(COMMITTED_MODELS, name, 1)
    model = load_model(folder)
    vocabulary = artifacts.read_vocabulary(folder)
    dataset = datasets.load_dataset(name, data_dir)
    y = features.encode_labels(get_recipe(name).task, dataset.y_test)
    full_sequences, _ = datasets.load_full_sequences(name, data_dir)
    index_word = {
        rank + preprocessing.INDEX_FROM: word
        for word, rank in datasets.load_word_index(name, data_dir).items()
    }
    texts = [preprocessing.sequence_to_text(sequence, index_word) for sequence in full_sequences]

    from_text = preprocessing.texts_to_multi_hot(texts, vocabulary, 10_000)
    from_sequences = preprocessing.multi_hot(dataset.x_test, 10_000)

    text_accuracy = _accuracy(name, model, from_text, y)
    sequence_accuracy = _accuracy(name, model, from_sequences, y)
    print(f"{name}: accuracy {text_accuracy:.4f} from text, {sequence_accuracy:.4f} from sequences")
    assert abs(text_accuracy - sequence_accuracy) <= 0.005
    # Stronger than the accuracy: the vectors themselves agree for (nearly) every review.
    assert np.mean((from_text == from_sequences).all(axis=1)) > 0.99


def test_imdb_model_on_the_real_review_texts(data_dir, record_property):  # type: ignore[no-untyped-def]
    folder = artifacts.version_dir(COMMITTED_MODELS, "imdb", 1)
    with gzip.open(data_dir / "imdb_raw_test.jsonl.gz", "rt", encoding="utf-8") as lines:
        reviews = [json.loads(line) for line in lines]
    x = preprocessing.texts_to_multi_hot(
        [review["text"] for review in reviews], artifacts.read_vocabulary(folder), 10_000
    )
    y = np.array([review["label"] for review in reviews], dtype=np.float32)

    accuracy = _accuracy("imdb", load_model(folder), x, y)

    record_property("imdb_raw_text_accuracy", accuracy)
    print(f"IMDB accuracy on the raw review texts: {accuracy:.4f}")
    assert accuracy >= 0.875
