"""Score models on an evaluation set the way the server would: each with its own preprocessing.

An evaluation set holds raw-ish rows (each text's words, normalised pictures, raw house
features) and the true label names (or prices). A candidate brings its own vocabulary, label
names and normalisation, so a model trained on a user's vocabulary or topics and the book's
model are measured on the same rows. Classes are compared by name: a topic a model does not
know counts as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.model import artifacts, preprocessing
from training.userdata.rows import RowsBuilder, TextRows, WordTable

CHUNK = 1024


@dataclass
class Candidate:
    """A model with everything needed to feed it: the new one, or a stored version."""

    title: str
    model: Any
    task: str
    preprocessing: dict[str, Any]
    vocabulary: dict[str, int] | None
    labels: list[str] | None
    version: int | None = None

    @classmethod
    def stored(cls, folder: Path) -> Candidate:
        import keras

        manifest = artifacts.read_manifest(folder)
        path = folder / artifacts.MODEL_FILE
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        vocabulary = (
            artifacts.read_vocabulary(folder) if manifest.preprocessing["kind"] == "text" else None
        )
        return cls(
            f"serving version {manifest.version}", model, manifest.task,
            manifest.preprocessing, vocabulary, manifest.labels, manifest.version,
        )  # fmt: skip


@dataclass
class EvalSet:
    """Rows to score and their truth: label names for classes, prices for housing."""

    title: str
    truth: np.ndarray
    text: TextRows | None = None  # word ids, numbered by `words`
    words: WordTable | None = None
    images: np.ndarray | None = None  # normalised (n, 784) model rows
    features: np.ndarray | None = None  # raw (n, 13) house features

    def __len__(self) -> int:
        return len(self.truth)


def text_set(title: str, texts: Sequence[str], truth: np.ndarray) -> EvalSet:
    """An evaluation set of raw texts, split by the serving tokenizer."""
    words = WordTable()
    rows = RowsBuilder()
    for text in texts:
        rows.append(words.row_ids(preprocessing.tokenize(text)))
    return EvalSet(title, truth, text=rows.build(), words=words)


def score(candidate: Candidate, rows: EvalSet) -> float:
    """Accuracy (share of rows whose predicted class name is the true one), or MAE for housing."""
    outputs = predict(candidate, rows)
    if candidate.task == "housing":
        return float(np.mean(np.abs(outputs.reshape(-1) - rows.truth.astype(np.float64))))
    names = np.asarray(class_names(candidate, outputs.shape[-1]))
    if outputs.shape[-1] == 1:
        predicted = names[(outputs.reshape(-1) >= 0.5).astype(np.int64)]
    else:
        predicted = names[outputs.argmax(axis=-1)]
    return float(np.mean(predicted == rows.truth))


def class_names(candidate: Candidate, width: int) -> list[str]:
    if candidate.labels:
        return list(candidate.labels)
    if candidate.task == "sentiment":
        return ["negative", "positive"]
    return [str(index) for index in range(width)]


def predict(candidate: Candidate, rows: EvalSet) -> np.ndarray:
    params = candidate.preprocessing
    if rows.text is not None and rows.words is not None:
        if candidate.vocabulary is None:
            raise ValueError(f"{candidate.title} has no vocabulary")
        text = rows.text.mapped(rows.words.lookup(candidate.vocabulary))
        num_words = int(params["num_words"])
        return _chunked(candidate.model, len(text), lambda r: text.multi_hot(r, num_words))
    if rows.images is not None:
        images = rows.images
        return _chunked(candidate.model, len(images), lambda r: images[r])
    if rows.features is None:
        raise ValueError(f"{rows.title} holds no rows")
    x = preprocessing.standardize(rows.features, params["mean"], params["std"])
    return _chunked(candidate.model, len(x), lambda r: x[r])


def _chunked(model: Any, count: int, batch: Any) -> np.ndarray:
    outputs = [
        np.asarray(model(batch(np.arange(start, min(start + CHUNK, count))), training=False))
        for start in range(0, count, CHUNK)
    ]
    return np.concatenate(outputs)
