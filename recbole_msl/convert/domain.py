"""Prompt wording per domain: the paper's sentences with the noun and verb of the category.

"Given a list of books the user has read before..." reads better to the LLM than "items ... interacted
with", so the category name (``Books``, ``Movies_and_TV``, ``Toy``) picks the words; options override.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    singular: str
    plural: str
    verb: str  # past participle: "the user has <verb> ..."

    def instruction(self) -> str:
        return (f"Given a list of {self.plural} the user has {self.verb} before, please recommend a new "
                f"{self.singular} that the user likes to the user.")

    def input(self) -> str:
        return f"The user has {self.verb} the following {self.plural} before: {{history}}"


ITEMS = Domain("item", "items", "interacted with")
# (words any of which must appear in the category name, domain); the first match wins
_TABLE = [
    ({"toy", "toys"}, Domain("toy", "toys", "played with")),  # before "games": Toys_and_Games
    ({"game", "games"}, Domain("game", "games", "played")),  # before "video": Video_Games
    ({"book", "books"}, Domain("book", "books", "read")),
    ({"movie", "movies", "tv", "film", "films", "video"}, Domain("movie", "movies", "watched")),
    ({"cd", "cds", "vinyl", "music", "album", "albums"}, Domain("album", "albums", "listened to")),
    ({"beauty"}, Domain("beauty product", "beauty products", "bought")),
    ({"sports", "sport"}, Domain("sports product", "sports products", "bought")),
    ({"clothing"}, Domain("clothing item", "clothing items", "bought")),
]
_SINGULAR = {d.plural: d.singular for _, d in _TABLE} | {ITEMS.plural: ITEMS.singular}


def category_words(category: str) -> set[str]:
    """``Movies_and_TV`` -> {"movies", "and", "tv"}; also splits ``CamelCase`` and hyphens."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", category or "")
    return {w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w}


def singular_of(plural: str) -> str:
    """The table's singular, else a plain English guess ("podcasts" -> "podcast", "series" stays)."""
    if plural in _SINGULAR:
        return _SINGULAR[plural]
    if plural.endswith("ies") and len(plural) > 3:
        return plural[:-3] + "y"
    if plural.endswith("s") and not plural.endswith(("ss", "us", "series")):
        return plural[:-1]
    return plural


def domain_for(category: str, noun: str | None = None, verb: str | None = None,
               singular: str | None = None) -> Domain:
    """The wording for ``category``; ``noun`` (plural), ``verb`` and ``singular`` override the table."""
    words = category_words(category)
    found = next((d for keys, d in _TABLE if words & keys), ITEMS)
    plural = noun or found.plural
    return Domain(singular or (found.singular if plural == found.plural else singular_of(plural)),
                  plural, verb or found.verb)
