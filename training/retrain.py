"""`dlwp train NAME --data PATH`: a recipe retrained on a user's own labelled examples.

The data is read and checked in full before anything trains (`training.userdata`); a seeded
share of every label is held out. `add` joins the user's training rows to the book's training
set, each user row repeated so that the user's rows make up about a fifth of every epoch (at
most 100 repeats), and keeps the book's vocabulary and labels; `only` trains on the user's rows
alone, with a vocabulary of the user's 10,000 most frequent words and, for reuters, the user's
own topics. A tenth of the user's training rows is set aside to watch, and the weights of the
epoch that did best on it (at most the recipe's epochs) are kept. Rows reach Keras in batches
(`training.userdata.streaming`). The new model and the
version now serving are both scored on the user's holdout and on the book's test set; the
version is published unless `promote_if_better` is asked and the new model does not win.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from service.model import artifacts, preprocessing
from training import datasets, evaluation, export, features, plots
from training.evaluation import Candidate, EvalSet
from training.recipes import Layer, Recipe, build_model, get_recipe
from training.userdata import formats, split
from training.userdata.formats import UserData
from training.userdata.rows import TextRows

MODES = ("add", "only")
ADD_SHARE = 0.2  # add: the user's rows are repeated to make about this share of an epoch
MAX_REPEAT = 100
# The share of the user's training rows set aside to choose the epoch, as the book watches a
# slice of its training set; with fewer rows than MIN_VALIDATION_ROWS, the recipe's count is kept.
VALIDATION_SHARE = 0.1
MIN_VALIDATION_ROWS = 10
# How much worse than the serving version the new one may score on the book's test set and
# still be promoted: 0.5 points of accuracy, or 0.2 ($200) of MAE.
TOLERANCE = {"accuracy": 0.005, "mae": 0.2}


@dataclass
class Request:
    name: str
    data: Path
    models_dir: Path
    mode: str = "add"
    holdout: float = 0.2
    seed: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    data_dir: str | Path | None = None
    promote_if_better: bool = False
    tolerance: float | None = None  # in the metric's own units (accuracy as a fraction)
    serving_version: int | None = None  # default: the newest version in models_dir
    verbose: int = 1


@dataclass
class Scores:
    rows: int
    new: float
    serving: float | None


@dataclass
class Outcome:
    name: str
    metric: str  # "accuracy" or "mae"
    holdout: Scores
    test: Scores
    serving_version: int | None
    publish: bool
    reason: str
    version: int | None = None
    folder: Path | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Prepared:
    """The new model's training rows, holdout rows and preprocessing."""

    recipe: Recipe
    features: Callable[[np.ndarray], np.ndarray]
    targets: np.ndarray
    plan: np.ndarray
    holdout_features: Callable[[np.ndarray], np.ndarray]
    holdout_targets: np.ndarray
    preprocessing: dict[str, Any]
    vocabulary: dict[str, int] | None
    labels: list[str] | None
    book_rows: int
    user_rows: int
    repeat: int


