"""Per-task translation between what clients send and the model's tensors, built from a manifest.

A codec turns served inputs (texts, pixel arrays, images, named or positional housing features)
into model rows with `service.model.preprocessing` (as `Encoded`: the rows, and what the input
signals need from the inputs themselves), and model outputs into task answers. Every route
family goes through the same codec, so a task's inputs mean the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from service.errors import ArtifactError, InvalidInputError
from service.model import artifacts, preprocessing
from service.model.artifacts import Manifest


class Encoded(NamedTuple):
    """A request's inputs as model rows, with what only the encoding can see about them."""

    rows: np.ndarray
    # Text: each text's share of out-of-vocabulary words, from its own tokenisation (the rows,
    # multi-hot, no longer tell). The input signals read it; None for other tasks.
    oov_ratios: np.ndarray | None = None
    # Text: the texts themselves, kept for feedback's examples when asked (feedback/recorder.py).
    texts: Sequence[str] | None = None


@dataclass(frozen=True)
class Limits:
    max_items: int
    max_text_chars: int
    max_image_pixels: int


class Codec:
    """Base: the served input/output names and the checks every task shares."""

    def __init__(self, manifest: Manifest, limits: Limits) -> None:
        self.manifest = manifest
        self.limits = limits
        self.input_spec = manifest.signature.inputs[0]
        self.output_spec = manifest.signature.outputs[0]
        self.input_size = manifest.signature.model_input.shape[-1]
        self.labels = manifest.labels

    def check_count(self, count: int) -> None:
        if count == 0:
            raise InvalidInputError("expected at least one input, got none")
        if count > self.limits.max_items:
            raise InvalidInputError(
                f"got {count} inputs in one request; at most {self.limits.max_items} are accepted"
            )

    def encode_tensor(self, values: Any) -> Encoded:
        """The signature's input tensor (numbers, or strings for BYTES) → model rows."""
        raise NotImplementedError

    def predictions(self, outputs: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
        """Model outputs → one task answer per input row."""
        raise NotImplementedError


class DigitsCodec(Codec):
    def encode_pixels(self, images: Sequence[Any]) -> Encoded:
        self.check_count(len(images))
        return Encoded(preprocessing.pictures_to_rows(images))

    def encode_image(self, data: bytes) -> Encoded:
        return Encoded(preprocessing.image_bytes_to_rows(data, self.limits.max_image_pixels))

    def encode_tensor(self, values: Any) -> Encoded:
        array = _numeric(values, "pixel values")
        if array.ndim == 1 or array.shape == (preprocessing.MNIST_SIDE, preprocessing.MNIST_SIDE):
            array = array.reshape(1, -1)
        rows = preprocessing.pixel_tensor_to_rows(array)
        self.check_count(len(rows))
        return Encoded(rows)

    def predictions(self, outputs: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
        return [
            {"digit": int(row.argmax()), "probabilities": [round(float(p), 6) for p in row]}
            for row in outputs
        ]


class TextCodec(Codec):
    def __init__(self, manifest: Manifest, limits: Limits, vocabulary: Mapping[str, int]) -> None:
        super().__init__(manifest, limits)
        self.vocabulary = vocabulary
        self.num_words = int(manifest.preprocessing["num_words"])

    def encode_texts(self, texts: Sequence[Any]) -> Encoded:
        self.check_count(len(texts))
        sequences = preprocessing.texts_to_sequences(
            texts, self.vocabulary, self.limits.max_text_chars
        )
        return Encoded(
            preprocessing.multi_hot(sequences, self.num_words),
            preprocessing.oov_ratios(sequences),
            texts,
        )

    def encode_tensor(self, values: Any) -> Encoded:
        if isinstance(values, np.ndarray):
            values = values.reshape(-1).tolist()
        if not isinstance(values, list):
            raise InvalidInputError("expected a list of texts")
        texts = [_text(value) for value in values]
        return self.encode_texts(texts)


class SentimentCodec(TextCodec):
    def predictions(self, outputs: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
        scores = outputs.reshape(-1)
        return [
            {"label": "positive" if score >= 0.5 else "negative", "score": round(float(score), 6)}
            for score in scores
        ]


class TopicsCodec(TextCodec):
    def predictions(self, outputs: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
        k = min(top_k or 3, outputs.shape[-1])
        labels = self.labels or [str(i) for i in range(outputs.shape[-1])]
        answers = []
        for row in outputs:
            best = np.argsort(-row, kind="stable")[:k]
            answers.append(
                {
                    "topics": [
                        {
                            "label": labels[i],
                            "index": int(i),
                            "probability": round(float(row[i]), 6),
                        }
                        for i in best
                    ]
                }
            )
        return answers


class HousingCodec(Codec):
    def __init__(self, manifest: Manifest, limits: Limits) -> None:
        super().__init__(manifest, limits)
        params = manifest.preprocessing
        self.feature_names: list[str] = list(params["feature_names"])
        self.mean = np.asarray(params["mean"], dtype=np.float64)
        self.std = np.asarray(params["std"], dtype=np.float64)

    def encode_records(self, records: Sequence[Any]) -> Encoded:
        self.check_count(len(records))
        values = preprocessing.housing_records_to_array(records, self.feature_names)
        return Encoded(preprocessing.standardize(values, self.mean, self.std))

    def encode_tensor(self, values: Any) -> Encoded:
        # housing_array_rows converts and checks itself, in float64 like the named-feature path.
        array = preprocessing.housing_array_rows(values, len(self.feature_names))
        self.check_count(len(array))
        return Encoded(preprocessing.standardize(array, self.mean, self.std))

    def predictions(self, outputs: np.ndarray, top_k: int | None = None) -> list[dict[str, Any]]:
        return [{"price": round(float(price), 4)} for price in outputs.reshape(-1)]


def build_codec(folder: Path, manifest: Manifest, limits: Limits) -> Codec:
    """The codec a version's manifest describes (reads the vocabulary for text models)."""
    kind = manifest.preprocessing.get("kind")
    expected_kind = {
        "digits": "image",
        "sentiment": "text",
        "topics": "text",
        "housing": "standardize",
    }[manifest.task]
    if kind != expected_kind:
        raise ArtifactError(
            f"{manifest.name}/{manifest.version}: task {manifest.task} needs {expected_kind} "
            f"preprocessing, the manifest says {kind!r}"
        )
    try:
        if manifest.task == "digits":
            return DigitsCodec(manifest, limits)
        if manifest.task == "housing":
            return HousingCodec(manifest, limits)
        vocabulary = artifacts.read_vocabulary(folder)
        if manifest.task == "sentiment":
            return SentimentCodec(manifest, limits, vocabulary)
        return TopicsCodec(manifest, limits, vocabulary)
    except (KeyError, TypeError, ValueError) as error:
        raise ArtifactError(
            f"{manifest.name}/{manifest.version}: preprocessing parameters are invalid: {error}"
        ) from None


def _numeric(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what} must be numbers in a rectangular array") from None
    return array  # range and finiteness are checked by the task's preprocessing


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError("text must be valid UTF-8") from None
    if isinstance(value, str):
        return value
    raise InvalidInputError(f"expected text as a string, got {type(value).__name__}")
