"""Raw inputs → model tensors: the one implementation shared by training, evaluation and serving.

Every function here is pure numpy/Pillow (no TensorFlow), so the request path stays light, and
every parameter it needs comes from an artifact's manifest, so a new version needs no code change.
Bad input raises `InvalidInputError` with a message that says what is accepted.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.errors import InvalidInputError

# The Keras dataset conventions for text (keras.datasets.imdb/reuters.load_data defaults).
PADDING_INDEX = 0
START_INDEX = 1
OOV_INDEX = 2
INDEX_FROM = 3

# The Keras (0.x) Tokenizer the datasets were built with: ASCII lower-casing, these characters
# replaced by a space, split on single spaces. Reproducing it exactly is what makes raw text
# land on the same vector the model was trained on.
TOKENIZER_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
_TOKENIZER_TABLE = str.maketrans(
    {**dict.fromkeys(TOKENIZER_FILTERS, " "), **{chr(c): chr(c + 32) for c in range(65, 91)}}
)

MNIST_SIDE = 28
MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE
# MNIST digits were size-normalised into a 20×20 box, then centred by mass in 28×28: every
# MNIST digit's ink box has 20 as its longer side, and its centre of mass lies within half a
# pixel of (14, 14) in pixel indices.
_MNIST_BOX = 20
_MNIST_CENTRE = 14.0
# Ink is what is brighter than this share of the brightest pixel (after taking off the paper).
_INK_SHARE = 0.1
_EDGE = 2
MAX_IMAGE_PIXELS = 16_000_000

HOUSING_FEATURES = (
    "CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT",
)  # fmt: skip


# ---------------------------------------------------------------------------------------- text


def tokenize(text: str) -> list[str]:
    """Split text exactly as the Keras datasets' tokenizer did (HTML tags and all)."""
    return [word for word in text.translate(_TOKENIZER_TABLE).split(" ") if word]


def vocabulary_from_word_index(word_index: Mapping[str, int], num_words: int) -> dict[str, int]:
    """The word → model index table a text model uses: ranks offset by 3, below `num_words`."""
    return {
        word: rank + INDEX_FROM
        for word, rank in word_index.items()
        if rank + INDEX_FROM < num_words
    }


def text_to_sequence(text: str, vocabulary: Mapping[str, int]) -> list[int]:
    """Text → the dataset's index sequence: start mark, then each word's index or the OOV index."""
    if not isinstance(text, str):
        raise InvalidInputError(f"expected text as a string, got {type(text).__name__}")
    words = tokenize(text)
    if not words:
        raise InvalidInputError("text is empty: expected at least one word")
    return [START_INDEX, *(vocabulary.get(word, OOV_INDEX) for word in words)]


def multi_hot(sequences: Iterable[Sequence[int]], num_words: int) -> np.ndarray:
    """Index sequences → float32 rows with a 1 at every index present (the book's vectorizer)."""
    sequences = list(sequences)
    rows = np.zeros((len(sequences), num_words), dtype=np.float32)
    for row, sequence in zip(rows, sequences, strict=True):
        indices = np.asarray(sequence, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= num_words):
            raise InvalidInputError(
                f"word indices must lie in [0, {num_words}), got {indices.max()}"
            )
        row[indices] = 1.0
    return rows


def texts_to_sequences(
    texts: Sequence[str], vocabulary: Mapping[str, int], max_chars: int | None = None
) -> list[list[int]]:
    """Raw texts → their index sequences, each text checked (type, length, at least one word)."""
    if isinstance(texts, str):
        raise InvalidInputError("expected a list of texts, got a single string")
    if len(texts) == 0:
        raise InvalidInputError("expected at least one text, got an empty list")
    if max_chars is not None:
        for position, text in enumerate(texts):
            if isinstance(text, str) and len(text) > max_chars:
                raise InvalidInputError(
                    f"text {position} has {len(text)} characters; at most {max_chars} are accepted"
                )
    return [text_to_sequence(text, vocabulary) for text in texts]