def retrain(request: Request) -> Outcome:
    """Read, check, train, score, decide and (maybe) publish; UserDataError on bad data."""
    if request.mode not in MODES:
        raise ValueError(f"unknown data mode {request.mode!r}: expected add or only")
    if not 0 < request.holdout < 1:
        raise ValueError(f"--holdout must lie between 0 and 1, got {request.holdout:g}")
    recipe = get_recipe(request.name)
    seed = recipe.seed if request.seed is None else request.seed
    topics = (
        datasets.reuters_label_names()
        if request.name == "reuters" and request.mode == "add"
        else None
    )
    data = formats.read(
        request.name, request.data, topics=topics, progress=_progress(request.verbose, "reading")
    )
    split.check(data, request.mode, request.holdout)
    train_rows, held_rows = split.holdout_split(data, request.holdout, seed)
    book = datasets.load_dataset(request.name, request.data_dir)
    prepared = _prepare(recipe, request, data, book, train_rows, held_rows)
    if request.epochs is not None:
        prepared.recipe = replace(prepared.recipe, epochs=request.epochs)
    if request.batch_size is not None:
        prepared.recipe = prepared.recipe.with_batch_size(request.batch_size)

    model, curves, choice = _fit(prepared, seed, request.verbose)
    new = Candidate(
        "new model", model, recipe.task, prepared.preprocessing, prepared.vocabulary,
        prepared.labels,
    )  # fmt: skip
    serving = _serving(request)
    holdout_set = _holdout_set(data, held_rows)
    test_set = _test_set(request.name, book, request.data_dir)
    holdout = _scores(new, serving, holdout_set)
    test = _scores(new, serving, test_set)
    metric = recipe.metric
    publish, reason = decide(
        metric, holdout, test, request.promote_if_better, request.tolerance,
        serving.version if serving else None,
    )  # fmt: skip
    provenance = _provenance(data, request, seed, train_rows, held_rows, prepared)
    provenance["epoch_choice"] = choice
    outcome = Outcome(
        request.name, metric, holdout, test, serving.version if serving else None, publish,
        reason, provenance=provenance,
    )  # fmt: skip
    if publish:
        outcome.version, outcome.folder = _export(
            request, prepared, seed, model, curves, book, outcome
        )
    return outcome


# ------------------------------------------------------------------------------ preparing rows


def _prepare(
    recipe: Recipe,
    request: Request,
    data: UserData,
    book: datasets.Dataset,
    train_rows: np.ndarray,
    held_rows: np.ndarray,
) -> _Prepared:
    add = request.mode == "add"
    if recipe.task == "digits":
        return _prepare_digits(recipe, data, book, train_rows, held_rows, add)
    if recipe.task == "housing":
        return _prepare_houses(recipe, data, book, train_rows, held_rows, add)
    return _prepare_texts(recipe, data, book, train_rows, held_rows, add)


def _plan(book_rows: int, user_rows: int) -> tuple[np.ndarray, int]:
    """Row numbers of one epoch: every book row once, every user row `repeat` times."""
    repeat = 1
    if book_rows:
        wanted = ADD_SHARE / (1 - ADD_SHARE) * book_rows / max(user_rows, 1)
        repeat = int(min(MAX_REPEAT, max(1, math.ceil(wanted))))
    user = np.repeat(np.arange(book_rows, book_rows + user_rows), repeat)
    return np.concatenate([np.arange(book_rows), user]), repeat


def _prepare_digits(
    recipe: Recipe, data: UserData, book: datasets.Dataset, train: np.ndarray,
    held: np.ndarray, add: bool,
) -> _Prepared:  # fmt: skip
    assert data.images is not None
    params = features.preprocessing_params(recipe, book)
    user_x, user_y = data.images[train], data.labels[train]
    if add:
        book_x = features.encode(params, book.x_train)
        x = np.concatenate([book_x, user_x])
        y = np.concatenate([book.y_train.astype(np.int64), user_y])
    else:
        x, y = user_x, user_y
    book_rows = len(book.y_train) if add else 0
    plan, repeat = _plan(book_rows, len(train))
    held_x = data.images[held]
    return _Prepared(
        recipe, lambda rows: x[rows], y, plan, lambda rows: held_x[rows], data.labels[held],
        params, None, export.default_labels(recipe, None), book_rows, len(train), repeat,
    )  # fmt: skip


