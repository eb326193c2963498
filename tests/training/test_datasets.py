"""The book's datasets, from a data folder or Keras' cache, as Keras' load_data returns them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training.datasets import load_dataset

from ..conftest import REPO, needs_datasets


def _published_sha256(data_dir: Path) -> dict[str, str]:
    lines = (data_dir / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines)}


@needs_datasets
def test_housing_from_data_folder_is_the_books_split(data_dir):
    dataset = load_dataset("housing", data_dir)

    assert dataset.x_train.shape == (404, 13) and dataset.x_test.shape == (102, 13)
    np.testing.assert_allclose(
        dataset.x_train[0],
        [1.23247, 0, 8.14, 0, 0.538, 6.142, 91.7, 3.9769, 4, 307, 21, 396.9, 18.72],
    )
    np.testing.assert_allclose(dataset.y_train[:4], [15.2, 42.3, 50.0, 21.1])
    assert dataset.files == {
        "boston_housing.npz": _published_sha256(data_dir)["boston_housing.npz"]
    }


@needs_datasets
def test_imdb_is_shuffled_and_cut_to_num_words_as_keras_does(data_dir):
    dataset = load_dataset("imdb", data_dir)

    assert len(dataset.x_train) == len(dataset.x_test) == 25_000
    # The sequence every Keras IMDB tutorial prints for train_data[0].
    assert dataset.x_train[0][:10] == [1, 14, 22, 16, 43, 530, 973, 1622, 1385, 65]
    assert max(max(sequence) for sequence in dataset.x_train) == 9999
    assert set(dataset.files) == {"imdb.npz", "imdb_word_index.json"}


@needs_datasets
def test_reuters_carries_its_topic_names(data_dir):
    dataset = load_dataset("reuters", data_dir)

    assert (len(dataset.x_train), len(dataset.x_test)) == (8982, 2246)
    assert dataset.label_names is not None and len(dataset.label_names) == 46
    assert dataset.label_names[int(dataset.y_train[10])] == "earn"


def test_a_missing_data_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("housing", tmp_path / "nowhere")


def test_a_data_folder_without_the_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"boston_housing\.npz"):
        load_dataset("housing", tmp_path)


@needs_datasets
def test_reading_a_file_equals_keras_own_load_data(tmp_path, data_dir):
    # boston_housing.npz is byte-identical to Keras' download, so Keras' own load_data() reads it
    # offline from its cache; our reading of the same file must give the same arrays.
    (tmp_path / "datasets").mkdir()
    shutil.copy(data_dir / "boston_housing.npz", tmp_path / "datasets")
    script = (
        "import keras, numpy as np\n"
        "from training.datasets import load_dataset\n"
        f"ours = load_dataset('housing', {str(data_dir)!r})\n"
        "(x, y), (xt, yt) = keras.datasets.boston_housing.load_data()\n"
        "assert all(np.array_equal(a, b) for a, b in "
        "[(ours.x_train, x), (ours.y_train, y), (ours.x_test, xt), (ours.y_test, yt)])\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env={**os.environ, "KERAS_HOME": str(tmp_path), "PYTHONPATH": str(REPO)},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-2000:]
