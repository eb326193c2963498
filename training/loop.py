"""The one training loop every recipe runs: validate as the book does, final fit, test.

Holdout recipes watch a held-out slice of the training set for `explore_epochs` (the curves the
book plots to choose the epoch count). The housing recipe runs K-fold validation instead. Then
a fresh model is fitted on all the training data for `epochs` and measured on the test set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from training.features import Prepared
from training.recipes import Recipe, build_model

log = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    model: Any
    metrics: dict[str, float]
    # Per-epoch curves for the plot: {"loss": [...], "val_loss": [...], ...}.
    curves: dict[str, list[float]]
    kfold: dict[str, Any] = field(default_factory=dict)


def train(recipe: Recipe, data: Prepared, seed: int, verbose: int = 1) -> TrainingResult:
    import keras

    keras.utils.set_random_seed(seed)
    kfold: dict[str, Any] = {}
    if recipe.validation == "kfold":
        kfold = _kfold(recipe, data, verbose)
        curves = {"val_mae_mean": kfold.pop("mean_curve")}
    else:
        curves = _holdout(recipe, data, verbose)

    keras.utils.set_random_seed(seed)
    model = build_model(recipe)
    model.fit(
        data.x_train,
        data.y_train,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        verbose=verbose,
    )
    metrics = evaluate_arrays(model, recipe, data.x_test, data.y_test)
    if kfold:
        metrics["kfold_mae"] = kfold["mae"]
    return TrainingResult(model, metrics, curves, kfold)


def evaluate_arrays(model: Any, recipe: Recipe, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The recipe's test metric (`test_accuracy` or `test_mae`) of a model on encoded arrays."""
    return metric_from_predictions(recipe, predict(model, x), y)


def predict(model: Any, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    outputs = [
        np.asarray(model(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(outputs)


def metric_from_predictions(recipe: Recipe, outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if recipe.metric == "mae":
        return {"test_mae": float(np.mean(np.abs(outputs.reshape(-1) - y.reshape(-1))))}
    if outputs.shape[-1] == 1:
        predicted = (outputs.reshape(-1) >= 0.5).astype(np.int64)
    else:
        predicted = outputs.argmax(axis=-1)
    return {"test_accuracy": float(np.mean(predicted == y.reshape(-1).astype(np.int64)))}


def _holdout(recipe: Recipe, data: Prepared, verbose: int) -> dict[str, list[float]]:
    holdout = min(recipe.holdout, len(data.x_train) // 2)
    model = build_model(recipe)
    history = model.fit(
        data.x_train[holdout:],
        data.y_train[holdout:],
        epochs=recipe.explore_epochs,
        batch_size=recipe.batch_size,
        validation_data=(data.x_train[:holdout], data.y_train[:holdout]),
        verbose=verbose,
    )
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def _kfold(recipe: Recipe, data: Prepared, verbose: int) -> dict[str, Any]:
    """The book's K-fold: consecutive folds, one model each, validation MAE every epoch."""
    fold_size = len(data.x_train) // recipe.folds
    curves = []
    for fold in range(recipe.folds):
        start, stop = fold * fold_size, (fold + 1) * fold_size
        x_fit = np.concatenate([data.x_train[:start], data.x_train[stop:]])
        y_fit = np.concatenate([data.y_train[:start], data.y_train[stop:]])
        model = build_model(recipe)
        history = model.fit(
            x_fit,
            y_fit,
            epochs=recipe.explore_epochs,
            batch_size=recipe.batch_size,
            validation_data=(data.x_train[start:stop], data.y_train[start:stop]),
            verbose=0,
        )
        curves.append(history.history["val_mae"])
        if verbose:
            print(
                f"fold {fold + 1}/{recipe.folds}: validation MAE {curves[-1][-1]:.3f} "
                f"after {recipe.explore_epochs} epochs",
                flush=True,
            )
    mean_curve = np.mean(np.asarray(curves), axis=0)
    # The estimate for the exported model: the folds' MAE at the epoch count it is trained for.
    at = min(recipe.epochs, recipe.explore_epochs) - 1
    per_fold = [float(curve[at]) for curve in curves]
    return {
        "mae": float(np.mean(per_fold)),
        "per_fold_mae": per_fold,
        "at_epoch": at + 1,
        "best_epoch": int(np.argmin(mean_curve)) + 1,
        "mean_curve": [float(v) for v in mean_curve],
    }
