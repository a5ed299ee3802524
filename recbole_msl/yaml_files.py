"""A YAML file read whole, with one line naming the line of a syntax error."""

from __future__ import annotations

import yaml

from .errors import ConfigError


def load_yaml(path: str, what: str, loader=yaml.SafeLoader):
    """The document in ``path`` (None for a blank file); a syntax error is a one-line :class:`ConfigError`
    ``<what> <path> is not valid YAML at line N; fix its syntax``."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f.read(), Loader=loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{what} {path} is not valid YAML{where}; fix its syntax") from None
