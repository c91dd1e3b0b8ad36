"""DevTeam: an async service that runs an AI development team."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("devteam")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"
