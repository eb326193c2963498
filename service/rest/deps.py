"""What a route needs, taken from the app's state: FastAPI dependency aliases and helpers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from service.dataplane.plane import ROLLOUT_KEY, DataPlane
from service.protocols.schemas import MODEL_NAME, MODEL_VERSION
from service.protocols.versions import parse_version
from service.repository.repository import ModelRepository, ServedVersion
from service.repository.rollout import Rollouts as RolloutControl
from service.rest.middleware import MODEL_KEY
from service.settings import Settings


def plane_of(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.plane
    return plane


def resolve(request: Request, model: str, version: int | None = None) -> ServedVersion:
    """`DataPlane.resolve`, and the answering model recorded as the request's metric label.

    Call the plane's `run` right after it, with no `await` in between.
    """
    served = plane_of(request).resolve(model, version, request.headers.get(ROLLOUT_KEY))
    request.scope[MODEL_KEY] = served.name
    return served


def path_version(request: Request) -> int:
    """The `{version}` path parameter as an integer (400 otherwise)."""
    return parse_version(request.path_params["version"])


# The path parameters of routes FastAPI dispatches (and validates); the `@hot` routes declare the
# same through `schemas.path_parameters`.
ModelName = Annotated[str, Path(description=MODEL_NAME, examples=["mnist"])]
ModelVersion = Annotated[int, Path(ge=0, description=MODEL_VERSION, examples=[1])]


def get_repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.plane.repository
    return repository


def get_rollouts(request: Request) -> RolloutControl:
    rollouts: RolloutControl = request.app.state.rollouts
    return rollouts


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Repository = Annotated[ModelRepository, Depends(get_repository)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Rollouts = Annotated[RolloutControl, Depends(get_rollouts)]
