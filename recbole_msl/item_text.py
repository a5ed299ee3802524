"""Item titles, read verbatim from the data set's ``.item`` atomic file.

RecBole splits ``token_seq`` fields on spaces and re-maps the words to ids, so
re-joining its word ids would not give back the title (runs of spaces, the
field's ``seq_len`` cut). We read the raw column ourselves with RecBole's own
separator and encoding settings and map item tokens to RecBole's internal ids.
"""

from __future__ import annotations

import logging
import os
import re

from .atomic_files import atomic_file, header, read_columns
from .errors import ConfigError

logger = logging.getLogger(__name__)

# "American President, The" -> "The American President"; trailing parentheses stay at the end.
_ARTICLE = re.compile(
    r"^(?P<body>.+?), (?P<article>The|A|An|La|Le|Les|L'|Il|El|Das|Der|Die|Los|Las)"
    r"(?P<rest>(?: \([^()]*\))*)$"
)


def restore_leading_article(title: str) -> str:
    """Move a trailing article back to the front, as MovieLens titles are written ("Title, The")."""
    match = _ARTICLE.match(title)
    if not match:
        return title
    article = match["article"]
    joiner = "" if article.endswith("'") else " "
    return f"{article}{joiner}{match['body']}{match['rest']}"


def item_file_path(config) -> str:
    return atomic_file(config, "item")


def read_item_texts(config, field: str) -> dict[str, str]:
    """Map item token -> raw text of ``field`` from ``<data_path>/<dataset>.item``."""
    path = item_file_path(config)
    if not os.path.isfile(path):
        raise ConfigError(f"no item file at {path}: LLMMSL needs item titles; add {config['dataset']}.item "
                          f"with an '{field}' column or set item_text_field")
    sep = config["field_separator"] or "\t"
    encoding = config["encoding"] or "utf-8"
    names = header(path, sep, encoding)
    iid = config["ITEM_ID_FIELD"]
    if field not in names:
        raise ConfigError(f"item_text_field '{field}' is not a column of {path} (columns: "
                          f"{', '.join(names)}); set item_text_field to one of them")
    if iid not in names:
        raise ConfigError(f"{path} has no '{iid}' column; it must list ITEM_ID_FIELD")
    frame = read_columns(path, [iid, field], sep, encoding)
    frame[field] = frame[field].str.rstrip("\r")
    repeated = frame[frame[iid].duplicated(keep=False)]
    if len(repeated):
        titles = repeated.groupby(iid)[field].nunique()
        conflicting = titles[titles > 1]
        if len(conflicting):
            item = conflicting.index[0]
            lines = [int(i) + 2 for i in repeated.index[repeated[iid] == item][:2]]
            raise ConfigError(f"{len(conflicting)} items have several rows with different {field}s in {path} (e.g. "
                              f"item {item} on lines {lines[0]} and {lines[1]}); keep one row per item")
        logger.warning(f"{repeated[iid].nunique()} items appear on more than one line of {path} with the same "
                       f"{field}; each is read once")
    return dict(zip(frame[iid], frame[field]))


def item_titles(config, dataset) -> list[str | None]:
    """Titles indexed by RecBole's internal item id (index 0, the padding item, is None).

    Raises a one-line :class:`ConfigError` for items without a title or with an empty one.
    """
    field = config["item_text_field"]
    if not field:
        raise ConfigError("item_text_field is not set; name the .item column that holds item titles")
    raw = read_item_texts(config, field)
    tokens = dataset.field2id_token[dataset.iid_field]
    restore = bool(config["restore_title_articles"])
    fallback = config["item_text_fallback"]  # ~: error; else a text, "{item_id}" filled in
    titles: list[str | None] = [None]
    missing, empty = [], []
    for token in tokens[1:]:
        text = raw.get(str(token))
        if text is None or not text.strip():
            (missing if text is None else empty).append(str(token))
            if fallback is not None:
                text = str(fallback).replace("{item_id}", str(token))
        titles.append(restore_leading_article(text) if (restore and text) else text)
    if fallback is None and missing:
        raise ConfigError(f"{len(missing)} items have no row in {item_file_path(config)} (e.g. item "
                          f"{missing[0]}); add their titles, drop their interactions or set item_text_fallback")
    if fallback is None and empty:
        raise ConfigError(f"{len(empty)} items have an empty '{field}' (e.g. item {empty[0]}); give them a "
                          f"title, drop their interactions or set item_text_fallback (e.g. 'Item {{item_id}}')")
    return titles
