"""The default config and prompts folders, and the check that the chosen ones exist.

The wheel carries the checkout's `config/*.yaml` and `system_prompts/*.md` under
`devteam/defaults/` (hatch `force-include`), so an installed `devteam` works from
any folder. Run from a source checkout, the checkout's own folders are the defaults.
"""

from __future__ import annotations

from pathlib import Path

from devteam.domain.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parents[1]
_CHECKOUT = _PACKAGE.parents[1]

FOLDERS = {
    "config_dir": ("DEVTEAM_CONFIG_DIR", "config", "team_leader.yaml"),
    "prompts_dir": ("DEVTEAM_PROMPTS_DIR", "system_prompts", "team_leader.md"),
}
"""Setting: (its variable, the folder's name, a file it must hold)."""


def default_folder(name: str) -> Path | None:
    """The shipped folder `name` (`config` or `system_prompts`), if there is one."""
    for candidate in (_PACKAGE / "defaults" / name, _CHECKOUT / name):
        if candidate.is_dir():
            return candidate
    return None


def resolve_folders(values: dict[str, Path], given: set[str]) -> dict[str, Path]:
    """The config and prompts folders to use: a given one must exist; a default one that
    is not in the working folder falls back to the shipped defaults."""
    resolved: dict[str, Path] = {}
    for setting, (variable, folder, marker) in FOLDERS.items():
        path = values[setting]
        if path.is_dir():
            resolved[setting] = path
            continue
        if setting in given:
            problem = "not a folder" if path.exists() else "no such folder"
            raise ConfigError(f"{variable}={path}: {problem} (it should hold {marker})")
        shipped = default_folder(folder)
        if shipped is None:
            raise ConfigError(
                f"{path}: no such folder, and no default {folder} is installed: "
                f"set {variable} to the folder holding {marker}"
            )
        resolved[setting] = shipped
    return resolved
