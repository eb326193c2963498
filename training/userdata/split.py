"""Judgements of the data as a whole, then the seeded holdout: a share of every label kept back."""

from __future__ import annotations

import numpy as np

from training.userdata.errors import Problem, UserDataError
from training.userdata.formats import UserData


def check(data: UserData, mode: str, holdout: float) -> None:
    """Raise UserDataError when the data as a whole cannot be trained on and evaluated."""
    place = str(data.path)
    if len(data) == 0:
        what = "no pictures" if data.format == "folder" else "no rows (an empty file)"
        raise UserDataError([Problem(place, f"has {what}")])
    problems: list[Problem] = []
    if data.label_names is None:
        if len(data) < 2:
            problems.append(
                Problem(
                    place,
                    f"has {len(data)} row: holding out {holdout:.0%} for evaluation needs "
                    "at least 2",
                )
            )
        if problems:
            raise UserDataError(problems)
        return
    counts = data.rows_per_label()
    present = [label for label, count in counts.items() if count]
    if mode == "only" and len(present) < 2:
        problems.append(
            Problem(
                place,
                f"has examples of {len(present)} label ({', '.join(present)}): "
                "--data-mode only needs at least 2 labels to tell apart",
            )
        )
    for label, count in counts.items():
        if count == 1:
            problems.append(
                Problem(
                    place,
                    f"label {label!r} has 1 example: holding out {holdout:.0%} for evaluation "
                    "needs at least 2 of every label (add more, or leave it out)",
                )
            )
    if problems:
        raise UserDataError(problems)


def holdout_split(data: UserData, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, holdout rows), sorted: `share` of every label (at least one) held out."""
    rng = np.random.default_rng(seed)
    if data.label_names is None:
        groups = [np.arange(len(data))]
    else:
        groups = [np.flatnonzero(data.labels == code) for code in range(len(data.label_names))]
    train: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for rows in groups:
        if len(rows) == 0:
            continue
        count = min(max(1, round(len(rows) * share)), len(rows) - 1)
        shuffled = rng.permutation(rows)
        held.append(shuffled[:count])
        train.append(shuffled[count:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))
