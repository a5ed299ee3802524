"""Moved to :mod:`recbole_msl.item_text` (read without RecBole, so the model imports it from below the seam).

Kept only until the last importer switches; import from ``recbole_msl.item_text``."""

from ..item_text import item_file_path, item_titles, read_item_texts, restore_leading_article  # noqa: F401
