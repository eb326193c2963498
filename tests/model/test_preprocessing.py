"""The shared preprocessing: right vectors for good input, clear errors for bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidInputError
from service.model import preprocessing as pp

from ..conftest import needs_datasets

VOCABULARY = {"the": 4, "movie": 5, "was": 6, "great": 7, "br": 8}
FEATURES = dict(
    zip(
        pp.HOUSING_FEATURES,
        [0.1, 0, 8.1, 0, 0.5, 6.1, 91.7, 3.9, 4, 307, 21, 396.9, 18.7],
        strict=True,
    )
)


def test_tokenizer_matches_the_keras_dataset_tokenizer():
    assert pp.tokenize("The movie<br /><br />was GREAT!!! Don't-miss it.") == [
        "the",
        "movie",
        "br",
        "br",
        "was",
        "great",
        "don't",
        "miss",
        "it",
    ]


def test_text_becomes_start_mark_then_word_indices_with_unknown_words_as_oov():
    assert pp.text_to_sequence("The movie was dreadful", VOCABULARY) == [1, 4, 5, 6, 2]


def test_multi_hot_sets_one_at_every_index_present():
    rows = pp.texts_to_multi_hot(["the the movie"], VOCABULARY, num_words=10)

    assert rows.dtype == np.float32
    assert rows.tolist() == [[0, 1, 0, 0, 1, 1, 0, 0, 0, 0]]


@pytest.mark.parametrize("text", ["", "   ", "!!! ... ???"])
def test_text_without_words_is_rejected(text):
    with pytest.raises(InvalidInputError, match="text is empty"):
        pp.texts_to_multi_hot([text], VOCABULARY, 10)


def test_over_long_text_is_rejected_with_the_limit():
    with pytest.raises(InvalidInputError, match="at most 10 are accepted"):
        pp.texts_to_multi_hot(["the movie was great"], VOCABULARY, 10, max_chars=10)


def test_non_string_text_is_rejected():
    with pytest.raises(InvalidInputError, match="expected text as a string, got int"):
        pp.texts_to_multi_hot([42], VOCABULARY, 10)  # type: ignore[list-item]


def test_pixels_flat_or_square_become_one_scaled_row():
    square = np.zeros((28, 28))
    square[4:24, 12:16] = 255

    assert pp.pixels_to_rows(square).shape == (1, 784)
    assert pp.pixels_to_rows(square.ravel()).max() == 1.0


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        ([0] * 700, "expected 784 pixel values or a 28×28 array, got shape \\[700\\]"),
        (np.zeros((27, 28)).tolist(), "got shape \\[27, 28\\]"),
        ([[0] * 28] * 27 + [[0] * 27], "784 grey values"),
        (["a"] * 784, "pixels must be numbers"),
        ([float("nan")] * 784, "NaN or infinity"),
        ([300] * 784, "must lie in 0–255"),
    ],
)
def test_bad_pixels_are_rejected_saying_what_is_expected(pixels, message):
    with pytest.raises(InvalidInputError, match=message):
        pp.pixels_to_rows(pixels)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@needs_datasets
def test_mnist_digits_come_back_unchanged_as_pixels_and_as_png(data_dir):
    with np.load(data_dir / "mnist.npz") as arrays:
        digits = arrays["x_test"][:500]

    as_pixels = pp.pixel_batch_to_rows(digits) * 255
    as_png = np.concatenate([pp.image_bytes_to_rows(_png(digit)) for digit in digits]) * 255

    # Unchanged but for the brightest pixel stretched to 255 (some MNIST digits peak at 254).
    np.testing.assert_allclose(as_pixels, digits.reshape(-1, 784), atol=1.01)
    np.testing.assert_array_equal(as_png, as_pixels)


def _ink_box_and_centre(row: np.ndarray) -> tuple[int, int, float, float]:
    field = row.reshape(28, 28)
    ys, xs = np.nonzero(field > 0.1)
    total = field.sum()
    centre_y = (field.sum(axis=1) @ np.arange(28)) / total
    centre_x = (field.sum(axis=0) @ np.arange(28)) / total
    return int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1, float(centre_y), float(centre_x)


@pytest.mark.parametrize("how", ["pixels", "png"])
def test_a_small_off_centre_28_by_28_digit_is_normalised_like_mnist(how):
    digit = np.zeros((28, 28))
    digit[1:11, 1:4] = 255  # a short bar in the top-left corner, 10 pixels tall

    row = pp.pixels_to_rows(digit) if how == "pixels" else pp.image_bytes_to_rows(_png(digit))

    height, width, centre_y, centre_x = _ink_box_and_centre(row)
    assert height == 20 and 5 <= width <= 7, "ink box scaled to 20 pixels, aspect kept"
    assert abs(centre_y - 14) <= 0.5 and abs(centre_x - 14) <= 0.5, "centred by mass"


def test_either_polarity_gives_the_same_field():
    digit = np.zeros((28, 28))
    digit[6:20, 10:14] = 200

    np.testing.assert_allclose(pp.pixels_to_rows(digit), pp.pixels_to_rows(255 - digit))


def test_blank_paper_is_an_empty_field():
    assert pp.pixels_to_rows(np.full((28, 28), 255)).max() == 0.0


def test_a_large_dark_on_light_image_becomes_a_centred_light_on_dark_digit():
    page = np.full((300, 200), 255.0)
    page[40:260, 20:60] = 0  # a black vertical bar near the left edge of a white page

    row = pp.image_bytes_to_rows(_png(page)).reshape(28, 28)

    assert row[0].max() == 0 and row[:, 0].max() == 0, "background is dark, as in MNIST"
    assert row.max() > 0.9, "ink is light"
    ys, xs = np.nonzero(row > 0.5)
    assert 12 <= xs.mean() <= 15 and 12 <= ys.mean() <= 15, "centred by mass"
    assert ys.max() - ys.min() + 1 <= 21, "fitted into MNIST's 20-pixel box"


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n garbage"])
def test_bytes_that_are_not_an_image_are_rejected(data):
    with pytest.raises(InvalidInputError, match="PNG or JPEG"):
        pp.image_bytes_to_rows(data)


def test_decompression_bombs_are_rejected_before_decoding():
    big = _png(np.zeros((2000, 2000)))

    with pytest.raises(InvalidInputError, match="at most 1000000 pixels"):
        pp.image_bytes_to_rows(big, max_pixels=1_000_000)


def test_housing_records_keep_the_dataset_column_order():
    array = pp.housing_records_to_array([FEATURES])

    assert array.tolist() == [list(FEATURES.values())]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"LSTAT": None}, "feature LSTAT must be a number, got None"),
        ({"RM": "six"}, "feature RM must be a number, got 'six'"),
        ({"RM": float("nan")}, "feature RM must be a finite number"),
        ({"CHAS": True}, "feature CHAS must be a number"),
        ({"COLOUR": 1}, "unknown COLOUR"),
    ],
)
def test_bad_housing_features_are_rejected_by_name(change, message):
    with pytest.raises(InvalidInputError, match=message):
        pp.housing_records_to_array([{**FEATURES, **change}])


def test_missing_housing_features_are_listed():
    record = {k: v for k, v in FEATURES.items() if k not in ("CRIM", "TAX")}

    with pytest.raises(InvalidInputError, match="missing CRIM, TAX; expected exactly CRIM, ZN"):
        pp.housing_records_to_array([record])


def test_housing_rows_must_have_thirteen_finite_numbers():
    with pytest.raises(InvalidInputError, match="rows of 13 numbers, got shape \\[1, 12\\]"):
        pp.housing_array_rows([[1.0] * 12])
    with pytest.raises(InvalidInputError, match="NaN or infinity"):
        pp.housing_array_rows([[float("inf")] * 13])


def test_standardize_uses_the_stored_training_statistics():
    out = pp.standardize(np.array([[3.0, 10.0]]), mean=[1.0, 10.0], std=[2.0, 5.0])

    assert out.tolist() == [[1.0, 0.0]]


@needs_datasets
def test_a_batch_of_pictures_reads_as_each_picture_normalised_alone(data_dir):
    # Pictures already in MNIST's form skip the per-picture work: the answer must not change.
    with np.load(data_dir / "mnist.npz") as arrays:
        digits = arrays["x_test"][:300].astype(np.float32)
    rng = np.random.default_rng(0)
    moved = np.stack([np.roll(d, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
                      for d in digits[:100]])  # fmt: skip
    pictures = np.concatenate([digits, moved, 255 - digits[:50], np.zeros((1, 28, 28))])

    together = pp.pixel_batch_to_rows(pictures)

    alone = np.stack([pp.normalise_digit(p).reshape(784) / 255 for p in pictures])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_a_tensor_is_the_model_input_scaled_not_reshaped():
    digit = np.zeros((28, 28))
    digit[1:11, 1:4] = 255  # off-centre: the task endpoint would centre it, a tensor is as sent

    np.testing.assert_array_equal(pp.pixel_tensor_to_rows(digit[None]), digit.reshape(1, 784) / 255)
    with pytest.raises(InvalidInputError, match="0–255"):
        pp.pixel_tensor_to_rows(np.full((1, 784), 300.0))
