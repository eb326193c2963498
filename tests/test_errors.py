"""One table says what every error answers, on REST and on gRPC alike."""

from __future__ import annotations

import inspect

import grpc

from service import errors


def _error_classes() -> list[type[errors.DlwpError]]:
    return [
        kind
        for _, kind in inspect.getmembers(errors, inspect.isclass)
        if issubclass(kind, errors.DlwpError)
    ]


def test_every_error_class_has_its_own_row_with_a_real_grpc_code():
    for kind in _error_classes():
        assert kind in errors.STATUS, f"{kind.__name__} needs a row in errors.STATUS"
        status = errors.STATUS[kind]
        assert grpc.StatusCode[status.grpc] is not None
        assert 400 <= status.http < 600


def test_client_mistakes_are_4xx_and_overload_says_unavailable():
    status = errors.status_of
    assert status(errors.InvalidInputError("x")) == (422, "INVALID_ARGUMENT")
    assert status(errors.BadRequestError("x")) == (400, "INVALID_ARGUMENT")
    assert status(errors.ModelNotFoundError("x")) == (404, "NOT_FOUND")
    assert status(errors.UnavailableError("x")) == (503, "UNAVAILABLE")
    assert status(errors.DeadlineExceededError("x")) == (504, "DEADLINE_EXCEEDED")
    assert errors.InvalidInputError("x").status_code == 422


def test_anything_else_is_an_internal_error():
    assert errors.status_of(RuntimeError("a bug")) == (500, "INTERNAL")

    class Unlisted(errors.BadRequestError):
        pass

    assert errors.status_of(Unlisted("x")) == (400, "INVALID_ARGUMENT"), "its nearest base's row"
