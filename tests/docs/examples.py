"""The documentation's examples: found in Markdown, run, and compared with the output they print.

The convention (docs/development.md, "Examples are tests"):

- A fenced ```bash, ```sh or ```python block is an example, and is run.
- The fenced ```json or ```text block right after it (only blank lines between) is its expected
  output. Without one, the example only has to succeed (exit status 0).
- `<!-- example: skip (why) -->` on the line before a block exempts it, for a command a test
  cannot run (`make serve` itself, an image build, a long training run). The reason is required.
- Expected output is matched by shape. `...` stands for "anything here": a bare `...` as an array
  element means "and more elements", as an object member "and more members", as a value "any
  value"; in text, a line of `...` is any number of lines and `...` within a line any characters.
  A number printed with decimals matches within one unit of its last printed digit (`0.73` takes
  0.7269); an integer, a string, a key or a label must be equal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNNABLE = {"bash": "bash", "sh": "bash", "python": "python"}
OUTPUT = {"json", "text"}
# Shell blocks in another dialect would silently escape the test: refused outright.
REFUSED = {"console", "shell", "shell-session", "zsh", "py", "pycon"}

FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)[^\n]*$")
SKIP = re.compile(r"^\s*<!--\s*example:\s*skip\s*(?:\((?P<why>[^)]*)\))?\s*-->\s*$")
ELLIPSIS = "..."


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence
    end: int  # 1-based line of the closing fence
    skip: str | None  # the reason, when marked to skip
    problem: str | None  # a skip marker without its reason


@dataclass(frozen=True)
class Example:
    path: Path
    line: int
    lang: str
    code: str
    expected: str | None
    expected_lang: str | None
    skip: str | None
    problem: str | None = None  # a block that breaks the convention: its test fails, saying why

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.line}"


def blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the skip marker that precedes it, if any."""
    lines = text.splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        skip, problem = _skip_reason(lines, index)
        found.append(Block(opening["lang"].lower(), "\n".join(body) + "\n", index + 1, end + 1,
                           skip, problem))  # fmt: skip
        index = end + 1
    return found


def _skip_reason(lines: list[str], fence_index: int) -> tuple[str | None, str | None]:
    """(the reason to skip the block, a problem with its marker), from the line before it."""
    before = fence_index - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    marker = SKIP.match(lines[before]) if before >= 0 else None
    if marker is None:
        return None, None
    why = (marker["why"] or "").strip()
    if not why:
        return None, "`<!-- example: skip -->` needs its reason: `<!-- example: skip (why) -->`"
    return why, None


def examples(path: Path) -> list[Example]:
    """The runnable blocks of a Markdown file, each with its expected output block."""
    text = path.read_text()
    found, lines = blocks(text), text.splitlines()
    result: list[Example] = []
    for position, block in enumerate(found):
        problem = block.problem
        if block.lang in REFUSED:
            problem = (f"```{block.lang} is not run by the example test: write ```bash (or "
                       "```python), then its output in a ```json or ```text block")  # fmt: skip
        elif block.lang not in RUNNABLE:
            continue
        following = found[position + 1] if position + 1 < len(found) else None
        expected = None
        if (following is not None and following.lang in OUTPUT
                and not any(line.strip() for line in lines[block.end : following.line - 1])):
            expected = following  # only blank lines between the two blocks
        result.append(Example(path, block.line, block.lang, block.code,
                              expected.code if expected else None,
                              expected.lang if expected else None, block.skip,
                              problem))  # fmt: skip
    return result


# ------------------------------------------------------------------------------- matching


def mismatch(expected: str, actual: str, lang: str) -> str | None:
    """Why `actual` does not have the shape of `expected`, or None when it does."""
    if lang == "json":
        return _json_mismatch(expected, actual)
    return _text_mismatch(expected, actual)


class _Any:
    """Stands for `...` in an expected JSON output."""

    def __repr__(self) -> str:
        return ELLIPSIS


ANY = _Any()
MORE = "\x00more"  # an object member or array element that stands for "and more"


def json_pattern(text: str) -> list[Any]:
    """The expected JSON values, with each bare `...` made a marker the matcher understands."""
    out: list[str] = []
    stack: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"':
            end = index + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[index : end + 1])
            index = end + 1
            continue
        if text.startswith(ELLIPSIS, index):
            previous = "".join(out).rstrip()[-1:]
            if previous == ":":
                out.append(json.dumps(MORE + ":any"))
            elif stack and stack[-1] == "{":
                out.append(json.dumps(MORE) + ": null")
            else:
                out.append(json.dumps(MORE))
            index += len(ELLIPSIS)
            continue
        if char in "[{":
            stack.append(char)
        elif char in "]}":
            stack.pop()
        out.append(char)
        index += 1
    return _values("".join(out), parse_float=_Decimal)


