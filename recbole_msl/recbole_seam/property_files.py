"""The plugin's YAML files: where they are (inside the wheel, or at the top of a checkout), the property files of
a model and data set, the shipped profiles, and reading a config file."""

from __future__ import annotations

import os

import yaml

from ..errors import ConfigError
from ..yaml_files import load_yaml

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the package
# Installed wheels carry the YAMLs inside the package; a source checkout has them at the top level.
PROPERTIES_DIR = next((p for p in (os.path.join(_HERE, "properties"), os.path.join(os.path.dirname(_HERE), "properties"))
                       if os.path.isdir(p)), os.path.join(_HERE, "properties"))


def property_files(model: str, dataset: str) -> list[str]:
    """Plugin YAMLs in load order: overall, model, dataset (later files win, as in RecBole)."""
    names = ["overall.yaml", os.path.join("model", f"{model}.yaml"), os.path.join("dataset", f"{dataset}.yaml")]
    return [p for p in (os.path.join(PROPERTIES_DIR, n) for n in names) if os.path.isfile(p)]


def shipped_profiles() -> list[str]:
    folder = os.path.join(PROPERTIES_DIR, "profiles")
    return sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []


def profile_file(name: str) -> str:
    """The YAML of a shipped profile (``properties/profiles/<name>.yaml``, inside the installed package)."""
    path = os.path.join(PROPERTIES_DIR, "profiles", f"{name}.yaml")
    if not os.path.isfile(path):
        raise ConfigError(f"unknown profile {name!r}; use one of {', '.join(shipped_profiles())}")
    return path


def resolve_config_files(entries) -> list[str]:
    """Config files as given, where a bare name that is no file (``cpu``) is the shipped profile of that name."""
    resolved = []
    for entry in entries or []:
        entry = str(entry)
        if os.path.isfile(entry):
            resolved.append(entry)
        elif os.sep not in entry and "/" not in entry and not entry.endswith((".yaml", ".yml")) \
                and entry in shipped_profiles():
            resolved.append(profile_file(entry))
        else:
            raise ConfigError(f"config file {entry} does not exist; check --config_files (a path, or a shipped "
                              f"profile: {', '.join(shipped_profiles())})")
    return resolved


def read_config_file(path: str, loader=yaml.FullLoader) -> dict:
    """A config file's mapping (empty when the file is blank), with one-line errors."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist; check --config_files")
    loaded = load_yaml(path, "config file", loader)
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must be a mapping of key: value lines")
    return loaded
