"""A plotly figure also drawn as a static SVG, so a saved notebook shows its charts where no script runs.

    import plotly.io as pio
    from pricer.charts import register
    register()                                          # pricer.progress does it for executed notebooks
    pio.renderers.default = "plotly_mimetype+pricer_svg"
    fig.show()              # JupyterLab / VS Code draw the interactive chart; GitHub and nbviewer the SVG

GitHub strips a notebook's scripts, so plotly's HTML output is blank there, and plotly's own static
export (kaleido) needs a Chrome it can start: not on a CI machine or offline. This draws the few
kinds of chart the lab uses (scatter lines, markers and filled bands, bars, histograms, vertical
lines; linear, log and category axes) with nothing but string formatting: an approximation of the
interactive chart, enough to read it. No plotly.js goes into the notebook at all.
"""

import base64
import html
import math
import re

import numpy as np

PALETTE = ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880"]
MARGIN = dict(left=190, right=30, top=60, bottom=55)  # room for category names, the title, axis titles
TAG = re.compile(r"<[^>]+>")


def _values(v) -> list:
    """A trace's data as a list: plotly keeps numpy arrays, and encodes them as {"dtype", "bdata"} in JSON."""
    if v is None:
        return []
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return np.asarray(v, dtype=object).ravel().tolist()


def _text(value) -> str:
    if isinstance(value, dict):
        value = value.get("text")
    return TAG.sub("", str(value or "").replace("<br>", " · "))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _format(template: str, value) -> str:
    """plotly's texttemplate '%{x:$,.2f} GB' with d3's '$' prefix, for the values on bars."""
    def one(match):
        spec = match.group(1) or ""
        dollar = spec.startswith("$")
        spec = spec.lstrip("$")
        try:
            text = format(value, spec) if spec else f"{value:g}"
        except (ValueError, TypeError):
            text = str(value)
        return ("$" if dollar else "") + text
    return re.sub(r"%\{[xy](?::([^}]*))?\}", one, template)


class _Axis:
    """Data to pixels along one axis: linear, log or categories."""

    def __init__(self, values, spec, start, end, bars_from_zero=False, totals=None):
        spec = spec or {}
        self.start, self.end, self.reversed = start, end, spec.get("autorange") == "reversed"
        self.categories = None
        if any(isinstance(v, str) for v in values):
            order = list(dict.fromkeys(str(v) for v in values))
            wanted = [str(c) for c in _values(spec.get("categoryarray"))]
            if spec.get("categoryorder") == "array" and wanted:
                order = [c for c in wanted if c in order] + [c for c in order if c not in wanted]
            elif str(spec.get("categoryorder", "")).startswith("total") and totals:  # plotly draws the first lowest
                order.sort(key=lambda c: totals.get(c, 0), reverse=spec["categoryorder"].endswith("ascending"))
            self.categories = order
            return
        self.log = spec.get("type") == "log"
        numbers = [float(v) for v in values if _number(v) and (not self.log or v > 0)] or [0.0, 1.0]
        low, high = (spec["range"] if spec.get("range") and not self.log else (min(numbers), max(numbers)))
        if bars_from_zero:
            low, high = min(low, 0.0), max(high, 0.0)
        if self.log:
            low, high = math.log10(low), math.log10(high)
        pad = (high - low) * 0.05 or 1.0
        self.low, self.high = (low, high) if spec.get("range") and not self.log else (low - pad * (not bars_from_zero
                                                                                                   or low < 0), high + pad)

    def band(self) -> float:
        return abs(self.end - self.start) / max(len(self.categories or [1]), 1)

    def __call__(self, v) -> float:
        if self.categories is not None:
            i = self.categories.index(str(v)) if str(v) in self.categories else 0
            i = len(self.categories) - 1 - i if self.reversed else i
            return self.start + (i + 0.5) * (self.end - self.start) / len(self.categories)
        v = math.log10(v) if self.log and v > 0 else (self.low if self.log else v)
        return self.start + (v - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self) -> list[tuple[float, str]]:
        if self.categories is not None:
            return [(self(c), c if len(c) <= 28 else c[:27] + "…") for c in self.categories]
        if self.log:
            return [(self(10.0 ** k), f"{10 ** k:g}") for k in range(math.ceil(self.low), math.floor(self.high) + 1)]
        step = 10 ** math.floor(math.log10((self.high - self.low) / 5 or 1))
        step *= next(m for m in (1, 2, 5, 10) if (self.high - self.low) / (step * m) <= 7)
        first = math.ceil(self.low / step) * step
        return [(self(t), f"{t:,.{max(0, -math.floor(math.log10(step)))}f}")
                for t in np.arange(first, self.high + step / 2, step) if self.low <= t <= self.high]


