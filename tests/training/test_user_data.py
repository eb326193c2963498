"""A user's data for `dlwp train --data`: every format reads, every problem names its place."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.model import preprocessing
from training.userdata import formats, split
from training.userdata.errors import UserDataError
from training.userdata.rows import TextRows, WordTable

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "userdata"
TOPICS = ["cocoa", "grain", "veg-oil", "earn", "acq"]  # enough of the 46 for these tests
HEADER = "CRIM,ZN,INDUS,CHAS,NOX,RM,AGE,DIS,RAD,TAX,PTRATIO,B,LSTAT,MEDV"
HOUSE = "0.00632,18,2.31,0,0.538,6.575,65.2,4.09,1,296,15.3,396.9,4.98"


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _problems(name: str, path: Path, **kwargs: object) -> str:
    with pytest.raises(UserDataError) as caught:
        formats.read(name, path, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# ------------------------------------------------------------------------------ each format


@pytest.mark.parametrize("sample", ["reviews.jsonl", "reviews.csv"])
def test_reviews_read_as_json_lines_or_csv(sample):
    data = formats.read("imdb", FIXTURES / sample)

    assert len(data) == 6
    assert data.label_names == ["negative", "positive"]
    assert data.rows_per_label() == {"negative": 3, "positive": 3}
    assert data.format == sample.split(".")[1]
    assert len(data.sha256) == 64


@pytest.mark.parametrize("sample", ["wires.jsonl", "wires.csv"])
def test_wires_with_book_topics_keep_the_book_label_numbers(sample):
    data = formats.read("reuters", FIXTURES / sample, topics=TOPICS)

    assert data.label_names == TOPICS
    assert data.rows_per_label() == {"cocoa": 0, "grain": 2, "veg-oil": 0, "earn": 2, "acq": 2}


def test_wires_without_a_topic_list_carry_their_own_topics_in_name_order():
    data = formats.read("reuters", FIXTURES / "wires.jsonl")

    assert data.label_names == ["acq", "earn", "grain"]
    assert data.rows_per_label() == {"acq": 2, "earn": 2, "grain": 2}


def test_houses_read_in_any_column_order_with_medv_or_price(tmp_path):
    reordered = tmp_path / "houses.csv"
    names = HEADER.split(",")[:-1]
    values = HOUSE.split(",")
    reordered.write_text(
        "price," + ",".join(reversed(names)) + "\n" + "21.5," + ",".join(reversed(values)) + "\n"
    )

    books = formats.read("housing", FIXTURES / "houses.csv")
    mine = formats.read("housing", reordered)

    assert books.features is not None and mine.features is not None
    assert books.features.shape == (6, 13) and books.labels[0] == 24.0
    np.testing.assert_allclose(mine.features[0], [float(v) for v in values])
    assert mine.labels.tolist() == [21.5]


def test_digit_folder_reads_pictures_of_any_size_through_the_server_preprocessing():
    data = formats.read("mnist", FIXTURES / "digits")
    first = sorted((FIXTURES / "digits" / "0").iterdir())[0]

    assert len(data) == 20 and data.files == 20
    assert data.rows_per_label() == {str(digit): 2 for digit in range(10)}
    assert data.images is not None
    np.testing.assert_array_equal(
        data.images[0], preprocessing.image_bytes_to_rows(first.read_bytes())[0]
    )


def test_jpeg_pictures_read_beside_png(tmp_path):
    folder = tmp_path / "digits"
    shutil.copytree(FIXTURES / "digits", folder)
    png = next((folder / "5").iterdir())
    Image.open(png).convert("L").save(folder / "5" / "scan.JPG", format="JPEG")

    data = formats.read("mnist", folder)

    assert data.rows_per_label()["5"] == 3


def test_gzip_compressed_json_lines_read_the_same(tmp_path):
    packed = tmp_path / "reviews.jsonl.gz"
    packed.write_bytes(gzip.compress((FIXTURES / "reviews.jsonl").read_bytes()))

    assert formats.read("imdb", packed).rows_per_label() == {"negative": 3, "positive": 3}


def test_streamed_rows_are_the_vectors_the_server_builds_from_the_text():
    data = formats.read("imdb", FIXTURES / "reviews.jsonl")
    assert data.words is not None and data.text is not None
    vocabulary = preprocessing.vocabulary_from_word_index(data.words.word_index(), 20)
    texts = [line.split('"text": "')[1].split('", "label"')[0]
             for line in (FIXTURES / "reviews.jsonl").read_text().splitlines()]  # fmt: skip

    streamed = data.text.mapped(data.words.lookup(vocabulary)).multi_hot(np.arange(6), 20)

    np.testing.assert_array_equal(streamed, preprocessing.texts_to_multi_hot(texts, vocabulary, 20))


def test_book_sequences_and_subsets_keep_their_rows():
    rows = TextRows.from_sequences([[1, 5, 5, 7], [1, 2], [1, 9, 3]])

    picked = rows.subset(np.array([2, 0]))

    assert picked.multi_hot(np.arange(2), 10).nonzero()[1].tolist() == [1, 3, 9, 1, 5, 7]


def test_vocabulary_ranks_words_by_count_like_the_book_index():
    data = formats.read("imdb", FIXTURES / "reviews.jsonl")
    assert data.words is not None

    index = data.words.word_index()

    assert index["a"] == 1  # the most frequent word ranks first
    assert sorted(index.values()) == list(range(1, len(index) + 1))


def test_words_of_equal_count_rank_by_first_appearance():
    words = WordTable()
    for text in ["zeta yak xi wolf", "wolf xi yak zeta", "vole"]:
        words.row_ids(preprocessing.tokenize(text))

    assert list(words.word_index()) == ["zeta", "yak", "xi", "wolf", "vole"]


# ------------------------------------------------------------------------------ bad data


def test_a_malformed_json_line_is_named_by_file_and_line(tmp_path):
    path = _write(tmp_path, "r.jsonl", '{"text": "good", "label": "positive"}\n{"text": "bad\n')

    assert f"{path}:2: not valid JSON" in _problems("imdb", path)


def test_an_unknown_label_names_line_column_and_what_is_accepted(tmp_path):
    path = _write(tmp_path, "r.csv", "text,label\nnice film,positive\nawful,postive\n")

    message = _problems("imdb", path)

    assert f"{path}:3: column 'label': unknown label 'postive'" in message
    assert "expected 'positive' or 'negative'" in message


def test_an_unknown_topic_in_add_mode_lists_the_accepted_topics(tmp_path):
    path = _write(tmp_path, "w.jsonl", '{"text": "profit up", "topic": "earnings"}\n')

    message = _problems("reuters", path, topics=TOPICS)

    assert f"{path}:1: column 'topic': unknown topic 'earnings' (did you mean 'earn'?)" in message
    assert "one of the 5: cocoa, grain, veg-oil, earn, acq" in message


@pytest.mark.parametrize(
    ("name", "text"), [("r.jsonl", ""), ("r.csv", ""), ("r.csv", "text,label\n")]
)
def test_an_empty_file_is_refused(tmp_path, name, text):
    path = _write(tmp_path, name, text)
    data = formats.read("imdb", path)

    with pytest.raises(UserDataError, match=r"has no rows \(an empty file\)"):
        split.check(data, "add", 0.2)


def test_a_misspelled_column_is_named_in_the_header(tmp_path):
    path = _write(tmp_path, "r.csv", "text,lable\nnice film,positive\n")

    assert f"{path}:1: column 'label': missing (found 'lable': misspelled?) in the header" in (
        _problems("imdb", path)
    )


def test_a_missing_json_field_is_named_on_its_line(tmp_path):
    path = _write(tmp_path, "w.jsonl", '{"text": "profit up", "topic": "earn"}\n{"text": "x"}\n')

    assert f"{path}:2: column 'topic': missing" in _problems("reuters", path, topics=TOPICS)


def test_a_non_numeric_feature_names_its_line_and_column(tmp_path):
    path = _write(tmp_path, "h.csv", f"{HEADER}\n{HOUSE},24\n{HOUSE.replace('6.575', 'six')},21\n")

    assert f"{path}:3: column 'RM': 'six' is not a number" in _problems("housing", path)


def test_an_empty_text_is_refused_on_its_line(tmp_path):
    lines = '{"text": "fine", "label": 1}\n{"text": " !? ", "label": 0}\n'
    path = _write(tmp_path, "r.jsonl", lines)

    assert f"{path}:2: column 'text': the text has no words" in _problems("imdb", path)


def test_every_problem_of_a_file_is_listed_at_once(tmp_path):
    lines = "text,label\nok,maybe\n,positive\ngood,positive\nbad,0,extra\n"
    path = _write(tmp_path, "r.csv", lines)

    message = _problems("imdb", path)

    assert "(3 problems)" in message
    for line in (2, 3, 5):
        assert f"{path}:{line}:" in message


def test_a_corrupt_picture_is_named_by_its_path(tmp_path):
    folder = tmp_path / "digits"
    shutil.copytree(FIXTURES / "digits", folder)
    broken = folder / "7" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")

    assert f"{broken}: cannot be used as a digit picture: could not decode the image" in (
        _problems("mnist", folder)
    )


def test_a_subfolder_that_is_not_a_digit_is_refused(tmp_path):
    folder = tmp_path / "digits"
    shutil.copytree(FIXTURES / "digits", folder)
    (folder / "seven").mkdir()

    assert f"{folder / 'seven'}: is not a digit folder: expected folders named 0 … 9" in (
        _problems("mnist", folder)
    )


def test_a_file_that_is_not_a_picture_is_refused(tmp_path):
    folder = tmp_path / "digits"
    (folder / "4").mkdir(parents=True)
    (folder / "4" / "notes.txt").write_text("scanned on Tuesday")

    assert "notes.txt: not a PNG or JPEG file" in _problems("mnist", folder)


def test_too_few_examples_of_a_label_for_the_holdout_is_refused(tmp_path):
    path = _write(tmp_path, "w.csv", "text,topic\nprofit up,earn\nprofit down,earn\nwheat,grain\n")
    data = formats.read("reuters", path, topics=TOPICS)

    with pytest.raises(UserDataError, match="label 'grain' has 1 example: holding out 20%"):
        split.check(data, "add", 0.2)


def test_only_mode_needs_two_labels(tmp_path):
    path = _write(tmp_path, "r.csv", "text,label\ngreat,positive\nsuperb,positive\n")
    data = formats.read("imdb", path)

    with pytest.raises(UserDataError, match="--data-mode only needs at least 2 labels"):
        split.check(data, "only", 0.2)


def test_file_problems_come_before_judgements_of_the_whole(tmp_path):
    # One broken line and a label with a single example: the broken line is what is reported.
    path = _write(tmp_path, "r.csv", "text,label\ngreat,positive\nsuperb,positve\nbad,negative\n")

    message = _problems("imdb", path)

    assert f"{path}:3: column 'label'" in message and "holding out" not in message


def test_an_unknown_file_type_says_what_is_accepted(tmp_path):
    path = _write(tmp_path, "reviews.txt", "great film\n")

    assert "expected .jsonl (JSON Lines) or .csv" in _problems("imdb", path)


# ------------------------------------------------------------------------------ the holdout


def test_holdout_keeps_back_a_seeded_share_of_every_label():
    data = formats.read("imdb", FIXTURES / "reviews.jsonl")

    train, held = split.holdout_split(data, 0.34, seed=3)
    again = split.holdout_split(data, 0.34, seed=3)

    assert len(held) == 2 and sorted(data.labels[held].tolist()) == [0, 1]
    assert set(train).isdisjoint(held) and len(train) + len(held) == 6
    assert np.array_equal(again[1], held)


def test_a_dark_on_white_picture_and_its_negative_read_the_same(tmp_path):
    digit = np.full((64, 64), 255, dtype=np.uint8)
    digit[10:54, 28:36] = 0

    def png(array: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return buffer.getvalue()

    np.testing.assert_allclose(
        preprocessing.image_bytes_to_rows(png(digit)),
        preprocessing.image_bytes_to_rows(png(255 - digit)),
    )
