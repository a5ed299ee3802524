"""Title cleaning: every title must survive one field of RecBole's tab-separated files and read well in a prompt.

Amazon titles carry HTML entities (``&amp;``, sometimes twice encoded), markup (``<span class=...>``),
tabs, newlines and runs of spaces; LLMMSL reads the title column verbatim, so they are cleaned here.
"""

from __future__ import annotations

import html
import re

_BLOCK_TAGS = {"br", "p", "div", "li", "ul", "ol", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "hr"}
# a tag starts with a letter right after "<" (or "</"), so "a < b > c" is left alone
_TAG = re.compile(r"<!--.*?-->|<(/?)([A-Za-z][A-Za-z0-9-]*)\b[^<>]*>", re.DOTALL)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _tag_replacement(match: re.Match) -> str:
    """Block tags (``<br>``, ``<p>``) separate words; inline ones (``<b>``, ``<span>``) do not."""
    name = (match.group(2) or "").lower()
    return " " if name in _BLOCK_TAGS else ""


def normalize_whitespace(text: str) -> str:
    """Control characters, tabs, newlines and runs of whitespace become one space; ends stripped."""
    return " ".join(_CONTROL.sub(" ", text).split())


def title_text(raw) -> str:
    """The text of a title value as a record holds it.

    A string is itself and a number its digits (``1984``). A list (some metadata lines give ``"title": ["Heat",
    "Special Edition"]``) is its elements' texts that are not empty, joined with one space, in order, nested lists
    flattened: every part names the item, and a prompt reads "Heat Special Edition" better than
    "['Heat', 'Special Edition']". None, True/False and objects (``{...}``) are no title at all (""), so the
    item counts as untitled rather than carrying a Python repr into the prompt.
    """
    if isinstance(raw, str):
        return raw
    if raw is None or isinstance(raw, (bool, dict)):
        return ""
    if isinstance(raw, (list, tuple)):
        return " ".join(part for part in (title_text(x).strip() for x in raw) if part)
    if isinstance(raw, (int, float)):
        return str(raw)
    return ""


def clean_title(raw) -> str:
    """Unescape HTML entities (until stable, at most 3 times), drop tags, normalize whitespace; a list title is
    its parts joined with a space (see :func:`title_text`)."""
    text = title_text(raw)
    for _ in range(3):
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    return normalize_whitespace(_TAG.sub(_tag_replacement, text))


def raw_title(raw) -> str:
    """Only what the file format needs: whitespace normalized, entities and markup kept (as released)."""
    return normalize_whitespace(title_text(raw))
