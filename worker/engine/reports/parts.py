"""Building blocks of every report page: escaping, values for people, tables, images.

No scripts and no external assets. Every string taken from a report is escaped here, so a hostile
model or dataset name cannot inject markup; values are written for people (no Python reprs: no None,
no brackets, no dicts).
"""

import base64
import html
import math
from collections.abc import Iterable
from typing import Any, TypeGuard


class Markup(str):
    """Text that is already HTML (escaped where it came from a report)."""

    __slots__ = ()


def esc(value: Any) -> Markup:
    """Escape any value for HTML text and attribute content."""
    return Markup(html.escape(str(value), quote=True))


def finite(value: Any) -> TypeGuard[int | float]:
    """A real, finite number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def human(value: Any) -> str:
    """A value for people (unescaped): numbers to 4 significant digits, yes/no, lists joined, mappings as
    `key value` pairs; nothing for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "n/a"
    if isinstance(value, list | tuple):
        return ", ".join(text for text in (human(item) for item in value) if text)
    if isinstance(value, dict):
        pairs = ((str(key).replace("_", " "), human(item)) for key, item in value.items())
        return "; ".join(f"{key} {text}" for key, text in pairs if text)
    return str(value)


def value_range(value: Any) -> str | None:
    """A [low, high] range for people ("0 to 1"), None when it is not one."""
    if isinstance(value, list | tuple) and len(value) == 2 and all(finite(v) for v in value):
        return f"{human(float(value[0]))} to {human(float(value[1]))}"
    return None


def num(value: Any, digits: int = 4) -> Markup:
    """A number for people ("n/a" when missing), escaped."""
    if value is None:
        return Markup("n/a")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(human(value))
    return esc(f"{value:.{digits}g}")


def pct(value: Any) -> Markup:
    """A share as a percentage ("n/a" when missing)."""
    return esc(f"{100 * value:.1f}%") if finite(value) else Markup("n/a")


def cell(value: Any) -> Markup:
    """A table cell's content: markup as it is, anything else written for people and escaped."""
    if isinstance(value, Markup):
        return value
    return num(value) if finite(value) else esc(human(value))


def table(headers: Iterable[str] | None, rows: Iterable[Iterable[str]]) -> str:
    """A table from already-escaped cells, with a header row unless headers is None."""
    head = ""
    if headers is not None:
        head = "<thead><tr>" + "".join(f'<th scope="col">{esc(h)}</th>' for h in headers) + "</tr></thead>"
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}<tbody>{body}</tbody></table>"


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table: each name a row header, its value a data cell; missing values are skipped.

    A value may be Markup (kept as is) or anything `human` writes; empty values are skipped, so the
    table never shows None or an empty cell.
    """
    rows = [(esc(key), cell(value)) for key, value in pairs if value is not None]
    body = "".join(f'<tr><th scope="row">{key}</th><td>{value}</td></tr>' for key, value in rows if value)
    return f'<table class="kv"><tbody>{body}</tbody></table>' if body else ""


def section(title: str, *parts: str) -> str:
    """A titled section, empty when every part is empty."""
    content = "".join(parts)
    return f"<section><h2>{esc(title)}</h2>{content}</section>" if content else ""


def png_img(png: bytes | str, caption: str, *, scale: int = 8, width: int | None = None) -> str:
    """An inline PNG (bytes or base64 text) as a figure, scaled up with crisp pixels."""
    data = png if isinstance(png, str) else base64.b64encode(png).decode("ascii")
    size = f' width="{int(width)}"' if width else ""
    style = f"image-rendering:pixelated;min-width:{int(scale) * 8}px"
    return (
        f'<figure class="img"><img src="data:image/png;base64,{esc(data)}" alt="{esc(caption)}"'
        f'{size} style="{style}"><figcaption>{esc(caption)}</figcaption></figure>'
    )


def figure(chart: str, caption: str) -> str:
    """A chart with its caption; empty when the chart is."""
    return f"<figure>{chart}<figcaption>{esc(caption)}</figcaption></figure>" if chart else ""
