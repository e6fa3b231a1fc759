"""Blocks → GitHub-flavoured Markdown, every text escaped so that untrusted strings stay text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from fakequant.report import blocks as blk

_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#])")
# Line starts that CommonMark would read as a list item, heading, quote, rule or setext underline.
_LINE_START = re.compile(r"^(\s*)([-+*=]|\d+[.)])(?=\s|$)")


def _guard(match: re.Match[str]) -> str:
    lead, mark = match.group(1), match.group(2)
    return lead + (mark[:-1] + "\\" + mark[-1] if mark[0].isdigit() else "\\" + mark)


def escape(text: str) -> str:
    """Escape text for an inline Markdown context (paragraph, list item or table cell)."""
    text = _SPECIAL.sub(r"\\\1", blk.visible(text).replace("&", "&amp;"))
    text = _LINE_START.sub(_guard, text)
    # Newlines would end a table row or a paragraph: keep them as line breaks inside the element.
    return re.sub(r"\r\n|\r|\n", "<br>", text)


def code_span(text: str, in_table: bool = False) -> str:
    body = " ".join(blk.visible(text).splitlines())
    if in_table:  # GFM splits table cells before reading code spans
        body = body.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or not body.strip() else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _inline(item: blk.Inline, in_table: bool = False) -> str:
    if isinstance(item, blk.Badge):
        icon = blk.BADGE_ICONS.get(item.kind)
        return f"{icon} {escape(item.text)}" if icon else escape(item.text)
    if isinstance(item, blk.Link):
        href = item.href.replace(" ", "%20").replace(")", "%29").replace("(", "%28").replace("<", "%3C")
        return f"[{escape(item.text)}]({href})"
    if isinstance(item, blk.Span):
        if item.style == "code":
            return code_span(item.text, in_table)
        text = escape(item.text)
        mark = {"b": "**", "i": "*"}.get(item.style)
        core = text.strip()
        if not mark or not core:
            return text
        # Emphasis only closes on a non-space: keep the spaces outside the markers.
        lead, trail = text[:len(text) - len(text.lstrip())], text[len(text.rstrip()):]
        return f"{lead}{mark}{core}{mark}{trail}"
    return escape(item)


def _line(items: Sequence[blk.Inline], in_table: bool = False) -> str:
    return "".join(_inline(i, in_table) for i in items)


def _cell(cell: blk.Cell) -> str:
    return _line(blk.parts(cell), in_table=True).strip() or " "


def _table(table: blk.Table) -> str:
    width = len(table.header)
    rule = ["---:" if i in table.right else "---" for i in range(width)]
    lines = ["| " + " | ".join(_cell(c) for c in table.header) + " |", "| " + " | ".join(rule) + " |"]
    for row in table.rows:
        cells = [_cell(c) for c in row] + [" "] * (width - len(row))
        lines.append("| " + " | ".join(cells[:width]) + " |")
    return "\n".join(lines)


def _code(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`{3,}|~{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{blk.visible(text).rstrip()}\n{fence}"


def render(blocks: Sequence[blk.Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, blk.Heading):
            out.append("#" * block.level + " " + escape(block.text))
        elif isinstance(block, blk.Para):
            out.append(_line(block.parts))
        elif isinstance(block, blk.Banner):
            out.append("> " + _line(block.parts))
        elif isinstance(block, blk.Bullets):
            out.append("\n".join("- " + _line(item) for item in block.items))
        elif isinstance(block, blk.Table):
            out.append(_table(block))
        elif isinstance(block, blk.Image):
            out.append(f"![{escape(block.alt)}]({block.filename})")
        elif isinstance(block, blk.Code):
            out.append(_code(block.text))
    return "\n\n".join(out) + "\n"
