"""config/projects.yaml: how projects are cloned."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from devteam.settings._base import ConfigModel


class ProjectsConfig(ConfigModel):
    allow_local: bool = False
    """Also clone local paths and file:// URLs (they read the service's own disk)."""
    clone_timeout_s: Annotated[float, Field(gt=0, le=24 * 3600)] = 600.0
    """A clone or fetch taking longer is stopped and reported as failed."""
