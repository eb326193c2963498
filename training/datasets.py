"""The book's four datasets, loaded through `keras.datasets` exactly as the book does.

By default Keras downloads and caches each file. With a data folder (`--data-dir`, env
`DLWP_DATA_DIR`) holding the Keras-format files, Keras' own `load_data()` runs on those files
instead, so shuffling, `num_words`, offsets and splits are Keras' own, not a copy of them.
Every file used is hashed for the artifact.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATA_DIR_ENV = "DLWP_DATA_DIR"
NUM_WORDS = 10_000


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


@contextlib.contextmanager
def _keras_files(module: Any, data_dir: Path | None, used: dict[str, str]) -> Iterator[None]:
    """Route `module.get_file` to `data_dir` (when set) and record the sha256 of every file used."""
    original: Callable[..., str] = module.get_file

    def get_file(fname: str, origin: str | None = None, **kwargs: Any) -> str:
        if data_dir is None:
            path = original(fname, origin, **kwargs)
        else:
            path = str(data_dir / Path(fname).name)
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path} not found: the data folder must hold {fname}")
        used[Path(path).name] = sha256_of(path)
        return path

    module.get_file = get_file
    try:
        yield
    finally:
        module.get_file = original


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load one of mnist, imdb, reuters, housing with the book's `load_data()` arguments."""
    import keras.src.datasets.boston_housing as housing_module
    import keras.src.datasets.imdb as imdb_module
    import keras.src.datasets.mnist as mnist_module
    import keras.src.datasets.reuters as reuters_module

    folder = resolve_data_dir(data_dir)
    files: dict[str, str] = {}
    word_index: dict[str, int] | None = None
    label_names: list[str] | None = None
    if name == "mnist":
        with _keras_files(mnist_module, folder, files):
            (x_train, y_train), (x_test, y_test) = mnist_module.load_data()
    elif name == "imdb":
        with _keras_files(imdb_module, folder, files):
            (x_train, y_train), (x_test, y_test) = imdb_module.load_data(num_words=NUM_WORDS)
            word_index = imdb_module.get_word_index()
    elif name == "reuters":
        with _keras_files(reuters_module, folder, files):
            (x_train, y_train), (x_test, y_test) = reuters_module.load_data(num_words=NUM_WORDS)
            word_index = reuters_module.get_word_index()
        label_names = list(reuters_module.get_label_names())
    elif name == "housing":
        with _keras_files(housing_module, folder, files):
            (x_train, y_train), (x_test, y_test) = housing_module.load_data()
    else:
        raise ValueError(f"unknown dataset {name!r}: expected mnist, imdb, reuters or housing")
    return Dataset(name, x_train, y_train, x_test, y_test, files, word_index, label_names)


def load_full_sequences(name: str, data_dir: str | Path | None = None) -> tuple[Any, np.ndarray]:
    """The text test set with every word kept (no `num_words` cut), for decoding back to text."""
    import keras.src.datasets.imdb as imdb_module
    import keras.src.datasets.reuters as reuters_module

    module = {"imdb": imdb_module, "reuters": reuters_module}[name]
    with _keras_files(module, resolve_data_dir(data_dir), {}):
        _, (x_test, y_test) = module.load_data(num_words=None)
    return x_test, y_test


def load_word_index(name: str, data_dir: str | Path | None = None) -> dict[str, int]:
    import keras.src.datasets.imdb as imdb_module
    import keras.src.datasets.reuters as reuters_module

    module = {"imdb": imdb_module, "reuters": reuters_module}[name]
    with _keras_files(module, resolve_data_dir(data_dir), {}):
        return dict(module.get_word_index())
