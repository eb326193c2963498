"""The book's four datasets, as `keras.datasets.X.load_data()` returns them (book's arguments).

Each file comes either from a data folder (`--data-dir`, env `DLWP_DATA_DIR`) holding the
Keras-format files, or from Keras' own download and cache (`keras.utils.get_file`, with Keras'
origin and hash). Either way the file is read here with numpy and put through the steps Keras
documents for `load_data` (seed-113 shuffle, start mark 1, OOV index 2, words from index 3,
`num_words` cut, the 80/20 split for Reuters and housing): a local copy whose bytes differ from
Keras' download (so Keras' hash check would refuse it) still loads, and nothing here touches
Keras' private modules. Every file used is hashed for the artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR_ENV = "DLWP_DATA_DIR"
NUM_WORDS = 10_000

# Keras' load_data defaults, which the book uses.
SHUFFLE_SEED = 113
START_CHAR = 1
OOV_CHAR = 2
INDEX_FROM = 3
TEST_SPLIT = 0.2

# Where keras.datasets downloads each file from, and the hash Keras checks it against.
_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KERAS_FILES: dict[str, str] = {
    "mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    "imdb.npz": "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f",
    "imdb_word_index.json": "bfafd718b763782e994055a2d397834f",
    "reuters.npz": "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916",
    "reuters_word_index.json": "4d44cc38712099c9e383dc6e5f11a921",
    "boston_housing.npz": "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5",
}


@dataclass
class Dataset:
    name: str
    x_train: Any
    y_train: np.ndarray
    x_test: Any
    y_test: np.ndarray
    files: dict[str, str] = field(default_factory=dict)  # file name → sha256
    word_index: dict[str, int] | None = None
    label_names: list[str] | None = None


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The data folder to read from: the argument, else $DLWP_DATA_DIR, else None (download)."""
    chosen = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data folder {path} does not exist")
    return path


def dataset_file(fname: str, folder: Path | None, used: dict[str, str] | None = None) -> Path:
    """The path of one Keras dataset file: in `folder`, else downloaded and cached by Keras."""
    if folder is not None:
        path = folder / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the data folder must hold {fname}")
    else:
        import keras

        path = Path(
            keras.utils.get_file(fname, origin=_ORIGIN + fname, file_hash=KERAS_FILES[fname])
        )
    if used is not None:
        used[fname] = sha256_of(path)
    return path


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load one of mnist, imdb, reuters, housing with the book's `load_data()` arguments."""
    folder = resolve_data_dir(data_dir)
    files: dict[str, str] = {}
    word_index: dict[str, int] | None = None
    label_names: list[str] | None = None
    if name == "mnist":
        with np.load(dataset_file("mnist.npz", folder, files), allow_pickle=False) as arrays:
            x_train, y_train = arrays["x_train"], arrays["y_train"]
            x_test, y_test = arrays["x_test"], arrays["y_test"]
    elif name == "imdb":
        (x_train, y_train), (x_test, y_test) = _imdb(folder, NUM_WORDS, files)
        word_index = _word_index("imdb", folder, files)
    elif name == "reuters":
        (x_train, y_train), (x_test, y_test) = _reuters(folder, NUM_WORDS, files)
        word_index = _word_index("reuters", folder, files)
        label_names = reuters_label_names()
    elif name == "housing":
        (x_train, y_train), (x_test, y_test) = _housing(folder, files)
    else:
        raise ValueError(f"unknown dataset {name!r}: expected mnist, imdb, reuters or housing")
    return Dataset(name, x_train, y_train, x_test, y_test, files, word_index, label_names)


def load_full_sequences(name: str, data_dir: str | Path | None = None) -> tuple[Any, np.ndarray]:
    """The text test set with every word kept (no `num_words` cut), for decoding back to text."""
    folder = resolve_data_dir(data_dir)
    loader = {"imdb": _imdb, "reuters": _reuters}[name]
    _, (x_test, y_test) = loader(folder, None, {})
    return x_test, y_test


def load_word_index(name: str, data_dir: str | Path | None = None) -> dict[str, int]:
    return _word_index(name, resolve_data_dir(data_dir), {})


def reuters_label_names() -> list[str]:
    """The 46 Reuters topic names, in label order (Keras ships them; no download)."""
    import keras

    return [str(label) for label in keras.datasets.reuters.get_label_names()]