def texts_to_multi_hot(
    texts: Sequence[str],
    vocabulary: Mapping[str, int],
    num_words: int,
    max_chars: int | None = None,
) -> np.ndarray:
    """Raw texts → the multi-hot rows the text models take."""
    return multi_hot(texts_to_sequences(texts, vocabulary, max_chars), num_words)


def oov_ratios(sequences: Sequence[list[int]]) -> np.ndarray:
    """Each `text_to_sequence` result's share of words outside the vocabulary (start mark aside)."""
    return np.array(
        [sequence.count(OOV_INDEX) / max(len(sequence) - 1, 1) for sequence in sequences],
        dtype=np.float64,
    )


def sequence_to_text(sequence: Sequence[int], index_word: Mapping[int, str]) -> str:
    """Index sequence → text without start, padding and OOV marks (inverse of the text path)."""
    return " ".join(index_word[i] for i in sequence if i >= INDEX_FROM and i in index_word)


# ---------------------------------------------------------------------------------------- images


def pixels_to_rows(pixels: Any) -> np.ndarray:
    """One 28×28 (or flat 784) picture of 0–255 grey values → a (1, 784) MNIST-normalised row."""
    return pictures_to_rows([pixels])


def pictures_to_rows(pictures: Sequence[Any]) -> np.ndarray:
    """28×28 (or flat 784) pictures of 0–255 grey values → (n, 784) MNIST-normalised rows, all
    normalised in one `pixel_batch_to_rows` pass."""
    if not pictures:
        raise InvalidInputError("expected at least one picture")
    return pixel_batch_to_rows(np.stack([_picture(pixels) for pixels in pictures]))


