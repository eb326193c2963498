"""Task endpoints: friendly JSON for each of the four uses (and image uploads for digits)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from service import schemas
from service.codecs import DigitsCodec, HousingCodec, TextCodec, TopicsCodec
from service.core import expect_codec
from service.deps import plane_of
from service.errors import BadRequestError, UnsupportedMediaTypeError
from service.hotpath import hot
from service.http import is_json, json_response, media_type, parse_json, read_json

router = APIRouter(prefix="/v1", tags=["tasks"])

IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 404, 413, 415, 422, 503, 504)
}


def _body(model: type[BaseModel], *content_types: str) -> dict[str, Any]:
    content = {"application/json": {"schema": model.model_json_schema()}}
    for kind in content_types:
        content[kind] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


def _answer(served: Any, predictions: list[dict[str, Any]]) -> Response:
    return json_response(
        {"model": served.name, "version": served.version, "predictions": predictions}
    )


@router.post(
    "/sentiment",
    summary="Is a movie review positive or negative? (IMDB model)",
    openapi_extra=_body(schemas.SentimentRequest),
    responses={200: {"model": schemas.SentimentResponse}, **_ERRORS},
)
@hot
async def sentiment(request: Request) -> Response:
    plane = plane_of(request)
    body = schemas.parse(schemas.SentimentRequest, await read_json(request))
    texts = body.items()
    served, outputs = await plane.predict(
        request,
        "imdb",
        None,
        lambda c: expect_codec(c, TextCodec).rows_from_texts(texts),
        len(texts),  # admitted before the texts are encoded
    )
    return _answer(served, served.codec.predictions(outputs))


@router.post(
    "/topics",
    summary="Which of 46 Reuters topics is a newswire about? (Reuters model)",
    openapi_extra=_body(schemas.TopicsRequest),
    responses={200: {"model": schemas.TopicsResponse}, **_ERRORS},
)
@hot
async def topics(request: Request) -> Response:
    plane = plane_of(request)
    body = schemas.parse(schemas.TopicsRequest, await read_json(request))
    texts = body.items()
    served, outputs = await plane.predict(
        request,
        "reuters",
        None,
        lambda c: expect_codec(c, TopicsCodec).rows_from_texts(texts),
        len(texts),  # admitted before the texts are encoded
    )
    return _answer(served, served.codec.predictions(outputs, top_k=body.top_k))


@router.post(
    "/digits",
    summary="Which digit is this? JSON pixels, or a PNG/JPEG of any size (MNIST model)",
    openapi_extra=_body(schemas.DigitsRequest, *IMAGE_TYPES[:2], "multipart/form-data"),
    responses={200: {"model": schemas.DigitsResponse}, **_ERRORS},
)
@hot
async def digits(request: Request) -> Response:
    plane = plane_of(request)
    kind = media_type(request)
    if kind in IMAGE_TYPES:
        image = await request.body()
        served, outputs = await plane.predict(
            request, "mnist", None, lambda c: expect_codec(c, DigitsCodec).rows_from_image(image)
        )
    elif kind == "multipart/form-data":
        image = await _uploaded_file(request)
        served, outputs = await plane.predict(
            request, "mnist", None, lambda c: expect_codec(c, DigitsCodec).rows_from_image(image)
        )
    elif is_json(kind):
        body = schemas.parse(schemas.DigitsRequest, parse_json(await request.body()))
        served, outputs = await plane.predict(
            request,
            "mnist",
            None,
            lambda c: expect_codec(c, DigitsCodec).rows_from_pixels(body.items()),
        )
    else:
        raise UnsupportedMediaTypeError(
            f"unsupported content type {kind!r}: send application/json pixels, an image/png or "
            "image/jpeg body, or multipart/form-data with the image in field 'file'"
        )
    return _answer(served, served.codec.predictions(outputs))


@router.post(
    "/housing",
    summary="Median value of a Boston home in $1000s, from 13 named features (housing model)",
    openapi_extra=_body(schemas.HousingRequest),
    responses={200: {"model": schemas.HousingResponse}, **_ERRORS},
)
@hot
async def housing(request: Request) -> Response:
    plane = plane_of(request)
    body = schemas.parse(schemas.HousingRequest, await read_json(request))
    served, outputs = await plane.predict(
        request,
        "housing",
        None,
        lambda c: expect_codec(c, HousingCodec).rows_from_records(body.items()),
    )
    return _answer(served, served.codec.predictions(outputs))


async def _uploaded_file(request: Request) -> bytes:
    try:
        form = await request.form(max_files=1, max_fields=4)
    except Exception as error:  # python-multipart raises several types for broken bodies
        raise BadRequestError(f"malformed multipart body: {error}") from None
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise BadRequestError("multipart body has no file field 'file': send the image as 'file'")
    data = await upload.read()
    await form.close()
    return bytes(data)
