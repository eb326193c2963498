"""Dataset arrays → model tensors, through the serving preprocessing, plus the parameters to store.

The preprocessing parameters returned here go into the artifact's manifest; the server rebuilds
the same transformation from them, so what was trained on is what is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from service.model import preprocessing
from training.datasets import NUM_WORDS, Dataset
from training.recipes import Recipe


@dataclass
class Prepared:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    preprocessing: dict[str, Any]
    vocabulary: dict[str, int] | None = None


def text_preprocessing(num_words: int = NUM_WORDS) -> dict[str, Any]:
    return {
        "kind": "text",
        "num_words": num_words,
        "index_from": preprocessing.INDEX_FROM,
        "start_index": preprocessing.START_INDEX,
        "oov_index": preprocessing.OOV_INDEX,
        "tokenizer": {"lower": "ascii", "filters": preprocessing.TOKENIZER_FILTERS, "split": " "},
        "vocabulary_file": "vocabulary.json",
    }


def preprocessing_params(recipe: Recipe, dataset: Dataset) -> dict[str, Any]:
    """The parameters of the recipe's preprocessing, fitted on the training data where needed."""
    if recipe.task == "digits":
        return {"kind": "image", "side": preprocessing.MNIST_SIDE, "scale": 255.0}
    if recipe.task in ("sentiment", "topics"):
        return text_preprocessing(recipe.input_size)
    if recipe.task == "housing":
        # The book normalises with statistics of the training data only. A feature that never
        # varies in the training rows (possible in a user's few houses) carries nothing: dividing
        # by 1 keeps it at 0 rather than NaN.
        std = dataset.x_train.std(axis=0)
        return {
            "kind": "standardize",
            "feature_names": list(preprocessing.HOUSING_FEATURES),
            "mean": dataset.x_train.mean(axis=0).tolist(),
            "std": np.where(std > 0, std, 1.0).tolist(),
            # What the server counts as outside the training data (dlwp_input_out_of_range_total).
            "training_range": {
                "min": dataset.x_train.min(axis=0).tolist(),
                "max": dataset.x_train.max(axis=0).tolist(),
            },
        }
    raise ValueError(f"no preprocessing for task {recipe.task!r}")


def encode(params: dict[str, Any], x: Any) -> np.ndarray:
    """Dataset-form inputs (pixel arrays, index sequences, feature rows) → model tensors."""
    kind = params["kind"]
    if kind == "image":
        return preprocessing.pixel_batch_to_rows(x)
    if kind == "text":
        return preprocessing.multi_hot(x, params["num_words"])
    if kind == "standardize":
        return preprocessing.standardize(x, params["mean"], params["std"])
    raise ValueError(f"unknown preprocessing kind {kind!r}")


def encode_labels(task: str, y: np.ndarray) -> np.ndarray:
    return y.astype(np.float32 if task in ("sentiment", "housing") else np.int64)


def prepare(recipe: Recipe, dataset: Dataset) -> Prepared:
    """Encode a loaded dataset the way the recipe's model takes it."""
    params = preprocessing_params(recipe, dataset)
    vocabulary = None
    if params["kind"] == "text":
        if dataset.word_index is None:
            raise ValueError(f"dataset {dataset.name} has no word index")
        vocabulary = preprocessing.vocabulary_from_word_index(dataset.word_index, recipe.input_size)
    return Prepared(
        encode(params, dataset.x_train),
        encode_labels(recipe.task, dataset.y_train),
        encode(params, dataset.x_test),
        encode_labels(recipe.task, dataset.y_test),
        params,
        vocabulary,
    )
