"""FastAPI dependency aliases: what a route needs, taken from the app's state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.core import DataPlane
from service.repository import ModelRepository
from service.settings import Settings


def get_plane(request: Request) -> DataPlane:
    plane: DataPlane = request.app.state.plane
    return plane


def get_repository(request: Request) -> ModelRepository:
    repository: ModelRepository = request.app.state.plane.repository
    return repository


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


Plane = Annotated[DataPlane, Depends(get_plane)]
Repository = Annotated[ModelRepository, Depends(get_repository)]
AppSettings = Annotated[Settings, Depends(get_settings)]
