"""The one exception hierarchy of the project, and the one table of what each error answers.

`STATUS` maps every error class to the HTTP status REST answers with and the gRPC status code
gRPC answers with; both transports look it up through `status_of`, so the two fronts can never
disagree about an error. A new error class gets its row here.
"""

from __future__ import annotations

from typing import NamedTuple


class DlwpError(Exception):
    """Base class: every error a client can cause or meet; `STATUS` says what it answers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status_code(self) -> int:
        """The HTTP status of this error (from `STATUS`)."""
        return status_of(self).http


class InvalidInputError(DlwpError, ValueError):
    """The input cannot be turned into a model tensor; the message says what is accepted."""


class BadRequestError(DlwpError):
    """The request itself is malformed (not JSON, invalid UTF-8, wrong structure)."""


class PayloadTooLargeError(DlwpError):
    """The request carries more than a limit allows (bytes, or rows for a model's queue)."""


class UnsupportedMediaTypeError(DlwpError):
    """The body's content type is not one the route reads."""


class UnauthorizedError(DlwpError):
    """A control route was called without the API key it needs."""


class ModelNotFoundError(DlwpError):
    """No such model, or no such version of it."""


class ArtifactError(DlwpError):
    """A version on disk is incomplete or inconsistent and cannot be served."""


class LoadFailedError(DlwpError):
    """A requested load could not be done; the version serving before keeps serving.

    400, as the V2 repository extension (and Triton) answer a failed load.
    """


class UnavailableError(DlwpError):
    """Temporarily unable to serve: the queue is full or the model is not loaded yet."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceededError(DlwpError):
    """No answer within the request deadline."""


class ConflictError(DlwpError):
    """The request contradicts what is going on now (a second rollout while one runs)."""


class Status(NamedTuple):
    """What an error answers on each transport."""

    http: int
    grpc: str  # a `grpc.StatusCode` member's name: this module imports no transport


# The one table (DESIGN.md "Errors" and "gRPC": 400/422 → INVALID_ARGUMENT, 404 → NOT_FOUND,
# 503 → UNAVAILABLE, 504 → DEADLINE_EXCEEDED).
STATUS: dict[type[DlwpError], Status] = {
    DlwpError: Status(500, "INTERNAL"),
    InvalidInputError: Status(422, "INVALID_ARGUMENT"),
    BadRequestError: Status(400, "INVALID_ARGUMENT"),
    PayloadTooLargeError: Status(413, "RESOURCE_EXHAUSTED"),
    UnsupportedMediaTypeError: Status(415, "INVALID_ARGUMENT"),
    UnauthorizedError: Status(401, "UNAUTHENTICATED"),
    ModelNotFoundError: Status(404, "NOT_FOUND"),
    ArtifactError: Status(500, "INTERNAL"),
    LoadFailedError: Status(400, "INVALID_ARGUMENT"),
    UnavailableError: Status(503, "UNAVAILABLE"),
    DeadlineExceededError: Status(504, "DEADLINE_EXCEEDED"),
    ConflictError: Status(409, "FAILED_PRECONDITION"),
}
INTERNAL = Status(500, "INTERNAL")  # anything that is not a DlwpError: a bug, never the client


def status_of(error: BaseException) -> Status:
    """The row of `STATUS` for `error`'s class, or its nearest listed base class."""
    for kind in type(error).__mro__:
        status = STATUS.get(kind)  # type: ignore[call-overload]
        if status is not None:
            return status
    return INTERNAL
