"""KServe V1 explain verb: `POST /v1/models/{name}[/versions/{v}]:explain`.

Listed before the TF Serving router in `HotRoutes`, whose `/v1/models/{target}` pattern would
otherwise take `imdb:explain` as a `:predict` target.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.dataplane import explain
from service.errors import BadRequestError, InvalidInputError
from service.model.codecs import Codec, HousingCodec, TextCodec
from service.protocols import schemas
from service.protocols.versions import parse_version
from service.rest.deps import plane_of, resolve
from service.rest.hotpath import hot
from service.rest.http import json_response, read_json

router = APIRouter(prefix="/v1/models", tags=["explanations"])

# CRIM … LSTAT of a house from the test set.
_HOUSE = [0.12329, 0.0, 10.01, 0.0, 0.547, 5.913, 92.9, 2.3534, 6.0, 432.0, 17.8, 394.95, 16.21]

_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["instances"],
                    "properties": {
                        "instances": {
                            "type": "array",
                            "description": "imdb, reuters: texts. housing: houses, each 13 "
                            "features by name or as a list in CRIM … LSTAT order.",
                            "items": {},
                        }
                    },
                },
                "examples": {
                    "imdb": {"value": {"instances": ["a wonderful, moving film"]}},
                    "housing": {"value": {"instances": [_HOUSE]}},
                },
            }
        },
    }
}
_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "example": "imdb",
    "description": "imdb, reuters or housing",
}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "integer"}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One explanation per instance, in order: the task prediction with its "
        "`explanation` (words or features with weights, ordered by |weight|).",
        "content": {
            "application/json": {
                "example": {
                    "explanations": [
                        {
                            "label": "positive",
                            "score": 0.93,
                            "explanation": [{"word": "wonderful", "weight": 0.21}],
                        }
                    ]
                }
            }
        },
    },
    **{code: {"model": schemas.ErrorResponse} for code in (400, 404, 415, 422, 503, 504)},
}


@router.post(
    "/{name}:explain",
    summary="Explain predictions (KServe V1): imdb, reuters, housing",
    openapi_extra={**_DOC, "parameters": [_NAME]},
    responses=_RESPONSES,
)
@hot
async def explain_latest(request: Request) -> Response:
    return await _explain(request, request.path_params["name"], None)


@router.post(
    "/{name}/versions/{version}:explain",
    summary="Explain predictions of one version (KServe V1)",
    openapi_extra={**_DOC, "parameters": [_NAME, _VERSION]},
    responses=_RESPONSES,
)
@hot
async def explain_version(request: Request) -> Response:
    version = parse_version(request.path_params["version"])
    return await _explain(request, request.path_params["name"], version)


async def _explain(request: Request, name: str, version: int | None) -> Response:
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("instances"), list):
        raise BadRequestError("expected a JSON object with a list 'instances'")
    instances: list[Any] = body["instances"]

    def occlude(codec: Codec, max_rows: int) -> explain.Occlusion:
        if isinstance(codec, TextCodec):
            return explain.text_occlusion(codec, [_text(item) for item in instances], max_rows)
        if isinstance(codec, HousingCodec):
            if instances and all(isinstance(item, dict) for item in instances):
                rows = codec.encode_records(instances).rows
            else:
                rows = codec.encode_tensor(instances).rows
            return explain.housing_occlusion(codec, rows, max_rows)
        raise BadRequestError(
            f"model {name!r} has no explanations: :explain serves imdb, reuters and housing"
        )

    served = resolve(request, name, version)
    _, explanations = await explain.explain(plane_of(request), served, occlude)
    return json_response({"explanations": explanations})


def _text(item: Any) -> str:
    if not isinstance(item, str):
        raise InvalidInputError(
            f"each instance must be a text (a string), got {type(item).__name__}"
        )
    return item
