"""The report as a small tree of blocks, built once and rendered to Markdown and to HTML.

Every piece of text in a block is data, never markup: the renderers escape all of it, so a tensor name, a chat
template or a model's answer cannot break a Markdown table or inject HTML (issue 7).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Control characters other than tab and newline: a model may emit them, and an ESC sequence would restyle the
# terminal of whoever runs `cat`; they are shown as \xNN in every output.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: object) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


@dataclass
class Span:
    text: str
    style: str = ""  # "" | "b" (bold) | "code" | "i" (italic)


@dataclass
class Link:
    text: str
    href: str  # a relative path the report itself wrote


@dataclass
class Badge:
    """A status or decision word: an icon before it in Markdown, a coloured label in HTML (no emoji font needed)."""

    kind: str  # a Status value ("pass", "fail", ...) or a Decision value ("GO", "STOP", ...)
    text: str


BADGE_ICONS = {"pass": "✅", "caution": "⚠️", "fail": "❌", "limitation": "ℹ️", "inconclusive": "❔", "error": "💥",
               "GO": "✅", "CAUTION": "⚠️", "STOP": "⛔", "INCONCLUSIVE": "❔"}

Inline = str | Span | Link | Badge
Cell = Inline | list[Inline]


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    parts: list[Inline]


@dataclass
class Bullets:
    items: list[list[Inline]]


@dataclass
class Table:
    header: list[Cell]
    rows: list[list[Cell]]
    right: set[int] = field(default_factory=set)  # numeric columns, aligned right


@dataclass
class Image:
    filename: str  # beside the report
    alt: str


@dataclass
class Code:
    text: str  # shown verbatim, e.g. a model's answer or a text file


@dataclass
class Banner:
    """The decision line at the top; ``kind`` is the decision (GO/CAUTION/STOP/INCONCLUSIVE) for colouring."""

    kind: str
    parts: list[Inline]


Block = Heading | Para | Bullets | Table | Image | Code | Banner


def parts(cell: Cell) -> list[Inline]:
    return cell if isinstance(cell, list) else [cell]
