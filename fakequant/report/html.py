"""Blocks → HTML: a self-contained page per experiment and a fragment for pytest-html's summary section.

Every text is escaped with :func:`html.escape`; plots are embedded as ``data:`` URIs so that the page reads offline,
e.g. as a CI artifact. CSS classes carry an ``fq-`` prefix so the fragment does not restyle pytest-html's page.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

from fakequant.report.blocks import (
    Badge,
    Banner,
    Block,
    Bullets,
    Cell,
    Code,
    Heading,
    Image,
    Inline,
    Link,
    Para,
    Span,
    Table,
    parts,
    visible,
)

CSS = """
.fq { font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans CJK TC", "Noto Sans TC", sans-serif;
      color: #1f2328; line-height: 1.45; }
.fq table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
.fq th, .fq td { border: 1px solid #d0d7de; padding: 4px 8px; vertical-align: top; text-align: left; }
.fq th { background: #f6f8fa; }
.fq td.fq-num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.fq code { background: #f6f8fa; padding: 0 3px; border-radius: 3px; font-size: 0.92em; }
.fq pre { background: #f6f8fa; padding: 8px; white-space: pre-wrap; word-break: break-word; }
.fq img { max-width: 100%; height: auto; border: 1px solid #d0d7de; margin: 4px 0; }
.fq .fq-banner { padding: 8px 12px; border-radius: 6px; font-size: 1.1em; margin: 0.5em 0 1em; }
.fq .fq-GO { background: #dafbe1; border-left: 6px solid #1a7f37; }
.fq .fq-CAUTION { background: #fff8c5; border-left: 6px solid #9a6700; }
.fq .fq-STOP { background: #ffebe9; border-left: 6px solid #cf222e; }
.fq .fq-INCONCLUSIVE { background: #eaeef2; border-left: 6px solid #57606a; }
.fq .fq-badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 0.85em; font-weight: 600;
                white-space: nowrap; color: #fff; background: #57606a; }
.fq .fq-k-pass, .fq .fq-k-GO { background: #1a7f37; }
.fq .fq-k-caution, .fq .fq-k-CAUTION { background: #9a6700; }
.fq .fq-k-fail, .fq .fq-k-STOP { background: #cf222e; }
.fq .fq-k-limitation { background: #0969da; }
.fq .fq-k-error { background: #8250df; }
.fq.fq-summary img { width: 31%; min-width: 280px; margin-right: 1%; vertical-align: top; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _text(text: str) -> str:
    return escape(visible(text), quote=True).replace("\r\n", "\n").replace("\n", "<br>")


def _inline(item: Inline) -> str:
    if isinstance(item, Badge):
        return f'<span class="fq-badge fq-k-{escape(item.kind, quote=True)}">{_text(item.text)}</span>'
    if isinstance(item, Link):
        return f'<a href="{escape(item.href, quote=True)}">{_text(item.text)}</a>'
    if isinstance(item, Span):
        tag = {"b": "strong", "code": "code", "i": "em"}.get(item.style)
        return f"<{tag}>{_text(item.text)}</{tag}>" if tag else _text(item.text)
    return _text(item)


def _line(items: Sequence[Inline]) -> str:
    return "".join(_inline(i) for i in items)


def _cells(cells: Sequence[Cell], tag: str, right: set[int]) -> str:
    out = []
    for i, cell in enumerate(cells):
        cls = ' class="fq-num"' if tag == "td" and i in right else ""
        out.append(f"<{tag}{cls}>{_line(parts(cell))}</{tag}>")
    return "<tr>" + "".join(out) + "</tr>"


def _image(block: Image, images: Mapping[str, bytes]) -> str:
    png = images.get(block.filename)
    src = data_uri(png) if png is not None else escape(block.filename, quote=True)
    return f'<img src="{src}" alt="{escape(block.alt, quote=True)}" title="{escape(block.alt, quote=True)}">'


def render(blocks: Sequence[Block], images: Mapping[str, bytes] | None = None) -> str:
    images = images or {}
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            anchor = f' id="{escape(block.anchor, quote=True)}"' if block.anchor else ""
            out.append(f"<h{level}{anchor}>{_text(block.text)}</h{level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_line(block.parts)}</p>")
        elif isinstance(block, Banner):
            out.append(f'<div class="fq-banner fq-{escape(block.kind, quote=True)}">{_line(block.parts)}</div>')
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_line(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = _cells(block.header, "th", block.right)
            body = "".join(_cells(row, "td", block.right) for row in block.rows)
            out.append(f"<table><thead>{head}</thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Image):
            out.append(_image(block, images))
        elif isinstance(block, Code):
            out.append(f"<pre>{escape(visible(block.text), quote=True)}</pre>")
    return "\n".join(out)


def page(title: str, body: str, lang: str = "en") -> str:
    return (f'<!DOCTYPE html>\n<html lang="{escape(lang, quote=True)}">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{_text(title)}</title>\n<style>{CSS}body {{ margin: 2em auto; max-width: 1200px; "
            f"padding: 0 1em; }}</style>\n</head>\n<body class=\"fq\">\n{body}\n</body>\n</html>\n")


def fragment(body: str) -> str:
    """For pytest-html's summary: scoped styles, no page skeleton."""
    return f'<style>{CSS}</style>\n<div class="fq fq-summary">\n{body}\n</div>'


def read_images(folder: Path, names: Sequence[str]) -> dict[str, bytes]:
    found = {}
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            found[name] = path.read_bytes()
    return found
