"""Every sentence fakequant writes for people, in English and Traditional Chinese: one catalog per language.

:mod:`.en` and :mod:`.zh_TW` map the same keys to templates (``str.format`` syntax, with format specs such as
``{inc:+.3%}``): the report's fixed words (headings, statuses, categories) and the reason codes of every check and of
the decision. A rule says *what* it found as a :class:`Message` (a code and its values); its English sentence is
rendered here once, and any report renders the same message again in its own language. Numbers, check ids and
tensor names are values, so they read the same in every language.

This package imports nothing of fakequant: the suite's rules and the report both depend on it, never the reverse.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fakequant.i18n import en, zh_TW

CATALOGS: dict[str, dict[str, str]] = {"en": en.TEXT, "zh-TW": zh_TW.TEXT}
DEFAULT = "en"


def catalog(lang: str) -> dict[str, str]:
    """The catalog of ``lang``; an unknown language gets English."""
    return CATALOGS.get(lang, CATALOGS[DEFAULT])


class Message(str):
    """A sentence with the code and values it was rendered from.

    The string itself is the English sentence, so a Message goes wherever a reason string went before (JUnit
    properties, pytest's messages, report.json's ``reason``); :meth:`in_lang` renders it in another language and
    :meth:`to_json` keeps what that needs. Values are scalars (str, int, float, bool, None), nested Messages, or lists
    of them: a list of Messages reads as clauses (``; `` in English), a list of anything else as ``a, b, c``.
    """

    code: str
    args: dict[str, Any]

    def __new__(cls, code: str, args: Mapping[str, Any] | None = None, text: str | None = None) -> Message:
        values = dict(args or {})
        self = super().__new__(cls, render(code, values, DEFAULT) if text is None else text)
        self.code, self.args = code, values
        return self

    def in_lang(self, lang: str) -> str:
        """This sentence in ``lang``. A code this version's catalogs do not know (a report written by another
        version) keeps the English it was recorded with."""
        if self.code not in catalog(lang):
            return str(self)
        return render(self.code, self.args, lang)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "args": {k: _dump(v) for k, v in self.args.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], text: str | None = None) -> Message:
        """The Message :meth:`to_json` wrote; ``text`` is the English recorded with it (kept as the string)."""
        args = data.get("args")
        values = {str(k): _load(v) for k, v in args.items()} if isinstance(args, Mapping) else {}
        code = str(data.get("code"))
        if text is None and code not in CATALOGS[DEFAULT]:
            text = code
        return cls(code, values, text)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Message, (self.code, self.args, str(self)))

    def __copy__(self) -> Message:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Message:
        return self


def msg(code: str, /, **args: Any) -> Message:
    """``msg("perplexity.below_ideal", measured=..., ideal=0.01)``: a Message of a code the catalogs declare."""
    return Message(code, args)


def _dump(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_json()
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


def _load(value: Any) -> Any:
    if isinstance(value, Mapping) and "code" in value:
        return Message.from_json(value)
    if isinstance(value, list):
        return [_load(v) for v in value]
    return value


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None and format_spec:  # a NaN stored as null in strict JSON reads as the NaN it was
            value = math.nan
        return super().format_field(value, format_spec)


_FORMATTER = _Formatter()


def _value(value: Any, lang: str) -> Any:
    if isinstance(value, Message):
        return value.in_lang(lang)
    if isinstance(value, list | tuple):
        if any(isinstance(v, Message) for v in value):
            return catalog(lang)["clause_join"].join(str(_value(v, lang)) for v in value)
        return ", ".join(str(v) for v in value)
    return value


def render(code: str, args: Mapping[str, Any], lang: str) -> str:
    """The template of ``code`` in ``lang``, filled with ``args`` (nested Messages rendered in ``lang`` too)."""
    return _FORMATTER.vformat(catalog(lang)[code], (), {k: _value(v, lang) for k, v in args.items()})


def localized(text: Any, data: Any, lang: str) -> str:
    """A recorded sentence in ``lang``: ``data`` is what :meth:`Message.to_json` wrote beside the English ``text``
    (None for a sentence recorded without a code, which is shown as recorded)."""
    if isinstance(data, Mapping) and "code" in data:
        return Message.from_json(data, str(text) if text is not None else None).in_lang(lang)
    return "" if text is None else str(text)


def dump_all(items: Sequence[Any]) -> list[dict[str, Any] | None]:
    """Beside a list of recorded sentences: each one's code and values (None for plain text)."""
    return [item.to_json() if isinstance(item, Message) else None for item in items]


def load_all(texts: Sequence[Any], data: Any) -> list[str]:
    """The sentences :func:`dump_all` described, as Messages again where it recorded a code."""
    codes = data if isinstance(data, list) and len(data) == len(texts) else [None] * len(texts)
    return [Message.from_json(c, str(t)) if isinstance(c, Mapping) and "code" in c else str(t)
            for t, c in zip(texts, codes, strict=True)]


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **fields)`` in ``lang``; an unknown language falls back to English."""
    table = catalog(lang)

    def t(key: str, **fields: object) -> str:
        text = table[key]
        return text.format(**fields) if fields else text

    return t


def status_text(status: str, lang: str) -> str:
    """The word for a check status or a decision in ``lang`` (an unknown one as recorded)."""
    return catalog(lang).get(f"status.{status}", str(status))


def category_text(category: str, lang: str) -> str:
    """The name of a check category in ``lang`` (an unknown one as recorded)."""
    return catalog(lang).get(f"category.{category}", str(category))
