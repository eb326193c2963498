"""The one exception hierarchy of the project; each class carries its status."""

from __future__ import annotations


class DlwpError(Exception):
    """Base class: every error a client can cause or meet, with the HTTP status it maps to."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(DlwpError, ValueError):
    """The input cannot be turned into a model tensor; the message says what is accepted."""

    status_code = 422


class BadRequestError(DlwpError):
    """The request itself is malformed (not JSON, invalid UTF-8, wrong structure)."""

    status_code = 400


class PayloadTooLargeError(DlwpError):
    status_code = 413


class UnsupportedMediaTypeError(DlwpError):
    status_code = 415


class UnauthorizedError(DlwpError):
    status_code = 401


class ModelNotFoundError(DlwpError):
    """No such model, or no such version of it."""

    status_code = 404


class ArtifactError(DlwpError):
    """A version on disk is incomplete or inconsistent and cannot be served."""

    status_code = 500


class LoadFailedError(DlwpError):
    """A requested load could not be done; the version serving before keeps serving.

    400, as the V2 repository extension (and Triton) answer a failed load.
    """

    status_code = 400


class UnavailableError(DlwpError):
    """Temporarily unable to serve: the queue is full or the model is not loaded yet."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceededError(DlwpError):
    status_code = 504


class ConflictError(DlwpError):
    """The request contradicts what is going on now (a second rollout while one runs)."""

    status_code = 409