def _picture(pixels: Any) -> np.ndarray:
    """One picture's grey values as a flat (784,) array; what is wrong with it otherwise."""
    try:
        array = np.asarray(pixels, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(
            "pixels must be numbers: expected 784 grey values (0–255) or a 28×28 array"
        ) from error
    if array.shape not in ((MNIST_SIDE, MNIST_SIDE), (MNIST_PIXELS,)):
        raise InvalidInputError(
            f"expected 784 pixel values or a 28×28 array, got shape {list(array.shape)}"
        )
    return array.reshape(MNIST_PIXELS)


def pixel_tensor_to_rows(batch: np.ndarray) -> np.ndarray:
    """The model's input tensor as the tensor protocols send it (V2, TF Serving): (n, 784) or
    (n, 28, 28) grey values 0–255 of fields already in MNIST's form → (n, 784) rows in [0, 1].

    Scaled only: a tensor is the model's input, as in every serving system; pictures of any
    other form go to the task endpoint, which normalises them (`pixel_batch_to_rows`).
    """
    batch = _pixel_batch(batch)
    _check_range(batch)
    return batch / np.float32(255.0)


def pixel_batch_to_rows(batch: np.ndarray) -> np.ndarray:
    """(n, 784) or (n, 28, 28) pictures of 0–255 grey values → (n, 784) float32 rows in [0, 1],
    each normalised like MNIST (`normalise_digit`)."""
    batch = _pixel_batch(batch)
    _check_range(batch)
    fields = batch.reshape(len(batch), MNIST_SIDE, MNIST_SIDE)
    # Most pictures sent as pixels already are MNIST fields (the test set, clients that made
    # them like MNIST): `normalise_digit` would only rescale their brightness, so they skip it.
    ready, peaks = _in_mnist_form(fields)
    rows = np.empty((len(batch), MNIST_PIXELS), dtype=np.float32)
    # The same float32 arithmetic as `normalise_digit`, so both ways give the same bits.
    brighten = (255.0 / np.where(ready, peaks, 1.0).astype(np.float64)).astype(np.float32)
    rows[ready] = (batch[ready] * brighten[ready, None]) / np.float32(255.0)
    for index in np.flatnonzero(~ready):
        rows[index] = normalise_digit(fields[index]).reshape(MNIST_PIXELS) / np.float32(255.0)
    return rows


def _in_mnist_form(fields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which (n, 28, 28) pictures `normalise_digit` returns as they are, up to brightness, and
    each picture's brightest value: all in one pass of array operations, no per-picture loop.

    Such a picture has a clear border (so nothing is inverted or taken off as paper), ink whose
    faint edge stays within `_EDGE` pixels of its box (so nothing is cropped away), a box whose
    longer side is 20 (no resize), and a centre of mass that already rounds to the place
    `normalise_digit` would put it (a tie is left to `normalise_digit`).
    """
    peaks = fields.max(axis=(1, 2))
    border_clear = ~(
        fields[:, (0, -1), :].any(axis=(1, 2)) | fields[:, :, (0, -1)].any(axis=(1, 2))
    )
    lit = fields > 0
    ink = fields > (_INK_SHARE * peaks)[:, None, None]
    lit_top, lit_bottom = _first_and_last(lit.any(axis=2))
    lit_left, lit_right = _first_and_last(lit.any(axis=1))
    ink_top, ink_bottom = _first_and_last(ink.any(axis=2))
    ink_left, ink_right = _first_and_last(ink.any(axis=1))
    within_edge = (
        (lit_top >= ink_top - _EDGE) & (lit_bottom <= ink_bottom + _EDGE)
        & (lit_left >= ink_left - _EDGE) & (lit_right <= ink_right + _EDGE)
    )  # fmt: skip
    boxed = np.maximum(lit_bottom - lit_top, lit_right - lit_left) + 1 == _MNIST_BOX
    totals = np.where(peaks > 0, fields.sum(axis=(1, 2)), 1.0)
    steps = np.arange(MNIST_SIDE, dtype=np.float32)
    shift_down = _MNIST_CENTRE - (fields.sum(axis=2) @ steps / totals - lit_top)
    shift_right = _MNIST_CENTRE - (fields.sum(axis=1) @ steps / totals - lit_left)
    placed = (np.rint(shift_down) == lit_top) & (np.rint(shift_right) == lit_left)
    no_tie = (np.abs(shift_down % 1 - 0.5) > 1e-3) & (np.abs(shift_right % 1 - 0.5) > 1e-3)
    ready = (peaks > 0) & border_clear & within_edge & boxed & placed & no_tie
    return ready, peaks


def _first_and_last(any_along: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a (n, k) boolean array, the first and last True index (0 and k-1 if none)."""
    any_along = np.asarray(any_along)
    size = any_along.shape[1]
    return any_along.argmax(axis=1), size - 1 - any_along[:, ::-1].argmax(axis=1)


def _pixel_batch(batch: np.ndarray) -> np.ndarray:
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim == 3 and batch.shape[1:] == (MNIST_SIDE, MNIST_SIDE):
        batch = batch.reshape(len(batch), MNIST_PIXELS)
    if batch.ndim != 2 or batch.shape[1] != MNIST_PIXELS or len(batch) == 0:
        raise InvalidInputError(
            f"expected n×784 pixel values or n×28×28 arrays, got shape {list(batch.shape)}"
        )
    return batch


def _check_range(array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise InvalidInputError(
            "pixel values must be finite numbers in 0–255 (got NaN or infinity)"
        )
    if array.min() < 0 or array.max() > 255:
        raise InvalidInputError(
            f"pixel values must lie in 0–255, got values from {array.min():g} to {array.max():g}"
        )


def image_bytes_to_rows(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """A PNG/JPEG (or other Pillow-readable) image, any size → one MNIST-normalised (1, 784) row."""
    if not data:
        raise InvalidInputError("the image is empty: expected PNG or JPEG bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"image is {width}×{height}; at most {max_pixels} pixels are accepted"
                )
            image.draft("L", (width, height))
            grey = np.asarray(image.convert("L"), dtype=np.float32)
    except InvalidInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise InvalidInputError("could not decode the image: expected PNG or JPEG bytes") from error
    return normalise_digit(grey).reshape(1, MNIST_PIXELS) / np.float32(255.0)


def normalise_digit(grey: np.ndarray) -> np.ndarray:
    """A 2-D grey picture (0–255, any size, either polarity) → a 28×28 field made like MNIST's.

    Dark ink on light paper is inverted to MNIST's light on dark and the paper's grey taken off;
    the ink's bounding box is scaled, keeping its aspect, so its longer side is 20 pixels, and
    placed so its centre of mass lands on MNIST's centre (14, 14). An MNIST digit already is
    such a field and comes back unchanged (up to stretching its brightest pixel to 255).
    """
    if grey.ndim != 2 or min(grey.shape) < 1:
        raise InvalidInputError(f"expected a 2-D grey image, got shape {list(grey.shape)}")
    grey = grey.astype(np.float32)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if float(border.mean()) > 127:
        grey, border = 255.0 - grey, 255.0 - border
    grey = np.clip(grey - float(np.median(border)), 0.0, None)
    field = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float32)
    peak = float(grey.max())
    if peak <= 0:
        return field
    top, bottom, left, right = _box(grey > _INK_SHARE * peak)
    # Faint edge pixels next to the ink belong to it (MNIST's own anti-aliasing does).
    top, left = max(top - _EDGE, 0), max(left - _EDGE, 0)
    window = grey[top : bottom + _EDGE + 1, left : right + _EDGE + 1]
    inner_top, inner_bottom, inner_left, inner_right = _box(window > 0)
    crop = window[inner_top : inner_bottom + 1, inner_left : inner_right + 1] * (255.0 / peak)
    if max(crop.shape) != _MNIST_BOX:
        scale = _MNIST_BOX / max(crop.shape)
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        resized = Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS)
        crop = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 255.0)
    height, width = crop.shape
    total = float(crop.sum())
    top = round(_MNIST_CENTRE - float(crop.sum(axis=1) @ np.arange(height)) / total)
    left = round(_MNIST_CENTRE - float(crop.sum(axis=0) @ np.arange(width)) / total)
    top = min(max(top, 0), MNIST_SIDE - height)
    left = min(max(left, 0), MNIST_SIDE - width)
    field[top : top + height, left : left + width] = crop
    return field


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the True pixels, inclusive."""
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


# ---------------------------------------------------------------------------------------- housing


def standardize(features: Any, mean: Any, std: Any) -> np.ndarray:
    """Feature rows → (x − training mean) / training std, as float32."""
    centred = np.asarray(features, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    return (centred / np.asarray(std, dtype=np.float64)).astype(np.float32)


def housing_records_to_array(
    records: Sequence[Mapping[str, Any]], feature_names: Sequence[str] = HOUSING_FEATURES
) -> np.ndarray:
    """Named feature records → an (n, 13) float64 array, every feature present and finite."""
    if len(records) == 0:
        raise InvalidInputError("expected at least one set of housing features, got none")
    expected = ", ".join(feature_names)
    array = np.empty((len(records), len(feature_names)), dtype=np.float64)
    for row, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise InvalidInputError(f"expected features as an object with keys {expected}")
        missing = [name for name in feature_names if name not in record]
        unknown = sorted(set(record) - set(feature_names))
        if missing or unknown:
            parts = [f"missing {', '.join(missing)}"] if missing else []
            parts += [f"unknown {', '.join(unknown)}"] if unknown else []
            raise InvalidInputError(
                f"housing features {row}: {'; '.join(parts)}; expected exactly {expected}"
            )
        for column, name in enumerate(feature_names):
            array[row, column] = _finite_number(record[name], name)
    return array


def housing_array_rows(array: Any, feature_count: int = len(HOUSING_FEATURES)) -> np.ndarray:
    """An (n, 13) numeric array in the dataset's column order → float64, checked."""
    try:
        values = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"expected rows of {feature_count} numbers") from error
    if values.ndim == 1:
        values = values.reshape(1, -1)
    if values.ndim != 2 or values.shape[1] != feature_count or len(values) == 0:
        raise InvalidInputError(
            f"expected rows of {feature_count} numbers, got shape {list(values.shape)}"
        )
    if not np.isfinite(values).all():
        raise InvalidInputError("housing features must be finite numbers (got NaN or infinity)")
    return values


def _finite_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInputError(f"feature {name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"feature {name} must be a finite number, got {value!r}")
    return number
