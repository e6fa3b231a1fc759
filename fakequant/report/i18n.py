"""The report's access to the catalogs of :mod:`fakequant.i18n` (the words live there, one module per language).

``STRINGS`` is the same table as (English, Traditional Chinese) pairs, for renderers that keep their own words
beside it (the recipe report).
"""

from __future__ import annotations

from fakequant.i18n import CATALOGS, Message, category_text, localized, status_text, translator

STRINGS: dict[str, tuple[str, str]] = {key: (text, CATALOGS["zh-TW"][key]) for key, text in CATALOGS["en"].items()}

__all__ = ["STRINGS", "Message", "category_text", "localized", "status_text", "translator"]