def _histogram(trace) -> dict:
    """A histogram trace as the bar trace plotly would draw: counts per category or per numeric bin."""
    horizontal = "y" in trace and "x" not in trace
    values = _values(trace.get("y") if horizontal else trace.get("x"))
    if any(isinstance(v, str) for v in values):
        names = list(dict.fromkeys(values))
        centres, counts = names, [values.count(n) for n in names]
    else:
        counts, edges = np.histogram([float(v) for v in values if _number(v)],
                                     bins=trace.get("nbinsy" if horizontal else "nbinsx") or 30)
        centres, counts = ((edges[:-1] + edges[1:]) / 2).tolist(), counts.tolist()
    keys = ("y", "x") if horizontal else ("x", "y")
    return {**trace, "type": "bar", "orientation": "h" if horizontal else "v", keys[0]: centres, keys[1]: counts,
            "gapless": not isinstance(centres[0] if centres else 0, str)}


def to_svg(fig_dict: dict) -> str:
    """The figure (`fig.to_dict()`) as an SVG document."""
    layout = fig_dict.get("layout", {})
    width, height = int(layout.get("width") or 900), int(layout.get("height") or 450)
    traces = [_histogram(t) if t.get("type") == "histogram" else t for t in fig_dict.get("data", [])]
    xs, ys = [], []
    for t in traces:
        xs += _values(t.get("x"))
        ys += _values(t.get("y"))
    bars = [t for t in traces if t.get("type") == "bar"]
    horizontal = any(t.get("orientation") == "h" for t in bars)
    left = MARGIN["left"] if horizontal or any(isinstance(v, str) for v in ys) else 70
    totals = {}
    for t in bars:
        places, values = (_values(t.get("y")), _values(t.get("x")))[::1 if t.get("orientation") == "h" else -1]
        for place, value in zip(places, values):
            totals[str(place)] = totals.get(str(place), 0) + (value if _number(value) else 0)
    x_axis = _Axis(xs, layout.get("xaxis"), left, width - MARGIN["right"], bars_from_zero=bool(bars) and horizontal,
                   totals=totals)
    y_axis = _Axis(ys, layout.get("yaxis"), height - MARGIN["bottom"], MARGIN["top"],
                   bars_from_zero=bool(bars) and not horizontal, totals=totals)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for pos, label in x_axis.ticks():
        out.append(f'<line x1="{pos:.1f}" x2="{pos:.1f}" y1="{MARGIN["top"]}" y2="{height - MARGIN["bottom"]}" '
                   f'stroke="#eee"/><text x="{pos:.1f}" y="{height - MARGIN["bottom"] + 16}" '
                   f'text-anchor="middle">{html.escape(label)}</text>')
    for pos, label in y_axis.ticks():
        out.append(f'<line x1="{left}" x2="{width - MARGIN["right"]}" y1="{pos:.1f}" y2="{pos:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 6}" y="{pos + 4:.1f}" text-anchor="end">{html.escape(label)}</text>')
    grouped = [t for t in bars if layout.get("barmode") == "group"]
    for n, t in enumerate(traces):
        out += _trace(t, n, x_axis, y_axis, grouped)
    for shape in layout.get("shapes", []):
        if shape.get("type") == "line" and shape.get("x0") == shape.get("x1") and str(shape.get("yref")).endswith(("paper", "domain")):
            x = x_axis(shape["x0"])
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MARGIN["top"]}" y2="{height - MARGIN["bottom"]}" '
                       f'stroke="{(shape.get("line") or {}).get("color", "#888")}"/>')
    out.append(f'<text x="{left}" y="24" font-size="15">{html.escape(_text(layout.get("title")))}</text>')
    out.append(f'<text x="{(left + width - MARGIN["right"]) / 2:.0f}" y="{height - 12}" text-anchor="middle">'
               f'{html.escape(_text((layout.get("xaxis") or {}).get("title")))}</text>')
    out.append(f'<text transform="translate(14,{(height - MARGIN["bottom"] + MARGIN["top"]) / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle">{html.escape(_text((layout.get("yaxis") or {}).get("title")))}</text>')
    names = [(t.get("name"), _color(t, n)) for n, t in enumerate(traces) if t.get("name")]
    if layout.get("showlegend") is not False and len(names) > 1:
        at = width - 20 - 7 * max(len(_text(name)) for name, _ in names)  # ~7 px a character at 12 px
        for i, (name, color) in enumerate(names):
            out.append(f'<rect x="{at}" y="{34 + 15 * i}" width="10" height="10" fill="{color}"/>'
                       f'<text x="{at + 15}" y="{43 + 15 * i}">{html.escape(_text(name))}</text>')
    return "\n".join(out + ["</svg>"])


