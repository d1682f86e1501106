"""The report's HTML: escaping, the page skeleton, sections, tables and figures.

Every string that reaches the page goes through :func:`esc` (text and attributes) or, inside a
plotly figure, :func:`label` (plotly draws titles, legends and hover text as a small HTML subset,
so a raw ``<b>`` or ``<a href>`` in a run name would be drawn as markup). The page loads nothing:
no CDN, no fonts, no MathJax, no image files (a study's static figures are embedded as data URIs);
plotly.js is inlined once, gzip-compressed (4.8 MB of it would otherwise outweigh everything else):
the page inflates it with the browser's own ``DecompressionStream`` and then draws the figures,
whose scripts wait as inert ``text/plain`` until then.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import math
import numbers
from typing import Any, Iterable, Mapping, Sequence

from ..store.settings import flatten

__all__ = ["Page", "Section", "TEMPLATE", "esc", "fmt", "flatten", "label", "table", "mapping_table", "plotly_loader"]

#: The plotly template of every figure.
TEMPLATE = "plotly_white"


def esc(value: Any) -> str:
    """``value`` as text safe anywhere in the page's HTML (element text and quoted attributes).

    Examples
    --------
    >>> esc('<script>"&\\'')
    '&lt;script&gt;&quot;&amp;&#x27;'
    """
    return html.escape(str(value), quote=True)


def label(value: Any) -> str:
    """``value`` as text for a plotly title, axis label, legend entry or hover text.

    plotly.js reads those as HTML-like markup (``<b>``, ``<br>``, ``<a href>``) and typesets text
    between dollar signs with MathJax when it is present, so both are neutralised: ``<``, ``>``,
    ``&`` and ``$`` become entities, which plotly draws as the characters they stand for. Quotes
    stay as they are: with no ``<`` left no tag (and no attribute) can be formed, and plotly would
    draw ``&quot;`` literally.

    Examples
    --------
    >>> label("<b>$x$</b>")
    '&lt;b&gt;&#36;x&#36;&lt;/b&gt;'
    """
    return html.escape(str(value), quote=False).replace("$", "&#36;")


def fmt(value: Any) -> str:
    """A number in 4 significant digits, anything else as text (not yet escaped)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        v = float(value)
        return str(v) if not math.isfinite(v) else f"{v:.4g}"
    if isinstance(value, (list, tuple)) and len(value) <= 12 and all(isinstance(v, (numbers.Number, str)) for v in value):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], caption: str | None = None) -> str:
    """An HTML table; every cell is formatted with :func:`fmt` and escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(fmt(c)) for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    # In a scrolling box: a wide table (many measures) scrolls instead of squeezing its numbers.
    return f'<div class="scroll"><table class="data">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cell(text: str) -> str:
    """A table cell: short values on one line, long text wrapped."""
    return f'<td class="long">{esc(text)}</td>' if len(text) > 40 else f"<td>{esc(text)}</td>"


def mapping_table(mapping: Mapping, caption: str | None = None, limit: int = 400) -> str:
    """A two-column table of a (flattened) mapping; long value lists are shortened."""
    rows = []
    for k, v in flatten(mapping).items():
        text = fmt(v)
        if len(text) > limit:
            text = text[:limit] + f"... ({len(text)} characters)"
        rows.append((k, text))
    return table(("key", "value"), rows, caption)


class Section:
    """One part of the page: a heading, and blocks of HTML appended in order.

    ``parts`` are already-safe HTML (made by :func:`table`, :meth:`Page.figure`, :meth:`text`).
    """

    def __init__(self, title: str, anchor: str):
        self.title, self.anchor, self.parts = title, anchor, []

    def text(self, words: str, cls: str = "note") -> None:
        self.parts.append(f'<p class="{esc(cls)}">{esc(words)}</p>')

    def html(self, block: str) -> None:
        self.parts.append(block)

    def __bool__(self) -> bool:
        return bool(self.parts)


class Page:
    """The report being assembled: sections in order, plotly.js inlined with the first figure.

    Examples
    --------
    >>> page = Page("my run")
    >>> s = page.section("Surfaces")
    >>> s.text("no surface stored")
    >>> page.render().startswith("<!DOCTYPE html>")
    True
    """

    def __init__(self, title: str, subtitle: str = ""):
        self.title, self.subtitle = title, subtitle
        self.sections: list[Section] = []
        self.figures = 0
        self._anchors: set[str] = set()

    def section(self, title: str) -> Section:
        base = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-") or "section"
        anchor, i = base, 1
        while anchor in self._anchors:
            i += 1
            anchor = f"{base}-{i}"
        self._anchors.add(anchor)
        s = Section(title, anchor)
        self.sections.append(s)
        return s

    def figure(self, fig, height: int = 480, caption: str | None = None) -> str:
        """One plotly figure as a ``<div>`` and its drawing script, which waits (as ``text/plain``)
        until the page has inflated plotly.js (:meth:`render` adds it once).

        ``fig`` is a :class:`plotly.graph_objects.Figure`, or a figure already made a dict (with
        its template applied; taken as it is, unvalidated: the animated embeddings build their
        thousands of frame traces as plain typed arrays). ``auto_play=False``: an animated figure
        waits for its play button.
        """
        import plotly.io as pio

        if isinstance(fig, dict):
            fig["layout"]["height"] = height
        else:
            fig.update_layout(height=height, template=TEMPLATE)
        self.figures += 1
        div = pio.to_html(fig, validate=not isinstance(fig, dict), full_html=False, include_plotlyjs=False, include_mathjax=False,
                          auto_play=False, default_height=f"{height}px", div_id=f"figure-{self.figures}",
                          config={"displaylogo": False, "responsive": True})
        opening = "<script>"
        if div.count(opening) != 1:
            raise RuntimeError(f"plotly's figure HTML changed ({div.count(opening)} scripts); update Page.figure")
        div = div.replace(opening, f'<script type="text/plain" class="{DEFERRED}">')
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        return f'<figure class="plot">{div}{cap}</figure>'

    def render(self) -> str:
        shown = [s for s in self.sections if s]
        loader = plotly_loader() if self.figures else ""
        nav = "".join(f'<li><a href="#{esc(s.anchor)}">{esc(s.title)}</a></li>' for s in shown)
        body = "".join(f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>'
                       for s in shown)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            # No request may leave the page: scripts and styles inline only, images as data: URIs.
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
            "font-src data:; connect-src 'none'; worker-src blob:\">"
            f"<title>{esc(self.title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{esc(self.title)}</h1><p class=\"sub\">{esc(self.subtitle)}</p>"
            f"<nav><ul>{nav}</ul></nav></header><main>{body}</main>{loader}</body></html>\n"
        )


#: The class of the figures' drawing scripts, run once plotly.js is inflated.
DEFERRED = "lossatlas-figure"


@functools.lru_cache(maxsize=1)
def _plotly_gzip() -> tuple[str, str]:
    """plotly.js as shipped with the plotly package: (its version, gzip + base64 of its text)."""
    from plotly.offline import get_plotlyjs, get_plotlyjs_version

    text = get_plotlyjs().encode("utf-8")
    # mtime=0: the same page bytes for the same plotly.js.
    return get_plotlyjs_version(), base64.b64encode(gzip.compress(text, compresslevel=9, mtime=0)).decode("ascii")


def plotly_loader() -> str:
    """The one script that carries plotly.js (compressed), inflates it, then runs every figure's
    script in page order; a browser that cannot inflate says so at the top of the page."""
    version, data = _plotly_gzip()
    return (
        "<script>/**\n* plotly.js v" + version + " (gzip, base64; inflated by the page itself)\n*/\n"
        "window.PlotlyConfig = {MathJaxConfig: 'local'};\n"
        "(async function () {\n"
        f'  const packed = "{data}";\n'
        "  const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));\n"
        "  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));\n"
        "  (0, eval)(await new Response(stream).text());\n"
        f"  for (const s of document.querySelectorAll('script.{DEFERRED}')) (0, eval)(s.textContent);\n"
        "})().catch(function (e) {\n"
        "  const p = document.createElement('p'); p.className = 'warn';\n"
        "  p.textContent = 'The figures could not be drawn (this browser cannot inflate the page\\'s plotly.js: ' + e + ').';\n"
        "  document.querySelector('main').prepend(p);\n"
        "});\n</script>"
    )


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{padding:1.2em 2em;background:#1d2b44;color:#fff}header h1{margin:0;font-size:1.5em;word-break:break-all}
header .sub{margin:.3em 0 0;opacity:.8;font-size:.9em;word-break:break-all}
nav ul{list-style:none;padding:0;margin:.8em 0 0;display:flex;flex-wrap:wrap;gap:.4em 1.2em}
nav a{color:#cfe0ff;text-decoration:none}main{padding:0 2em 3em}
section{background:#fff;margin:1.5em 0;padding:1em 1.5em;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:1.25em;border-bottom:1px solid #e3e7ee;padding-bottom:.3em}h3{font-size:1.05em;margin-top:1.4em}
figure.plot{margin:1em 0}figure.static img{max-width:100%;height:auto}figcaption{font-size:.85em;color:#555}
table.data{border-collapse:collapse;margin:.8em 0;font-size:.85em}
table.data th,table.data td{border:1px solid #dde2ea;padding:.25em .6em;text-align:left;vertical-align:top;white-space:nowrap}
table.data td.long{white-space:normal;min-width:20em;max-width:60em;overflow-wrap:anywhere}div.scroll{overflow-x:auto}
table.data th{background:#f0f3f8}caption{text-align:left;font-weight:600;padding:.3em 0}
p.note{color:#555;font-size:.9em}p.warn{color:#9a3b00;font-size:.9em}
pre{background:#f4f6f9;padding:.6em;overflow:auto;font-size:.8em}
p.caveat{background:#fff4e5;border-left:4px solid #c2410c;padding:.6em .9em;margin:.6em 0 1em}
div.overview{margin:.4em 0 1em}ul.meanings{margin:.2em 0 0;padding-left:1.2em;font-size:.85em;color:#444}
details{margin:.5em 0}div.cards{display:flex;flex-wrap:wrap;gap:0 1.5em;align-items:flex-start}summary{cursor:pointer;font-weight:600}
"""
