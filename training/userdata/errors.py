"""Problems found in a user's data, each with its place, raised together before any training."""

from __future__ import annotations

from dataclasses import dataclass

# Past this many problems in a file, reading stops: the first ones show what to fix.
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (file, and line or image path), which column, and what to do."""

    place: str
    message: str
    column: str | None = None

    def __str__(self) -> str:
        column = f": column {self.column!r}" if self.column else ""
        return f"{self.place}{column}: {self.message}"


class UserDataError(ValueError):
    """The user's data cannot be trained on; `str()` lists every problem found, one a line."""

    def __init__(
        self, problems: list[Problem], truncated: bool = False, hint: str | None = None
    ) -> None:
        self.problems = problems
        self.truncated = truncated
        lines = [str(problem) for problem in problems]
        if truncated:
            lines.append(f"(reading stopped after {len(problems)} problems; fix these first)")
        if hint:
            lines.append(hint)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"the data cannot be used ({len(problems)} {noun}); nothing was trained or "
            "published:\n  " + "\n  ".join(lines)
        )


class ProblemLog:
    """Collects row problems while a file is read; `full` says when to stop reading."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, place: str, message: str, column: str | None = None) -> None:
        self.problems.append(Problem(place, message, column))

    @property
    def full(self) -> bool:
        return len(self.problems) >= MAX_PROBLEMS