def _prepare_texts(
    recipe: Recipe, data: UserData, book: datasets.Dataset, train: np.ndarray,
    held: np.ndarray, add: bool,
) -> _Prepared:  # fmt: skip
    assert data.text is not None and data.words is not None and data.label_names is not None
    num_words = recipe.input_size
    if add:
        if book.word_index is None:
            raise ValueError(f"the {book.name} dataset has no word index")
        word_index = book.word_index
    else:
        word_index = data.words.word_index()
    vocabulary = preprocessing.vocabulary_from_word_index(word_index, num_words)
    user = data.text.mapped(data.words.lookup(vocabulary))
    rows: TextRows = user.subset(train)
    dtype = np.float32 if recipe.task == "sentiment" else np.int64
    y = data.labels[train].astype(dtype)
    book_rows = 0
    if add:
        rows = TextRows.from_sequences(book.x_train).concat(rows)
        y = np.concatenate([book.y_train.astype(dtype), y])
        book_rows = len(book.y_train)
    labels = export.default_labels(recipe, book.label_names) if add else list(data.label_names)
    if recipe.task == "topics" and not add:
        recipe = replace(recipe, output=Layer(len(data.label_names), "softmax"))
    held_rows = user.subset(held)
    plan, repeat = _plan(book_rows, len(train))
    return _Prepared(
        recipe,
        lambda r: rows.multi_hot(r, num_words),
        y,
        plan,
        lambda r: held_rows.multi_hot(r, num_words),
        data.labels[held].astype(dtype),
        features.text_preprocessing(num_words),
        vocabulary,
        labels,
        book_rows,
        len(train),
        repeat,
    )


def _prepare_houses(
    recipe: Recipe, data: UserData, book: datasets.Dataset, train: np.ndarray,
    held: np.ndarray, add: bool,
) -> _Prepared:  # fmt: skip
    assert data.features is not None
    raw = data.features[train]
    prices = data.labels[train]
    if add:
        raw = np.concatenate([book.x_train, raw])
        prices = np.concatenate([book.y_train, prices])
    params = features.preprocessing_params(recipe, replace(book, x_train=raw))
    mean, std = params["mean"], params["std"]
    x = preprocessing.standardize(raw, mean, std)
    held_x = preprocessing.standardize(data.features[held], mean, std)
    book_rows = len(book.y_train) if add else 0
    plan, repeat = _plan(book_rows, len(train))
    return _Prepared(
        recipe, lambda r: x[r], prices.astype(np.float32), plan, lambda r: held_x[r],
        data.labels[held].astype(np.float32), params, None, None, book_rows, len(train), repeat,
    )  # fmt: skip


# ------------------------------------------------------------------------------ training


