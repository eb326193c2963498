"""`dlwp feedback export NAME`: the labelled examples, in the format `dlwp train --data` reads.

imdb: JSON Lines `{"text", "label"}`; reuters: JSON Lines `{"text", "topic"}`; housing: CSV with
the 13 feature names and `MEDV`; mnist: a folder of `0/`…`9/` PNG pictures. Only answers whose
inputs were kept (DLWP_FEEDBACK_KEEP_INPUTS=true) can become examples; the rest are counted.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.model.preprocessing import HOUSING_FEATURES, MNIST_SIDE

TEXT_LABEL = {"imdb": "label", "reuters": "topic"}


def default_path(model: str) -> Path:
    if model == "mnist":
        return Path("mnist-feedback")
    return Path(f"{model}-feedback.{'csv' if model == 'housing' else 'jsonl'}")


def export(model: str, examples: Sequence[tuple[str | None, str]], out: Path) -> tuple[int, int]:
    """Write `examples` ((input JSON or None, label)) to `out`; (written, skipped: no input)."""
    kept = [(json.loads(raw), label) for raw, label in examples if raw is not None]
    skipped = len(examples) - len(kept)
    if model == "mnist":
        _digits(kept, out)
    elif model == "housing":
        _houses(kept, out)
    elif model in TEXT_LABEL:
        with open(out, "w", encoding="utf-8") as handle:
            for text, label in kept:
                record = {"text": text, TEXT_LABEL[model]: label}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        raise ValueError(f"no export format for model {model!r}")
    return len(kept), skipped


def _houses(kept: list[tuple[Any, str]], out: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*HOUSING_FEATURES, "MEDV"])
    for features, price in kept:
        writer.writerow([*(features[name] for name in HOUSING_FEATURES), float(price)])
    out.write_text(buffer.getvalue(), encoding="utf-8")


def _digits(kept: list[tuple[Any, str]], out: Path) -> None:
    from PIL import Image

    for digit in range(10):
        (out / str(digit)).mkdir(parents=True, exist_ok=True)
    for number, (grey, label) in enumerate(kept):
        pixels = np.asarray(grey, dtype=np.uint8).reshape(MNIST_SIDE, MNIST_SIDE)
        Image.fromarray(pixels).save(out / label / f"feedback-{number:06d}.png")
