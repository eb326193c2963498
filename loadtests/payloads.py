"""Realistic request bodies taken from the test sets, for locust and the benchmark.

Reviews are the real IMDB test texts (HTML and all), wires are Reuters test wires as text,
digits are MNIST test images (JSON pixels and PNG files), houses are Boston housing rows.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
HOUSING_FEATURES = ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX",
                    "PTRATIO", "B", "LSTAT")  # fmt: skip


def data_dir() -> Path:
    for candidate in (os.environ.get("DLWP_DATA_DIR"), REPO.parent / "shared" / "datasets"):
        if candidate and (Path(candidate) / "mnist.npz").is_file():
            return Path(candidate)
    raise FileNotFoundError("dataset files not found: set DLWP_DATA_DIR")


@cache
def reviews(limit: int = 500) -> list[str]:
    texts = []
    with gzip.open(data_dir() / "imdb_raw_test.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            texts.append(json.loads(line)["text"])
            if len(texts) == limit:
                break
    return texts


@cache
def wires(limit: int = 500) -> list[str]:
    texts = []
    with gzip.open(data_dir() / "reuters21578.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            text = record.get("keras_text") or record.get("body")
            if record.get("lewissplit") == "TEST" and text:
                texts.append(text)
                if len(texts) == limit:
                    break
    return texts


@cache
def digits(limit: int = 500) -> tuple[np.ndarray, np.ndarray]:
    with np.load(data_dir() / "mnist.npz") as data:
        return data["x_test"][:limit], data["y_test"][:limit]


@cache
def digit_pngs(limit: int = 200) -> list[bytes]:
    from PIL import Image

    images = []
    for pixels in digits(limit)[0]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


@cache
def houses() -> list[dict[str, float]]:
    with np.load(data_dir() / "boston_housing.npz") as data:
        rows = data["x"]
    return [dict(zip(HOUSING_FEATURES, map(float, row), strict=True)) for row in rows]


def sentiment_body(i: int) -> dict[str, Any]:
    return {"text": reviews()[i % len(reviews())]}


def topics_body(i: int) -> dict[str, Any]:
    return {"text": wires()[i % len(wires())], "top_k": 3}


def digits_json_body(i: int) -> dict[str, Any]:
    images = digits()[0]
    return {"pixels": images[i % len(images)].tolist()}


def digits_png_body(i: int) -> bytes:
    return digit_pngs()[i % len(digit_pngs())]


def housing_body(i: int) -> dict[str, Any]:
    return {"features": houses()[i % len(houses())]}


def mnist_instances_body(i: int) -> dict[str, Any]:
    """The TF Serving body of the benchmark: {"instances": [[784 floats]]}."""
    images = digits()[0]
    return {"instances": [images[i % len(images)].reshape(784).astype(float).tolist()]}
