"""Named FastAPI dependencies.

They are `async def` although they await nothing: FastAPI runs a plain `def`
dependency in a worker thread, a hand-off that costs more than the dependency.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from devteam.services import Services
from devteam.settings import Settings
from devteam.storage import Store


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_store(services: ServicesDep) -> Store:
    return services.store


async def get_settings(services: ServicesDep) -> Settings:
    return services.settings


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
