"""`POST /v1/feedback`: the true label of an earlier answer, named by its X-Request-ID."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from service.feedback.recorder import Recorder
from service.protocols import schemas
from service.rest.deps import Repository
from service.rest.http import json_response, read_json

router = APIRouter(prefix="/v1", tags=["feedback"])


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, description="The X-Request-ID of an earlier answer.")
    label: str | int | None = Field(
        None, description='imdb: "positive"/"negative"; reuters: a topic name; mnist: a digit.'
    )
    price: float | None = Field(None, ge=0, description="housing: the true price in $1000s.")
    item: int = Field(0, ge=0, description="Which input of that request (0 for the first).")


_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": schemas.inline(FeedbackRequest),
                "example": {"request_id": "4f1c0a…", "label": "positive"},
            }
        },
    }
}


@router.post(
    "/feedback",
    summary="Label an earlier answer: counts toward each version's live accuracy (and a "
    "rollout's gate); kept as an example to retrain on",
    operation_id="feedback",
    openapi_extra=_BODY,
    responses={200: {"model": dict[str, Any]}, **schemas.error_responses(400, 404, 409, 415, 422)},
)
async def feedback(request: Request, repository: Repository) -> Response:
    recorder: Recorder = request.app.state.recorder
    codecs = {served.name: served.codec for served in repository.live_models()}
    body = schemas.parse(FeedbackRequest, await read_json(request))
    return json_response(await recorder.label(body.model_dump(exclude_none=True), codecs))
