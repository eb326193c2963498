"""FastAPI dependency aliases: what a route needs, taken from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.dataplane.plane import DataPlane
from service.errors import BadRequestError
from service.repository.repository import ModelRepository
from service.repository.rollout import Rollouts as RolloutControl
from service.settings import Settings


def plane_of(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.plane
    return plane


def parse_version(text: str) -> int:
    """A version named in a path, as an integer (400 otherwise)."""
    if not (text.isascii() and text.isdigit()):
        raise BadRequestError(f"version must be a positive integer, got {text!r}")
    return int(text)


def path_version(request: Request) -> int:
    """The `{version}` path parameter as an integer (400 otherwise)."""
    return parse_version(request.path_params["version"])


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
