"""Training curves as the book draws them, saved as `history.png` in each version."""

from __future__ import annotations

from pathlib import Path

from training.recipes import Recipe


def smooth(points: list[float], factor: float = 0.9) -> list[float]:
    """The book's exponential moving average for the K-fold MAE curve."""
    smoothed: list[float] = []
    for point in points:
        smoothed.append(smoothed[-1] * factor + point * (1 - factor) if smoothed else point)
    return smoothed


def save_history_plot(recipe: Recipe, curves: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    if recipe.validation == "kfold":
        mean_curve = curves["val_mae_mean"]
        epochs = range(1, len(mean_curve) + 1)
        axes[0].plot(epochs, mean_curve, label="mean validation MAE")
        axes[0].set_title(f"{recipe.name}: {recipe.folds}-fold validation MAE")
        skip = 10 if len(mean_curve) > 20 else 0
        axes[1].plot(
            range(skip + 1, len(mean_curve) + 1),
            smooth(mean_curve[skip:]),
            label="smoothed, first 10 epochs left out" if skip else "smoothed",
        )
        axes[1].set_title("smoothed as in the book")
        for axis in axes:
            axis.set_xlabel("epoch")
            axis.set_ylabel("validation MAE ($1000s)")
            axis.axvline(recipe.epochs, color="grey", linestyle="--", label="final fit epochs")
    else:
        metric = recipe.metric
        epochs = range(1, len(curves["loss"]) + 1)
        for axis, key in zip(axes, ("loss", metric), strict=True):
            axis.plot(epochs, curves[key], "o-", label=f"training {key}")
            if f"val_{key}" in curves:
                axis.plot(epochs, curves[f"val_{key}"], "s-", label=f"validation {key}")
            axis.axvline(recipe.epochs, color="grey", linestyle="--", label="final fit epochs")
            axis.set_xlabel("epoch")
            axis.set_ylabel(key)
            axis.set_title(f"{recipe.name}: training and validation {key}")
    for axis in axes:
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
