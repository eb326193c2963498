"""Write scikit-learn's 1,797 handwritten digits (43 writers, not MNIST) as `--data` folders.

Each 8×8 digit becomes a picture of dark ink on white paper with a margin, the way a scan or a
form would send it, at 28 and 64 pixels. A seeded share of every digit is kept unseen:

    OUT/train/28/0/0001.png … OUT/train/64/9/…    train on one of these folders
    OUT/unseen/28/…  OUT/unseen/64/…             score the served model on these

Needs scikit-learn (the `dev` extra): `python tools/sklearn_digits.py /tmp/digits`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = {28: 20, 64: 48}  # picture side → side of the digit inside it (the rest is margin)


def picture(digit: np.ndarray, side: int) -> Image.Image:
    """An 8×8 array of 0–16 ink values → a side×side grey picture, dark ink on white."""
    inner = SIZES[side]
    ink = Image.fromarray((digit * (255.0 / 16.0)).astype(np.float32))
    ink = ink.resize((inner, inner), Image.Resampling.BILINEAR)
    page = np.zeros((side, side), dtype=np.float32)
    margin = (side - inner) // 2
    page[margin : margin + inner, margin : margin + inner] = np.asarray(ink)
    return Image.fromarray((255.0 - np.clip(page, 0, 255)).astype(np.uint8))


def write(out: Path, unseen_share: float, seed: int) -> dict[str, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    unseen = np.zeros(len(digits.target), dtype=bool)
    for label in range(10):
        rows = np.flatnonzero(digits.target == label)
        unseen[rng.choice(rows, round(len(rows) * unseen_share), replace=False)] = True
    for index, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        part = "unseen" if unseen[index] else "train"
        for side in SIZES:
            folder = out / part / str(side) / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            picture(image, side).save(folder / f"{index:04d}.png")
    return {"train": int((~unseen).sum()), "unseen": int(unseen.sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("out", type=Path, help="folder to write train/ and unseen/ into")
    parser.add_argument("--unseen", type=float, default=0.25, help="share kept unseen")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = write(args.out, args.unseen, args.seed)
    print(f"wrote {counts['train']} training and {counts['unseen']} unseen digits to {args.out}")


if __name__ == "__main__":
    main()
