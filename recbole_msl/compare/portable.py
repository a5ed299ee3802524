"""Paths in records and reports relative to the project root (or the working directory), so a published record
names no folder of the machine it ran on."""

from __future__ import annotations

import os
import re

from ..recbole_seam.property_files import PROPERTIES_DIR


def portable_paths(value, root: str | None = None):
    """``value`` (a record, a report, any JSON-like data) with every absolute path under ``root`` (default: the
    working directory, the project root a comparison runs from), or else under the folder that holds the shipped
    ``properties/`` (the project root, where the shipped comparisons and profiles live), written relative to it,
    inside longer strings too (an error message, ``--checkpoint_dir=...``), so a committed record names no folder
    of the machine it ran on. Paths elsewhere (a model folder given as ``/models/...``) stay as given."""
    roots = [os.path.abspath(root or os.getcwd()), os.path.dirname(os.path.abspath(PROPERTIES_DIR))]
    roots = [r.rstrip(os.sep) for r in dict.fromkeys(roots) if r.rstrip(os.sep)]  # "/" itself shortens nothing
    # a root's prefix where a path starts: at the string's start or after a space, quote, '=', '(', ...
    patterns = [re.compile(r"(?<![\w.~/-])" + re.escape(r + os.sep)) for r in roots]

    def convert(item):
        if isinstance(item, str):
            if item in roots:
                return "."
            for pattern in patterns:
                item = pattern.sub("", item)
            return item
        if isinstance(item, dict):
            return {key: convert(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [convert(v) for v in item]
        return item

    return convert(value)
