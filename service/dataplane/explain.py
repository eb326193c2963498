"""Explanations by occlusion: how much each word (or housing feature) moved a prediction.

Text: weight = score of the text as sent − score with every occurrence of the word removed,
where the score is P(positive) for sentiment and the top topic's probability for topics. On the
multi-hot vector, removing a word is zeroing its one column, so the variants are built directly
from the text's row. Housing: weight = price as sent − price with that feature at its training
mean (0 once standardised). Either way a positive weight pushed the score up.

A request's rows (each item's own row, then one variant per word or feature) go to the batcher
in one submit, so they run together in as few model calls as the batch cap allows; the cap on
rows (`Settings.max_explain_rows`) keeps one request from costing thousands of rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.dataplane.plane import DataPlane
from service.errors import InvalidInputError
from service.model import preprocessing
from service.model.codecs import Codec, Encoded, HousingCodec, TextCodec, TopicsCodec
from service.repository.repository import ServedVersion


@dataclass(frozen=True)
class Occlusion:
    """The rows to run for a request's explanations, and what each variant row leaves out."""

    rows: np.ndarray
    starts: list[int]  # where each item's own row is; its variants follow it
    names: list[list[str]]  # per item: the word or feature each variant row leaves out
    key: str  # "word" or "feature"


def text_occlusion(codec: TextCodec, texts: Sequence[Any], max_rows: int) -> Occlusion:
    """Each text's row followed by one row per distinct in-vocabulary word, that word removed."""
    base = codec.encode_texts(texts).rows  # validates count, type, length, emptiness
    words_per_text = [_known_words(text, codec) for text in texts]
    _check_cost(sum(len(words) + 1 for words in words_per_text), max_rows, "distinct known words")
    blocks, starts, names = [], [], []
    offset = 0
    for row, words in zip(base, words_per_text, strict=True):
        block = np.repeat(row[np.newaxis], len(words) + 1, axis=0)
        columns = np.fromiter(words.values(), dtype=np.int64, count=len(words))
        block[np.arange(1, len(words) + 1), columns] = 0.0
        blocks.append(block)
        starts.append(offset)
        names.append(list(words))
        offset += len(block)
    return Occlusion(np.concatenate(blocks), starts, names, "word")


def housing_occlusion(codec: HousingCodec, base: np.ndarray, max_rows: int) -> Occlusion:
    """Each house's standardised row followed by one row per feature, that feature at its mean."""
    features = len(codec.feature_names)
    _check_cost(len(base) * (features + 1), max_rows, "features")
    blocks = []
    for row in base:
        block = np.repeat(row[np.newaxis], features + 1, axis=0)
        block[np.arange(1, features + 1), np.arange(features)] = 0.0  # the training mean
        blocks.append(block)
    starts = [i * (features + 1) for i in range(len(base))]
    names = [list(codec.feature_names) for _ in range(len(base))]
    return Occlusion(np.concatenate(blocks), starts, names, "feature")


def explained_predictions(
    codec: Codec, occlusion: Occlusion, outputs: np.ndarray, top_k: int | None = None
) -> list[dict[str, Any]]:
    """Each item's usual prediction, plus "explanation": weights ordered by |weight|."""
    own = outputs[occlusion.starts]
    answers = codec.predictions(own, top_k=top_k)
    for answer, start, names, own_row in zip(
        answers, occlusion.starts, occlusion.names, own, strict=True
    ):
        # The score explained: a single output (P(positive), price), or the top topic.
        column = int(own_row.argmax()) if isinstance(codec, TopicsCodec) else 0
        scores = outputs[start : start + len(names) + 1, column].astype(np.float64)
        weights = scores[0] - scores[1:]
        order = np.argsort(-np.abs(weights), kind="stable")
        answer["explanation"] = [
            {occlusion.key: names[i], "weight": round(float(weights[i]), 6)} for i in order
        ]
    return answers


def _known_words(text: Any, codec: TextCodec) -> dict[str, int]:
    """The text's distinct in-vocabulary words (first spelling seen) → their model column."""
    columns: dict[int, str] = {}
    for word in preprocessing.tokenize(text):
        column = codec.vocabulary.get(word)
        if column is not None and column < codec.num_words and column not in columns:
            columns[column] = word
    return {word: column for column, word in columns.items()}


def _check_cost(rows: int, max_rows: int, what: str) -> None:
    if rows > max_rows:
        raise InvalidInputError(
            f"explaining this request needs {rows} model rows (one per input and one per "
            f"{what[:-1] if what.endswith('s') else what} of each); at most {max_rows} are "
            f"allowed: send shorter or fewer inputs, or leave 'explain' off"
        )


async def explain(
    plane: DataPlane,
    served: ServedVersion,
    occlude: Callable[[Codec, int], Occlusion],
    top_k: int | None = None,
) -> tuple[ServedVersion, list[dict[str, Any]]]:
    """Run a request's occlusion rows through `served`'s batcher in one submit; explain them.

    `served` comes from `plane.resolve`, with no `await` in between (as `DataPlane.run` asks).
    """
    # A cap above the queue bound could never be queued: it would answer 503 for ever.
    max_rows = min(plane.settings.max_explain_rows, plane.settings.max_queue_rows)
    made: list[Occlusion] = []

    def encode(codec: Codec) -> Encoded:
        made.append(occlude(codec, max_rows))
        return Encoded(made[0].rows)

    inference = await plane.run(served, encode, observe=False)
    return served, explained_predictions(served.codec, made[0], inference.outputs, top_k)