def _color(trace, n) -> str:
    for part in ("marker", "line"):
        color = (trace.get(part) or {}).get("color")
        if isinstance(color, str):
            return color
    return PALETTE[n % len(PALETTE)]


def _trace(t, n, x_axis, y_axis, grouped) -> list[str]:
    x, y, color = _values(t.get("x")), _values(t.get("y")), _color(t, n)
    if t.get("type") == "bar":
        return _bars(t, x, y, color, x_axis, y_axis, grouped)
    points = [(x_axis(a), y_axis(b)) for a, b in zip(x, y) if (_number(a) or isinstance(a, str)) and _number(b)]
    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
    mode, out = t.get("mode") or "lines", []
    if t.get("fill") == "toself":
        return [f'<polygon points="{path}" fill="{t.get("fillcolor") or color}" stroke="none"/>']
    if "lines" in mode and points:
        line = t.get("line") or {}
        dash = ' stroke-dasharray="6,4"' if line.get("dash") else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{line.get("color") or color}" '
                   f'stroke-width="{line.get("width") or 2}"{dash}/>')
    if "markers" in mode:
        size = (t.get("marker") or {}).get("size") or 6
        out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="{size / 2:g}" fill="{color}"/>' for a, b in points]
    return out


def _bars(t, x, y, color, x_axis, y_axis, grouped) -> list[str]:
    horizontal = t.get("orientation") == "h"
    across, along = (y_axis, x_axis) if horizontal else (x_axis, y_axis)
    places, values = (y, x) if horizontal else (x, y)
    band = across.band() if across.categories is not None else (
        abs(across(places[1]) - across(places[0])) if len(places) > 1 else 20)
    thick = band * (1.0 if t.get("gapless") else 0.8) / max(len(grouped), 1)
    shift = (grouped.index(t) - (len(grouped) - 1) / 2) * thick if t in grouped else 0
    template = t.get("texttemplate") or ""
    out = []
    for place, value in zip(places, values):
        if not _number(value):
            continue
        centre, zero, end = across(place) + shift, along(max(0.0, along.low) if not along.categories else 0), along(value)
        if horizontal:
            box = (min(zero, end), centre - thick / 2, abs(end - zero), thick)
        else:
            box = (centre - thick / 2, min(zero, end), thick, abs(end - zero))
        out.append('<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" '.format(*box) + f'fill="{color}"/>')
        if template:
            label = html.escape(_format(template, value))
            at = (f'x="{end + 4:.1f}" y="{centre + 4:.1f}"' if horizontal else
                  f'x="{centre:.1f}" y="{end - 4:.1f}" text-anchor="middle"')
            out.append(f"<text {at}>{label}</text>")
    return out


def register(name: str = "pricer_svg") -> None:
    """Add the renderer to plotly's registry under `name` (combine it: "plotly_mimetype+pricer_svg")."""
    import plotly.io as pio
    from plotly.io.base_renderers import MimetypeRenderer

    class StaticSvg(MimetypeRenderer):
        def to_mimebundle(self, fig_dict):
            return {"image/svg+xml": to_svg(fig_dict)}

    pio.renderers[name] = StaticSvg()
