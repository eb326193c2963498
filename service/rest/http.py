"""Reading request bodies and writing JSON responses fast and strictly (orjson, no pydantic)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from service.errors import BadRequestError, UnsupportedMediaTypeError

# curl -d sends form-urlencoded unless told otherwise; the body is JSON all the same.
JSON_TYPES = ("application/json", "", "application/x-www-form-urlencoded")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    """Whether a media type (from `media_type`) is read as a JSON body."""
    return kind in JSON_TYPES or kind.endswith("+json")


def parse_json(body: bytes) -> Any:
    if not body:
        raise BadRequestError("the request body is empty: expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequestError(f"malformed JSON: {error}") from None


async def read_json(request: Request) -> Any:
    """The body parsed as JSON; 415 for another content type, 400 for malformed JSON."""
    kind = media_type(request)
    if not is_json(kind):
        raise UnsupportedMediaTypeError(f"unsupported content type {kind!r}: send application/json")
    return parse_json(await request.body())


def json_response(
    payload: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def error_response(
    message: str, status_code: int, headers: dict[str, str] | None = None
) -> Response:
    return json_response({"error": message}, status_code, headers)
