"""Read a user's data in the formats `dlwp train --data` accepts, checking every row.

- mnist: a folder with one subfolder per digit (`0/` … `9/`) of PNG or JPEG files, any size,
  either polarity, each read by the server's own image preprocessing.
- imdb: JSON Lines `{"text": …, "label": "positive"|"negative"}` or CSV with a `text,label`
  header (labels 1 and 0 are accepted too).
- reuters: JSON Lines or CSV with `text` and `topic`.
- housing: CSV (or JSON Lines) with the 13 feature names, in any order, and the price in $1000s
  as `MEDV` or `price`.

Text files may be gzip-compressed (`.jsonl.gz`, `.csv.gz`). Every problem names its file, line
(or image path) and column; all row problems of a file are raised together, before any
judgement of the data as a whole (`training.userdata.checks`).
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from service.errors import InvalidInputError
from service.model import preprocessing
from training.userdata.errors import Problem, ProblemLog, UserDataError
from training.userdata.rows import RowsBuilder, TextRows, WordTable

TEXT_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SENTIMENT_LABELS = {"negative": 0, "positive": 1, "0": 0, "1": 1}
PRICE_COLUMNS = ("MEDV", "price")
TASK_OF = {"mnist": "digits", "imdb": "sentiment", "reuters": "topics", "housing": "housing"}

Progress = Callable[[int], None]  # told how far reading has got
# Starts a progress display: (total, unit: "byte" or "picture") → the callback.
StartProgress = Callable[[int, str], Progress]


@dataclass
class UserData:
    """One user data set, parsed: rows of one kind, their labels (or prices) and provenance."""

    name: str
    path: Path
    format: str  # "jsonl", "csv" or "folder"
    sha256: str
    labels: np.ndarray  # a code per row (index into label_names), or the price for housing
    label_names: list[str] | None = None
    text: TextRows | None = None  # word ids of each row's distinct words
    words: WordTable | None = None
    images: np.ndarray | None = None  # (n, 784) float32 model rows
    features: np.ndarray | None = None  # (n, 13) float64 in HOUSING_FEATURES order
    files: int = 1
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def rows_per_label(self) -> dict[str, int]:
        if self.label_names is None:
            return {}
        counts = np.bincount(self.labels.astype(np.int64), minlength=len(self.label_names))
        return {name: int(count) for name, count in zip(self.label_names, counts, strict=True)}


def read(
    name: str,
    path: Path,
    *,
    topics: list[str] | None = None,
    progress: StartProgress | None = None,
) -> UserData:
    """Read and check `path` for model `name`; raise UserDataError listing every problem.

    `topics`: the topic names a reuters topic must be one of (None: any, the data's own).
    `progress(total, unit)` returns a callback told how far reading has got.
    """
    if not path.exists():
        raise UserDataError([Problem(str(path), "no such file or folder")])
    if name == "mnist":
        return _read_digit_folder(path, progress)
    if path.is_dir():
        raise UserDataError(
            [Problem(str(path), f"is a folder; {name} takes one JSON Lines or CSV file")]
        )
    fmt = text_format(path)
    if name == "housing":
        return _read_houses(path, fmt, progress)
    return _read_texts(name, path, fmt, topics, progress)


def text_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = TEXT_SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise UserDataError(
            [
                Problem(
                    str(path),
                    "unknown file type: expected .jsonl (JSON Lines) or .csv with a header, "
                    "optionally gzip-compressed (.jsonl.gz, .csv.gz)",
                )
            ]
        )
    return fmt


# ------------------------------------------------------------------------------ records


class _Lines:
    """A file's lines as text with 1-based numbers; UTF-8 problems noted, reading continues."""

    def __init__(self, path: Path, log: ProblemLog, progress: Progress | None) -> None:
        self.path = path
        self.log = log
        self.progress = progress
        self.number = 0
        self.digest = hashlib.sha256()

    def __iter__(self) -> Iterator[str]:
        with open(self.path, "rb") as raw:
            hashed = io.BufferedReader(_Hashing(raw, self.digest), 1 << 20)
            stream: Any = gzip.GzipFile(fileobj=hashed, mode="rb") if _gz(self.path) else hashed
            try:
                for line in stream:
                    self.number += 1
                    if self.progress is not None and self.number % 2000 == 0:
                        self.progress(raw.tell())
                    try:
                        yield line.decode("utf-8-sig" if self.number == 1 else "utf-8")
                    except UnicodeDecodeError:
                        self.log.add(self.place, "not UTF-8 text: save the file as UTF-8")
                        yield line.decode("utf-8", errors="replace")
            except (OSError, EOFError) as error:  # a truncated or corrupt .gz
                self.log.add(f"{self.path}", f"cannot be read to the end: {error}")
            if self.progress is not None:
                self.progress(raw.tell())

    @property
    def place(self) -> str:
        return f"{self.path}:{self.number}"


class _Hashing(io.RawIOBase):
    """A binary file that feeds every byte read into a digest (the provenance's sha256)."""

    def __init__(self, raw: IO[bytes], digest: Any) -> None:
        self.raw = raw
        self.digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.digest.update(memoryview(buffer)[:count])
        return int(count)


def _gz(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _records(
    path: Path, fmt: str, required: list[str], log: ProblemLog, lines: _Lines
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(place, fields) for every row; rows missing a required column are logged, not yielded."""
    if fmt == "jsonl":
        for text in lines:
            if log.full:
                return
            if not text.strip():
                continue
            try:
                record = orjson.loads(text)
            except orjson.JSONDecodeError as error:
                log.add(lines.place, f"not valid JSON ({error.msg}); expected one object a line")
                continue
            if not isinstance(record, dict):
                log.add(lines.place, f"expected a JSON object with {_names(required)}")
                continue
            missing = [column for column in required if column not in record]
            for column in missing:
                log.add(lines.place, _missing(column, list(record)), column)
            if not missing:
                yield lines.place, record
        return
    reader = csv.reader(iter(lines))
    try:
        header = [column.strip() for column in next(reader)]
    except StopIteration:
        return
    except csv.Error as error:
        log.add(f"{path}:1", f"the header cannot be read as CSV: {error}")
        return
    missing = [column for column in required if column not in header]
    if missing:
        for column in missing:
            log.add(f"{path}:1", _missing(column, header) + " in the header", column)
        return
    line = reader.line_num
    while not log.full:
        place = f"{path}:{line + 1}"
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            log.add(place, f"not valid CSV: {error}")
            line = reader.line_num
            continue
        line = reader.line_num
        if not values or all(not value.strip() for value in values):
            continue
        if len(values) != len(header):
            log.add(place, f"has {len(values)} fields; the header has {len(header)}")
            continue
        yield place, dict(zip(header, values, strict=True))


def _missing(column: str, present: list[str]) -> str:
    close = difflib.get_close_matches(column, [str(p) for p in present], n=1, cutoff=0.6)
    hint = f" (found {close[0]!r}: misspelled?)" if close else ""
    return f"missing{hint}"


def _names(columns: list[str]) -> str:
    return ", ".join(repr(column) for column in columns)


# ------------------------------------------------------------------------------ reviews, wires


def _read_texts(
    name: str,
    path: Path,
    fmt: str,
    topics: list[str] | None,
    progress: StartProgress | None,
) -> UserData:
    label_column = "label" if name == "imdb" else "topic"
    log = ProblemLog()
    lines = _Lines(path, log, progress(path.stat().st_size, "byte") if progress else None)
    words = WordTable()
    rows = RowsBuilder()
    codes: list[int] = []
    if name == "imdb":
        label_codes: dict[str, int] = dict(SENTIMENT_LABELS)
        label_names = ["negative", "positive"]
    else:
        label_codes = {topic: code for code, topic in enumerate(topics or [])}
        label_names = list(topics or [])
    unknown_labels = False
    for place, record in _records(path, fmt, ["text", label_column], log, lines):
        text = record["text"]
        if not isinstance(text, str):
            log.add(place, f"expected the text as a string, got {_json_type(text)}", "text")
            continue
        label = _label_text(record[label_column])
        code = label_codes.get(label) if label is not None else None
        if code is None and name == "reuters" and topics is None and label:
            code = label_codes[label] = len(label_names)
            label_names.append(label)
        if code is None:
            unknown_labels = True
            log.add(place, _bad_label(name, record[label_column], label_names), label_column)
            continue
        tokens = preprocessing.tokenize(text)
        if not tokens:
            log.add(place, "the text has no words", "text")
            continue
        rows.append(words.row_ids(tokens))
        codes.append(code)
    hint = None
    if unknown_labels and name == "reuters" and topics is not None:
        hint = f"with --data-mode add a topic is one of the {len(topics)}: {', '.join(topics)}"
    _raise(log, hint)
    labels = np.asarray(codes, dtype=np.int64)
    if name == "reuters" and topics is None:  # the data's own topics, in name order
        order = sorted(range(len(label_names)), key=lambda code: label_names[code])
        relabel = np.empty(len(order), dtype=np.int64)
        relabel[order] = np.arange(len(order))
        labels = relabel[labels] if len(labels) else labels
        label_names = [label_names[code] for code in order]
    return UserData(
        name, path, fmt, lines.digest.hexdigest(), labels, label_names,
        text=rows.build(), words=words,
    )  # fmt: skip


def _label_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    return None


def _bad_label(name: str, value: Any, names: list[str]) -> str:
    if name == "imdb":
        return f"unknown label {value!r}: expected 'positive' or 'negative' (or 1 / 0)"
    if not isinstance(value, str) or not value.strip():
        return f"expected a topic name, got {value!r}"
    close = difflib.get_close_matches(value.strip(), names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown topic {value!r}{hint}"


def _json_type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _raise(log: ProblemLog, hint: str | None = None) -> None:
    if log.problems:
        raise UserDataError(log.problems, truncated=log.full, hint=hint)


# ------------------------------------------------------------------------------ houses


def _read_houses(path: Path, fmt: str, progress: StartProgress | None) -> UserData:
    log = ProblemLog()
    lines = _Lines(path, log, progress(path.stat().st_size, "byte") if progress else None)
    features = list(preprocessing.HOUSING_FEATURES)
    price_column = _price_column(path, fmt)
    rows: list[list[float]] = []
    prices: list[float] = []
    for place, record in _records(path, fmt, [*features, price_column], log, lines):
        values = [_number(record[column], place, column, log) for column in features]
        price = _number(record[price_column], place, price_column, log)
        if price is not None and price < 0:
            log.add(place, f"a price cannot be negative, got {price:g}", price_column)
            continue
        if price is not None and None not in values:
            rows.append(values)  # type: ignore[arg-type]
            prices.append(price)
    _raise(log)
    return UserData(
        "housing", path, fmt, lines.digest.hexdigest(), np.asarray(prices, dtype=np.float64),
        features=np.asarray(rows, dtype=np.float64).reshape(-1, len(features)),
    )  # fmt: skip


def _price_column(path: Path, fmt: str) -> str:
    """MEDV or price, from the CSV header or the first JSON line (MEDV if neither is there)."""
    try:
        opener = gzip.open if _gz(path) else open
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline()
    except (OSError, EOFError):
        return PRICE_COLUMNS[0]
    if fmt == "csv":
        names = [name.strip() for name in next(csv.reader([first]), [])]
    else:
        try:
            record = orjson.loads(first)
        except orjson.JSONDecodeError:
            return PRICE_COLUMNS[0]
        names = list(record) if isinstance(record, dict) else []
    present = [column for column in PRICE_COLUMNS if column in names]
    return present[0] if present else PRICE_COLUMNS[0]


def _number(value: Any, place: str, column: str, log: ProblemLog) -> float | None:
    if isinstance(value, bool):
        number = math.nan
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(str(value).strip())
        except ValueError:
            log.add(place, f"{value!r} is not a number", column)
            return None
    if not math.isfinite(number):
        log.add(place, f"expected a finite number, got {value!r}", column)
        return None
    return number


# ------------------------------------------------------------------------------ digit pictures


def _read_digit_folder(path: Path, progress: StartProgress | None) -> UserData:
    if not path.is_dir():
        raise UserDataError(
            [Problem(str(path), "mnist takes a folder with one subfolder per digit, 0/ … 9/")]
        )
    log = ProblemLog()
    files: list[tuple[Path, int]] = []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            log.add(str(entry), "a file beside the digit folders: expected only folders 0/ … 9/")
        elif entry.name not in {str(digit) for digit in range(10)}:
            log.add(str(entry), "is not a digit folder: expected folders named 0 … 9")
        else:
            for image in sorted(entry.rglob("*")):
                if image.is_file() and not image.name.startswith("."):
                    files.append((image, int(entry.name)))
    _raise(log)
    report = progress(len(files), "picture") if progress else None
    digest = hashlib.sha256()
    rows = np.zeros((len(files), preprocessing.MNIST_PIXELS), dtype=np.float32)
    labels = np.zeros(len(files), dtype=np.int64)
    for position, (image, digit) in enumerate(files):
        if log.full:
            break
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            log.add(str(image), "not a PNG or JPEG file (expected .png, .jpg or .jpeg)")
            continue
        data = image.read_bytes()
        digest.update(f"{image.relative_to(path).as_posix()}\0".encode())
        digest.update(hashlib.sha256(data).digest())
        try:
            rows[position] = preprocessing.image_bytes_to_rows(data)[0]
        except InvalidInputError as error:
            log.add(str(image), f"cannot be used as a digit picture: {error.message}")
            continue
        labels[position] = digit
        if report is not None and position % 100 == 0:
            report(position)
    if report is not None:
        report(len(files))
    _raise(log)
    return UserData(
        "mnist", path, "folder", digest.hexdigest(), labels, [str(d) for d in range(10)],
        images=rows, files=len(files),
    )  # fmt: skip