def _fit(
    prepared: _Prepared, seed: int, verbose: int
) -> tuple[Any, dict[str, list[float]], dict[str, Any]]:
    """Fit for at most the recipe's epochs, watching a validation slice of the user's training
    rows, and keep the weights of the epoch that did best on it (the holdout stays unseen)."""
    import keras

    from training.userdata.streaming import Batches

    recipe = prepared.recipe
    user = np.arange(prepared.book_rows, prepared.book_rows + prepared.user_rows)
    count = round(len(user) * VALIDATION_SHARE)
    plan = prepared.plan
    if count >= MIN_VALIDATION_ROWS:
        validation = np.sort(np.random.default_rng(seed).choice(user, count, replace=False))
        plan = plan[~np.isin(plan, validation)]
        watched = Batches(prepared.features, prepared.targets, validation, 512)
    else:  # too few rows to spare: watch the holdout, train for the recipe's epochs
        watched = Batches(
            prepared.holdout_features,
            prepared.holdout_targets,
            np.arange(len(prepared.holdout_targets)),
            512,
        )
    keras.utils.set_random_seed(seed)
    model = build_model(recipe)
    callbacks = []
    if count >= MIN_VALIDATION_ROWS:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=recipe.epochs, restore_best_weights=True
            )
        )
    history = model.fit(
        Batches(prepared.features, prepared.targets, plan, recipe.batch_size, shuffle_seed=seed),
        validation_data=watched,
        epochs=recipe.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    curves = {key: [float(v) for v in values] for key, values in history.history.items()}
    best = int(np.argmin(curves["val_loss"])) + 1 if callbacks else recipe.epochs
    choice = {"epochs": best, "validation_rows": count if callbacks else 0}
    if verbose and callbacks:
        print(f"kept the weights of epoch {best}, best on {count} training rows held aside")
    return model, curves, choice


# ------------------------------------------------------------------------------ scoring


def _serving(request: Request) -> Candidate | None:
    versions = artifacts.list_versions(request.models_dir, request.name)
    version = request.serving_version or (versions[-1] if versions else None)
    if version is None:
        return None
    return Candidate.stored(artifacts.version_dir(request.models_dir, request.name, version))


def _holdout_set(data: UserData, held: np.ndarray) -> EvalSet:
    title = "user holdout"
    if data.label_names is None:
        assert data.features is not None
        return EvalSet(title, data.labels[held], features=data.features[held])
    truth = np.asarray(data.label_names)[data.labels[held]]
    if data.images is not None:
        return EvalSet(title, truth, images=data.images[held])
    assert data.text is not None
    return EvalSet(title, truth, text=data.text.subset(held), words=data.words)


def _test_set(name: str, book: datasets.Dataset, data_dir: str | Path | None) -> EvalSet:
    """The book's test set as the server would see it (texts decoded back to words)."""
    title = "book test set"
    if name == "housing":
        return EvalSet(title, np.asarray(book.y_test, dtype=np.float64), features=book.x_test)
    if name == "mnist":
        images = preprocessing.pixel_batch_to_rows(book.x_test)
        return EvalSet(title, np.asarray([str(int(y)) for y in book.y_test]), images=images)
    sequences, labels = datasets.load_full_sequences(name, data_dir)
    index_word = {
        rank + preprocessing.INDEX_FROM: word
        for word, rank in datasets.load_word_index(name, data_dir).items()
    }
    texts = [preprocessing.sequence_to_text(sequence, index_word) for sequence in sequences]
    names = ["negative", "positive"] if name == "imdb" else (book.label_names or [])
    return evaluation.text_set(title, texts, np.asarray(names)[np.asarray(labels, dtype=np.int64)])


def _scores(new: Candidate, serving: Candidate | None, rows: EvalSet) -> Scores:
    return Scores(
        len(rows),
        evaluation.score(new, rows),
        evaluation.score(serving, rows) if serving is not None else None,
    )


def decide(
    metric: str,
    holdout: Scores,
    test: Scores,
    promote_if_better: bool,
    tolerance: float | None = None,
    serving_version: int | None = None,
) -> tuple[bool, str]:
    """Whether to publish, and why: with `promote_if_better`, only a model that beats the
    serving one on the user's holdout and loses at most `tolerance` on the book's test set."""
    if not promote_if_better:
        return True, "published (no --promote-if-better)"
    if holdout.serving is None or test.serving is None:
        return True, "published: no version is serving, so there is nothing to beat"
    allowed = TOLERANCE[metric] if tolerance is None else tolerance
    higher = metric != "mae"
    beats = holdout.new > holdout.serving if higher else holdout.new < holdout.serving
    limit = test.serving - allowed if higher else test.serving + allowed
    keeps = test.new >= limit if higher else test.new <= limit
    than = f"version {serving_version}" if serving_version else "the serving version"
    holdout_text = (
        f"{metric} on the holdout {_fmt(metric, holdout.new)} "
        f"{'beats' if beats else 'does not beat'} {than}'s {_fmt(metric, holdout.serving)}"
    )
    test_text = (
        f"on the book's test set {_fmt(metric, test.new)} "
        f"{'is within' if keeps else 'is past'} the tolerance "
        f"({'≥' if higher else '≤'} {_fmt(metric, limit)}: {than}'s "
        f"{_fmt(metric, test.serving)} {'−' if higher else '+'} {_fmt(metric, allowed)})"
    )
    publish = beats and keeps
    verdict = "promoted" if publish else "not published"
    return publish, f"{verdict}: {holdout_text}; {test_text}"


def _fmt(metric: str, value: float) -> str:
    return f"{value:.4f}" if metric != "mae" else f"{value:.3f}"


def table(outcome: Outcome) -> str:
    """The closing table: the new model and the serving version on both evaluation sets."""
    metric = outcome.metric
    head_h = f"user holdout ({outcome.holdout.rows} rows)"
    head_t = f"book test set ({outcome.test.rows} rows)"
    lines = [f"{metric:<20} {head_h:>28} {head_t:>28}"]
    lines.append(
        f"{'new model':<20} {_fmt(metric, outcome.holdout.new):>28} "
        f"{_fmt(metric, outcome.test.new):>28}"
    )
    if outcome.serving_version is not None:
        assert outcome.holdout.serving is not None and outcome.test.serving is not None
        lines.append(
            f"{f'serving version {outcome.serving_version}':<20} "
            f"{_fmt(metric, outcome.holdout.serving):>28} {_fmt(metric, outcome.test.serving):>28}"
        )
    else:
        lines.append(f"{'(no version serving)':<20}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ publishing


def _provenance(
    data: UserData, request: Request, seed: int, train: np.ndarray, held: np.ndarray,
    prepared: _Prepared,
) -> dict[str, Any]:  # fmt: skip
    record: dict[str, Any] = {
        "path": str(request.data.resolve()),
        "format": data.format,
        "sha256": data.sha256,
        "rows": len(data),
        "mode": request.mode,
        "holdout": request.holdout,
        "seed": seed,
        "train_rows": len(train),
        "holdout_rows": len(held),
        "repeat": prepared.repeat,
    }
    if data.format == "folder":
        record["files"] = data.files
        record["sha256_of"] = "each picture's path and sha256, in path order"
    if data.label_names is not None:
        record["rows_per_label"] = data.rows_per_label()
    else:
        record["price_range"] = [float(data.labels.min()), float(data.labels.max())]
    if prepared.vocabulary is not None:
        record["vocabulary"] = "book" if request.mode == "add" else "user"
    return record


def _export(
    request: Request,
    prepared: _Prepared,
    seed: int,
    model: Any,
    curves: dict[str, list[float]],
    book: datasets.Dataset,
    outcome: Outcome,
) -> tuple[int, Path]:
    import json

    metric = outcome.metric
    metrics = {f"test_{metric}": outcome.test.new, f"holdout_{metric}": outcome.holdout.new}
    book_files = book.files if request.mode == "add" else {
        name: digest for name, digest in book.files.items() if "word_index" not in name
    }  # fmt: skip
    manifest = export.build_manifest(
        prepared.recipe,
        seed=seed,
        metrics=metrics,
        dataset={
            "name": book.name,
            "files": book_files,
            "train_size": prepared.book_rows + prepared.user_rows,
            "test_size": outcome.test.rows,
            "user_data": outcome.provenance,
        },
        preprocessing=prepared.preprocessing,
        labels=prepared.labels,
    )
    manifest["evaluation"] = {
        "metric": metric,
        "serving_version": outcome.serving_version,
        "holdout": vars(outcome.holdout),
        "test": vars(outcome.test),
        "promote_if_better": request.promote_if_better,
        "decision": outcome.reason,
    }
    plot_recipe = replace(prepared.recipe, validation="holdout")

    def write_files(folder: Path) -> None:
        model.save(folder / artifacts.MODEL_FILE)
        if prepared.vocabulary is not None:
            (folder / artifacts.VOCABULARY_FILE).write_text(
                json.dumps(prepared.vocabulary), encoding="utf-8"
            )
        plots.save_history_plot(plot_recipe, curves, folder / artifacts.HISTORY_FILE)

    return export.export_version(request.models_dir, request.name, manifest, write_files)


def _progress(verbose: int, what: str) -> formats.StartProgress | None:
    if not verbose:
        return None

    def start(total: int, unit: str) -> formats.Progress:
        import keras

        print(f"{what} ({total} {unit}s)", flush=True)
        bar = keras.utils.Progbar(total, unit_name=unit)
        return lambda done: bar.update(min(done, total))

    return start