# ------------------------------------------------------------------ Keras' documented load_data


def _imdb(
    folder: Path | None, num_words: int | None, used: dict[str, str]
) -> tuple[tuple[Any, np.ndarray], tuple[Any, np.ndarray]]:
    arrays = load_npz(dataset_file("imdb.npz", folder, used))
    rng = np.random.RandomState(SHUFFLE_SEED)
    # Keras shuffles train then test with the same generator, in that order.
    order = np.arange(len(arrays["x_train"]))
    rng.shuffle(order)
    x_train, y_train = arrays["x_train"][order], arrays["y_train"][order]
    order = np.arange(len(arrays["x_test"]))
    rng.shuffle(order)
    x_test, y_test = arrays["x_test"][order], arrays["y_test"][order]
    sequences = _offset_and_cut([*x_train, *x_test], num_words)
    split = len(x_train)
    return (_objects(sequences[:split]), y_train), (_objects(sequences[split:]), y_test)


def _reuters(
    folder: Path | None, num_words: int | None, used: dict[str, str]
) -> tuple[tuple[Any, np.ndarray], tuple[Any, np.ndarray]]:
    arrays = load_npz(dataset_file("reuters.npz", folder, used))
    order = np.arange(len(arrays["x"]))
    np.random.RandomState(SHUFFLE_SEED).shuffle(order)
    sequences = _offset_and_cut(list(arrays["x"][order]), num_words)
    labels = np.asarray(arrays["y"][order])
    split = int(len(sequences) * (1 - TEST_SPLIT))
    return (
        (_objects(sequences[:split]), labels[:split]),
        (_objects(sequences[split:]), labels[split:]),
    )


def _housing(
    folder: Path | None, used: dict[str, str]
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    with np.load(dataset_file("boston_housing.npz", folder, used), allow_pickle=False) as arrays:
        x, y = arrays["x"], arrays["y"]
    order = np.arange(len(x))
    np.random.RandomState(SHUFFLE_SEED).shuffle(order)
    x, y = x[order], y[order]
    split = int(len(x) * (1 - TEST_SPLIT))
    return (x[:split], y[:split]), (x[split:], y[split:])


def _offset_and_cut(sequences: list[Any], num_words: int | None) -> list[list[int]]:
    """Start mark, words from index 3, and every index at or past `num_words` as the OOV mark."""
    shifted = [[START_CHAR, *(int(w) + INDEX_FROM for w in x)] for x in sequences]
    limit = num_words or max(max(x) for x in shifted)
    return [[w if w < limit else OOV_CHAR for w in x] for x in shifted]


def _objects(sequences: list[list[int]]) -> np.ndarray:
    array = np.empty(len(sequences), dtype=object)
    array[:] = sequences
    return array


def _word_index(name: str, folder: Path | None, used: dict[str, str]) -> dict[str, int]:
    path = dataset_file(f"{name}_word_index.json", folder, used)
    with open(path, encoding="utf-8") as handle:
        return {str(word): int(rank) for word, rank in json.load(handle).items()}


# ------------------------------------------------------------------ reading .npz object arrays

# The IMDB and Reuters files store ragged sequences as numpy object arrays, which numpy can only
# save as a pickle. Rebuilding those arrays needs these globals and nothing else; anything more
# in a file is refused, so a tampered file cannot run code when it is loaded.
_ARRAY_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }
)


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing {module}.{name} in a dataset file: only numpy arrays are expected"
        )


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file; object arrays unpickled with numpy's globals only."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            data = io.BytesIO(archive.read(member))
            arrays[member.removesuffix(".npy")] = _read_npy(data)
    return arrays


def _read_npy(data: io.BytesIO) -> np.ndarray:
    fmt = np.lib.format
    version = fmt.read_magic(data)
    header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _fortran, dtype = header(data)
    if not dtype.hasobject:
        data.seek(0)
        array: np.ndarray = fmt.read_array(data, allow_pickle=False)
        return array
    loaded = _ArrayUnpickler(data).load()
    if not isinstance(loaded, np.ndarray) or loaded.shape != shape:
        raise ValueError("a dataset file holds something other than the array its header names")
    return loaded
