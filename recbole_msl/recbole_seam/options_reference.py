"""The options reference, generated from its one source: the shipped YAML defaults and their comments.

``python -m recbole_msl.recbole_seam.options_reference`` prints the page the documentation site shows
(``docs/options.md``, rewritten by ``make docs``); tests/test_options_reference.py fails when an option the code
reads is missing from it, or documented with a default the code does not use.
"""

from __future__ import annotations

import os
import re

import yaml

from ..lm.options import FINETUNE_MODES
from ..lm.prompt import TRAIN_FORMATS
from ..model.decoders import DECODERS
from ..model.objectives import OBJECTIVES
from .property_files import PROPERTIES_DIR

# options whose values are the names of a registry: the page lists them from the code, so adding an entry is all
CHOICES = {"llm_loss": OBJECTIVES, "decoder": DECODERS, "train_format": TRAIN_FORMATS, "llm_finetune": FINETUNE_MODES}

SOURCES = [("Every model run through the plugin", os.path.join("overall.yaml")),
           ("LLMMSL", os.path.join("model", "LLMMSL.yaml"))]
_KEY = re.compile(r"^([A-Za-z_]\w*)\s*:\s*(.*?)\s*(?:#\s?(.*))?$")
_SECTION = re.compile(r"^#\s*---\s*(.*?)\s*---\s*$")


def options(path: str) -> list[dict]:
    """``[{key, default, comment, section}]`` of a YAML defaults file, in file order (a comment may go on over
    the following lines that hold only a comment)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    values = yaml.safe_load(text) or {}
    found, section = [], None
    for line in text.splitlines():
        heading = _SECTION.match(line)
        if heading:
            section = heading.group(1)
            continue
        if line[:1].isspace() and line.strip().startswith("#") and found:
            found[-1]["comment"] = (found[-1]["comment"] + " " + line.strip()[1:].strip()).strip()
            continue
        match = _KEY.match(line)
        if match and match.group(1) in values:
            found.append({"key": match.group(1), "default": values[match.group(1)], "comment": match.group(3) or "",
                          "section": section})
    return found


def _default(value) -> str:
    if value is None:
        return "`~`"
    if isinstance(value, bool):
        return f"`{value}`"
    return f"`{yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix('...').strip()}`"


def _choices(key: str) -> str:
    """``; one of: `a`, `b``` for an option that names a registry entry (nothing for other options)."""
    names = CHOICES.get(key)
    return ("; one of: " + ", ".join(f"`{name}`" for name in names)) if names else ""


def reference_markdown() -> str:
    """The options page: one table per source file (and per section of the file), key, default, meaning."""
    intro = ("Generated from the shipped defaults (`properties/overall.yaml`, `properties/model/LLMMSL.yaml`) and "
             "their comments by `make docs`; a test keeps it equal to them and to what the code reads. RecBole's own "
             "options (`epochs`, `learning_rate`, `eval_step`, `stopping_step`, `seed`, ...) keep their meaning; "
             "per-data-set defaults live in `properties/dataset/`, profiles in `properties/profiles/`. Any option is "
             "a `--key=value` on the command line, a key of a `--config_files` YAML or of `config_dict`.")
    lines = ["# Options", "", intro, ""]
    for title, relpath in SOURCES:
        rows = options(os.path.join(PROPERTIES_DIR, relpath))
        current = object()
        for row in rows:
            if row["section"] != current:
                current = row["section"]
                heading = title + (f": {current}" if current else "")
                lines += ["", f"## {heading}", "", "| option | default | meaning |", "| --- | --- | --- |"]
            meaning = row["comment"] + _choices(row["key"])
            meaning = meaning.replace("|", "/")
            lines.append(f"| `{row['key']}` | {_default(row['default'])} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
