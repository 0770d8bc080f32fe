#!/usr/bin/env python3
"""Render bench/growth.sh's data as one SVG of small line charts (stdlib only).

Usage: growth_plot.py DATA.tsv OUT.svg

DATA lines (tab-separated):
  panel  ID  TITLE  XLABEL  YLABEL  lin|log     one chart (first definition wins)
  point  ID  SERIES  X  Y                        a point of SERIES in chart ID
Charts appear in the order they were defined, two per row; the y axis starts at 0.
Series with more than 40 points are drawn as lines without markers; a series whose
name starts with "target" is drawn grey and dashed, without markers. The legend flows
under the x axis label, on a second row when the names do not fit on one.
"""
import math
import sys
from xml.sax.saxutils import escape

W, H = 520, 320  # one chart, including its margins
ML, MR, MT, MB = 72, 16, 36, 76  # plot area margins (the bottom one: ticks, label, 2 legend rows)
COLS = 2
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def read(path):
    panels, order, points = {}, [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "panel" and len(parts) == 6:
                if parts[1] not in panels:
                    panels[parts[1]] = parts[2:]
                    order.append(parts[1])
            elif parts[0] == "point" and len(parts) == 5:
                try:
                    x, y = float(parts[3]), float(parts[4])
                except ValueError:
                    continue  # "n/a" and the like are left out
                points.setdefault(parts[1], {}).setdefault(parts[2], []).append((x, y))
    return [(pid, panels[pid], points.get(pid, {})) for pid in order]


def nice_step(span, target=5):
    if span <= 0:
        return 1.0
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def fmt(v):
    if v == int(v):
        return f"{int(v):,}"
    return f"{v:.3g}"


def fmt_tick(v):
    """axis ticks: 50k rather than 50,000"""
    if abs(v) >= 10000 and v == int(v) and int(v) % 1000 == 0:
        return f"{int(v) // 1000:,}k"
    return fmt(v)


def chart(ox, oy, meta, series):
    title, xlabel, ylabel, scale = meta
    out = []
    pw, ph = W - ML - MR, H - MT - MB
    x0, y0 = ox + ML, oy + MT
    out.append(f'<text x="{ox + W / 2}" y="{oy + 20}" text-anchor="middle" '
               f'font-weight="bold">{escape(title)}</text>')
    pts = [p for s in series.values() for p in s]
    if not pts:
        out.append(f'<text x="{ox + W / 2}" y="{oy + H / 2}" text-anchor="middle">no data</text>')
        return out
    log = scale == "log" and all(x > 0 for x, _ in pts)
    xs = sorted({x for x, _ in pts})
    ymax = max(y for _, y in pts)
    ystep = nice_step(ymax if ymax > 0 else 1)
    ytop = ystep * math.ceil((ymax if ymax > 0 else 1) / ystep)
    if log:
        lo, hi = math.log10(xs[0]), math.log10(xs[-1])
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.06 * (hi - lo)
        lo, hi = lo - pad, hi + pad

        def fx(x):
            return x0 + pw * (math.log10(x) - lo) / (hi - lo)
        xticks = xs if len(xs) <= 8 else [10 ** e for e in range(math.ceil(lo), math.floor(hi) + 1)]
    else:
        lo, hi = min(0.0, xs[0]), xs[-1]
        xstep = nice_step(hi - lo if hi > lo else 1)
        hi = xstep * math.ceil(hi / xstep) if hi > lo else lo + xstep

        def fx(x):
            return x0 + pw * (x - lo) / (hi - lo)
        xticks, t = [], lo
        while t <= hi + 1e-9:
            xticks.append(t)
            t += xstep

    def fy(y):
        return y0 + ph - ph * y / ytop

    # grid, ticks, axes
    t = 0.0
    while t <= ytop + 1e-9:
        y = fy(t)
        out.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt_tick(t)}</text>')
        t += ystep
    for xt in xticks:
        x = fx(xt)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + ph}" stroke="#f0f0f0"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + ph + 16}" text-anchor="middle">{fmt_tick(xt)}</text>')
    out.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 36}" text-anchor="middle">'
               f'{escape(xlabel)}{" (log scale)" if log else ""}</text>')
    out.append(f'<text transform="translate({ox + 16},{y0 + ph / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(ylabel)}</text>')
    # series and legend (items laid out left to right, wrapping to a second row)
    lx, ly = x0, y0 + ph + 52
    for i, (name, sp) in enumerate(series.items()):
        target = name.startswith("target")
        color = "#777" if target else COLORS[i % len(COLORS)]
        dash = ' stroke-dasharray="6 4"' if target else ""
        sp = sorted(sp)
        path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in sp)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                   f'stroke-width="1.8"{dash}/>')
        if len(sp) <= 40 and not target:
            # value labels above the points, below them for every second series
            dy = -6 if i % 2 == 0 else 15
            for x, y in sp:
                out.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3.5" fill="{color}">'
                           f'<title>{escape(name)}: {fmt(x)} → {fmt(y)}</title></circle>')
                out.append(f'<text x="{fx(x) + 5:.1f}" y="{fy(y) + dy:.1f}" font-size="10" '
                           f'fill="{color}">{fmt(round(y, 2))}</text>')
        width = 22 + 6.6 * len(name) + 14  # swatch, text (estimated), gap
        if lx > x0 and lx + width - 14 > x0 + pw:
            lx, ly = x0, ly + 15
        out.append(f'<line x1="{lx:.1f}" y1="{ly - 4}" x2="{lx + 18:.1f}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="3"{dash}/>')
        out.append(f'<text x="{lx + 22:.1f}" y="{ly}">{escape(name)}</text>')
        lx += width
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: growth_plot.py DATA.tsv OUT.svg")
    charts = read(sys.argv[1])
    if not charts:
        sys.exit("growth_plot.py: no panels in the data")
    rows = math.ceil(len(charts) / COLS)
    cols = min(COLS, len(charts))
    body = []
    for i, (_, meta, series) in enumerate(charts):
        body += chart((i % COLS) * W, (i // COLS) * H, meta, series)
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * W}" height="{rows * H}" '
           f'viewBox="0 0 {cols * W} {rows * H}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>', *body, "</svg>"]
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
