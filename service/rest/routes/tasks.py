"""Task endpoints: friendly JSON for each of the four uses (and image uploads for digits)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from service.dataplane import explain
from service.dataplane.plane import Inference, Work, expect_codec
from service.errors import BadRequestError, UnsupportedMediaTypeError
from service.model.codecs import Codec, DigitsCodec, HousingCodec, TextCodec, TopicsCodec
from service.model.preprocessing import MNIST_SIDE
from service.protocols import schemas
from service.rest.deps import plane_of, resolve
from service.rest.hotpath import hot
from service.rest.http import is_json, json_response, media_type, parse_json, read_json

router = APIRouter(prefix="/v1", tags=["tasks"])

IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorResponse} for code in (400, 404, 413, 415, 422, 503, 504)
}


_INCLUDE_IMAGE: dict[str, Any] = {
    "name": "include_image",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "true: add `image` to each prediction, the 28×28 grey values (0–255) the "
    "model saw after the server's MNIST-style preprocessing (what the demo page shows).",
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


def _predictions(inference: Inference, top_k: int | None = None) -> Response:
    return _answer(inference.served, inference.served.codec.predictions(inference.outputs, top_k))


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
    served = resolve(request, "imdb")
    if body.explain:
        return _answer(*await explain.explain(plane, served, _texts(texts)))
    inference = await plane.run(
        served,
        lambda c: expect_codec(c, TextCodec).encode_texts(texts),
        len(texts),  # admitted before the texts are encoded
    )
    return _predictions(inference)


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
    served = resolve(request, "reuters")
    if body.explain:
        return _answer(*await explain.explain(plane, served, _texts(texts), top_k=body.top_k))
    inference = await plane.run(
        served,
        lambda c: expect_codec(c, TopicsCodec).encode_texts(texts),
        len(texts),  # admitted before the texts are encoded
    )
    return _predictions(inference, body.top_k)


@router.post(
    "/digits",
    summary="Which digit is this? JSON pixels, or a PNG/JPEG of any size (MNIST model)",
    openapi_extra={
        **_body(schemas.DigitsRequest, *IMAGE_TYPES[:2], "multipart/form-data"),
        "parameters": [_INCLUDE_IMAGE],
    },
    responses={200: {"model": schemas.DigitsResponse}, **_ERRORS},
)
@hot
async def digits(request: Request) -> Response:
    plane = plane_of(request)
    kind = media_type(request)
    encode: Work
    if kind in IMAGE_TYPES or kind == "multipart/form-data":
        image = await request.body() if kind in IMAGE_TYPES else await _uploaded_file(request)
        encode = lambda c: expect_codec(c, DigitsCodec).encode_image(image)  # noqa: E731
    elif is_json(kind):
        body = schemas.parse(schemas.DigitsRequest, parse_json(await request.body()))
        encode = lambda c: expect_codec(c, DigitsCodec).encode_pixels(body.items())  # noqa: E731
    else:
        raise UnsupportedMediaTypeError(
            f"unsupported content type {kind!r}: send application/json pixels, an image/png or "
            "image/jpeg body, or multipart/form-data with the image in field 'file'"
        )
    # The query string is looked at only when there is one: the usual answer costs nothing more.
    include_image = bool(request.scope.get("query_string")) and _include_image(request)
    inference = await plane.run(resolve(request, "mnist"), encode)
    if not include_image:
        return _predictions(inference)
    predictions = inference.served.codec.predictions(inference.outputs)
    for prediction, row in zip(predictions, inference.inputs.rows, strict=True):
        grey = np.rint(row * 255.0).astype(np.uint8)
        prediction["image"] = grey.reshape(MNIST_SIDE, MNIST_SIDE).tolist()
    return _answer(inference.served, predictions)


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
    served = resolve(request, "housing")
    if body.explain:
        return _answer(*await explain.explain(plane, served, _houses(body.items())))
    inference = await plane.run(
        served, lambda c: expect_codec(c, HousingCodec).encode_records(body.items())
    )
    return _predictions(inference)


def _texts(texts: list[Any]) -> Callable[[Codec, int], explain.Occlusion]:
    return lambda c, cap: explain.text_occlusion(expect_codec(c, TextCodec), texts, cap)


def _houses(records: list[Any]) -> Callable[[Codec, int], explain.Occlusion]:
    def occlude(codec: Codec, cap: int) -> explain.Occlusion:
        housing = expect_codec(codec, HousingCodec)
        return explain.housing_occlusion(housing, housing.encode_records(records).rows, cap)

    return occlude


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


def _include_image(request: Request) -> bool:
    """`?include_image=true|false` (once): anything else is a 400, not silently false."""
    values = request.query_params.getlist("include_image")
    if not values:
        return False
    if len(values) > 1 or values[0] not in ("true", "false"):
        raise BadRequestError(
            f"include_image must be given once, as true or false; got {', '.join(values)!r}"
        )
    return values[0] == "true"