class _Decimal(float):
    """A float that remembers how many decimals it was printed with."""

    decimals: int

    def __new__(cls, text: str) -> _Decimal:
        value = super().__new__(cls, text)
        mantissa = text.lower().split("e")[0]
        value.decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
        value.decimals -= int(text.lower().split("e")[1]) if "e" in text.lower() else 0
        return value


def _values(text: str, **options: Any) -> list[Any]:
    decoder = json.JSONDecoder(**options)
    values, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index == len(text):
            return values
        value, index = decoder.raw_decode(text, index)
        values.append(value)


def _json_mismatch(expected: str, actual: str) -> str | None:
    try:
        got = _values(actual)
    except json.JSONDecodeError as error:
        return f"the output is not JSON ({error}): {actual[:300]!r}"
    want = json_pattern(expected)
    if len(want) != len(got):
        return f"expected {len(want)} JSON value(s), got {len(got)}: {actual[:300]!r}"
    for pattern, value in zip(want, got, strict=True):
        problem = _match(pattern, value, "$")
        if problem:
            return problem
    return None


def _match(pattern: Any, value: Any, where: str) -> str | None:
    if pattern == MORE + ":any":
        return None
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return f"{where}: expected an object, got {value!r}"
        keys = [k for k in pattern if k != MORE]
        missing = [k for k in keys if k not in value]
        if missing:
            return f"{where}: missing {missing} in {sorted(value)}"
        extra = [k for k in value if k not in pattern]
        if extra and MORE not in pattern:
            return f"{where}: unexpected {extra} (end the object with ... to allow more)"
        for key in keys:
            problem = _match(pattern[key], value[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return f"{where}: expected an array, got {value!r}"
        more = bool(pattern) and pattern[-1] == MORE
        items = pattern[:-1] if more else pattern
        if len(value) < len(items) or (not more and len(value) != len(items)):
            return f"{where}: expected {len(items)}{'+' if more else ''} items, got {len(value)}"
        for index, item in enumerate(items):
            problem = _match(item, value[index], f"{where}[{index}]")
            if problem:
                return problem
        return None
    if isinstance(pattern, _Decimal):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{where}: expected a number near {pattern}, got {value!r}"
        if abs(value - pattern) > 10.0**-pattern.decimals + 1e-9:
            return f"{where}: expected {pattern} (±{10.0 ** -pattern.decimals:g}), got {value}"
        return None
    if pattern != value or (type(pattern) is not type(value) and not _both_numbers(pattern, value)):
        return f"{where}: expected {pattern!r}, got {value!r}"
    return None


def _both_numbers(a: Any, b: Any) -> bool:
    return all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))


NUMBER = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")
ACTUAL_NUMBER = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def _text_mismatch(expected: str, actual: str) -> str | None:
    pattern: list[str] = []
    numbers: list[_Decimal] = []
    for line in expected.rstrip("\n").splitlines():
        if line.strip() == ELLIPSIS:
            pattern.append(r"(?:[^\n]*\n)*?")
            continue
        parts: list[str] = []
        for piece in re.split(r"(\.\.\.|-?\d+\.\d+(?:[eE][-+]?\d+)?|\s+)", line.rstrip()):
            if piece == ELLIPSIS:
                parts.append(r"[^\n]*?")
            elif NUMBER.fullmatch(piece):
                parts.append(ACTUAL_NUMBER)
                numbers.append(_Decimal(piece))
            elif piece.isspace():
                parts.append(r"[ \t]+")
            else:
                parts.append(re.escape(piece))
        pattern.append("".join(parts) + r"[ \t]*\n")
    normalised = "\n".join(line.rstrip() for line in actual.rstrip("\n").splitlines()) + "\n"
    found = re.fullmatch("".join(pattern), normalised)
    if found is None:
        return f"the output does not read as printed:\n--- expected\n{expected}--- got\n{actual}"
    for want, got in zip(numbers, found.groups(), strict=True):
        if abs(float(got) - want) > 10.0**-want.decimals + 1e-9:
            return f"expected {want} (±{10.0 ** -want.decimals:g}), got {got}:\n{actual}"
    return None
