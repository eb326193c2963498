"""Parsed text rows kept compact: each row's distinct word ids, flat, with offsets.

A review becomes a few hundred bytes here instead of a 40 KB multi-hot row; the multi-hot rows
are built per batch (`multi_hot`), so a file larger than memory as vectors trains in little.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from service.model import preprocessing


class WordTable:
    """Every distinct word seen, numbered by first appearance, with its occurrence count."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.counts: Counter[str] = Counter()

    def row_ids(self, words: list[str]) -> list[int]:
        """The ids of a text's distinct words (new words get the next ids); counts every word."""
        self.counts.update(words)
        ids = self.ids
        distinct = set(words)
        if distinct.difference(ids):
            # New words are numbered in the order the text uses them (never a set's order, which
            # changes from run to run), so ties in the ranking fall the same way every time.
            for word in words:
                if word not in ids:
                    ids[word] = len(ids)
        return list(map(ids.__getitem__, distinct))

    def word_index(self) -> dict[str, int]:
        """Words ranked by count, 1 = most frequent, ties by first appearance (as Keras' index)."""
        ranked = sorted(self.ids, key=lambda word: -self.counts[word])
        return {word: rank for rank, word in enumerate(ranked, start=1)}

    def lookup(self, vocabulary: Mapping[str, int]) -> np.ndarray:
        """id → model index under `vocabulary` (the OOV index for words it lacks)."""
        table = np.full(max(len(self.ids), 1), preprocessing.OOV_INDEX, dtype=np.int32)
        for word, word_id in self.ids.items():
            index = vocabulary.get(word)
            if index is not None:
                table[word_id] = index
        return table


class RowsBuilder:
    """Appends ragged integer rows; `build()` freezes them into `TextRows`."""

    def __init__(self) -> None:
        self._values = array("i")
        self._offsets = array("q", [0])

    def append(self, values: Iterable[int]) -> None:
        self._values.extend(values)
        self._offsets.append(len(self._values))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def build(self) -> TextRows:
        return TextRows(
            np.frombuffer(self._values, dtype=np.int32).copy(),
            np.frombuffer(self._offsets, dtype=np.int64).copy(),
        )


class TextRows:
    """Ragged rows of word ids (or model indices): row i is values[offsets[i]:offsets[i+1]]."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray) -> None:
        self.values = values
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_sequences(cls, sequences: Iterable[Iterable[int]]) -> TextRows:
        builder = RowsBuilder()
        for sequence in sequences:
            builder.append(sorted({int(index) for index in sequence}))
        return builder.build()

    def mapped(self, lookup: np.ndarray) -> TextRows:
        """The same rows with every value v replaced by lookup[v] (word ids → model indices)."""
        return TextRows(lookup[self.values], self.offsets)

    def subset(self, rows: np.ndarray) -> TextRows:
        starts, lengths = self._spans(rows)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return TextRows(self.values[_positions(starts, lengths)], offsets)

    def concat(self, other: TextRows) -> TextRows:
        return TextRows(
            np.concatenate([self.values, other.values.astype(self.values.dtype)]),
            np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]]),
        )

    def multi_hot(self, rows: np.ndarray, num_words: int) -> np.ndarray:
        """The model rows for `rows`: a 1 at the start mark and at every index the row holds.

        The same vector `preprocessing.texts_to_multi_hot` gives the row's text when the values
        are model indices from the same vocabulary.
        """
        starts, lengths = self._spans(rows)
        batch = np.zeros((len(rows), num_words), dtype=np.float32)
        row_of = np.repeat(np.arange(len(rows)), lengths)
        batch[row_of, self.values[_positions(starts, lengths)]] = 1.0
        batch[:, preprocessing.START_INDEX] = 1.0
        return batch

    def _spans(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, dtype=np.int64)
        starts = self.offsets[rows]
        return starts, self.offsets[rows + 1] - starts


def _positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The flat positions of several [start, start + length) spans, in order."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    begins = np.cumsum(lengths) - lengths
    positions: np.ndarray = np.arange(total, dtype=np.int64) + np.repeat(starts - begins, lengths)
    return positions
