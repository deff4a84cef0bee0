"""One small inline SVG chart of a cell family across commits (no scripts, no external resources).

x: the family's commits in commit order; y: median time (log scale when the values span more
than 10x); one line per implementation, broken at environment boundaries (dashed grey verticals
labelled ``env``); whiskers: the median's interval; red crosses: points whose status is not ok;
step markers: a vertical line at the first bad commit (red: regression, green: improvement)
labelled with the commit range. Each point links to its run's report when there is one and
carries a ``<title>`` tooltip.
"""

from __future__ import annotations

import math
from html import escape

from wkvbench import schema

W, H = 460, 220
LEFT, RIGHT, TOP, BOTTOM = 58, 110, 14, 34
IMPL = schema.KEY.index("impl")
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")


def _fmt(ms: float) -> str:
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 1:
        return f"{ms:.3g}"
    return f"{ms:.2g}"


def chart(commits: list[str], series: dict[str, list], steps: list, href) -> str:
    """SVG text: ``series`` maps an implementation to its points, ``steps`` are its Step objects.

    ``href(point)`` gives the link of a point (or None).
    """
    xi = {c: i for i, c in enumerate(commits)}
    vals = [v for pts in series.values() for p in pts if p.ok for v in (p.median_ms, p.ci_lo, p.ci_hi) if v]
    lo, hi = (min(vals), max(vals)) if vals else (1.0, 1.0)
    log = hi / lo > 10
    if log:
        lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
    else:
        pad = (hi - lo) * 0.1 or hi * 0.1 or 1.0
        lo, hi = max(0.0, lo - pad), hi + pad
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def x(c):
        n = len(commits)
        return LEFT + (pw * (xi[c] + 0.5) / n)

    def y(v):
        f = (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) if log else (v - lo) / (hi - lo)
        return TOP + ph * (1 - f)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" class="chart">']
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fff" stroke="#999"/>')
    ticks = [10**e for e in range(round(math.log10(lo)), round(math.log10(hi)) + 1)] if log else [lo, (lo + hi) / 2, hi]
    for t in ticks:
        out.append(f'<line x1="{LEFT - 4}" x2="{LEFT + pw}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>')
    out.append(
        f'<text x="12" y="{TOP + ph / 2:.0f}" font-size="10" transform="rotate(-90 12 {TOP + ph / 2:.0f})" '
        f'text-anchor="middle">median ms{" (log)" if log else ""}</text>'
    )
    every = max(1, math.ceil(len(commits) / 5))
    for i, c in enumerate(commits):
        if i % every == 0:
            out.append(f'<text x="{x(c):.1f}" y="{H - BOTTOM + 13}" font-size="9" text-anchor="middle">{c[:7]}</text>')
    out.append(f'<text x="{LEFT + pw / 2:.0f}" y="{H - 4}" font-size="10" text-anchor="middle">commit</text>')
    # environment boundaries: where consecutive points of a line change segment
    bounds = set()
    for pts in series.values():
        for a, b in zip(pts, pts[1:], strict=False):
            if b.segment != a.segment:
                bounds.add((x(a.commit) + x(b.commit)) / 2)
    for bx in sorted(bounds):
        out.append(
            f'<line class="env-boundary" x1="{bx:.1f}" x2="{bx:.1f}" y1="{TOP}" y2="{TOP + ph}" '
            'stroke="#666" stroke-dasharray="4 3"/>'
        )
        out.append(f'<text x="{bx + 2:.1f}" y="{TOP + 10}" font-size="9" fill="#666">env</text>')
    for j, s in enumerate(steps):
        pts = series.get(s.key[IMPL], [])
        if s.index >= len(pts):
            continue
        sx = x(pts[s.index].commit)
        color = "#d62728" if s.kind == "regression" else "#2ca02c"
        label = f"{s.kind} {s.change:+.1%} {s.commit_range}"
        out.append(
            f'<line class="step {s.kind}" x1="{sx:.1f}" x2="{sx:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="{color}" '
            f'stroke-width="2"><title>{escape(label)}</title></line>'
        )
        out.append(
            f'<text x="{sx + 3:.1f}" y="{TOP + ph - 4 - 10 * j}" font-size="9" fill="{color}">'
            f"{escape(s.last_good[:7])}..{escape(s.first_bad[:7])}</text>"
        )
    for n, (impl, pts) in enumerate(series.items()):
        color = COLORS[n % len(COLORS)]
        path, prev = [], None
        for p in pts:
            if not p.ok:
                prev = None
                continue
            cmd = "L" if prev is not None and prev.segment == p.segment else "M"
            path.append(f"{cmd}{x(p.commit):.1f},{y(p.median_ms):.1f}")
            prev = p
        if path:
            out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for p in pts:
            px = x(p.commit)
            tip = f"{impl} @ {p.commit[:10]}{' (dirty)' if p.dirty else ''}, {p.date[:10]}: "
            if p.ok:
                ci = f" [{_fmt(p.ci_lo)}, {_fmt(p.ci_hi)}]" if p.ci_lo and p.ci_hi else ""
                tip += f"{_fmt(p.median_ms)} ms{ci}, {p.runs} run(s)"
                mark = f'<circle cx="{px:.1f}" cy="{y(p.median_ms):.1f}" r="2.6" fill="{color}">'
                if p.ci_lo and p.ci_hi:
                    out.append(
                        f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{y(p.ci_lo):.1f}" y2="{y(p.ci_hi):.1f}" '
                        f'stroke="{color}" stroke-opacity="0.6"/>'
                    )
            else:
                tip += f"{p.status} {p.note}".strip()
                cy = TOP + ph - 6
                mark = (
                    f'<path class="not-ok" d="M{px - 3:.1f},{cy - 3} l6,6 M{px - 3:.1f},{cy + 3} l6,-6" '
                    'stroke="#d62728" stroke-width="1.5">'
                )
            elem = mark + f"<title>{escape(tip)}</title></{mark[1 : mark.index(' ')]}>"
            link = href(p)
            out.append(f'<a href="{escape(link)}">{elem}</a>' if link else elem)
        ly = TOP + 12 + 13 * n
        lx = W - RIGHT + 8
        out.append(f'<line x1="{lx}" x2="{lx + 14}" y1="{ly - 3}" y2="{ly - 3}" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{W - RIGHT + 25}" y="{ly}" font-size="10">{escape(impl[:16])}</text>')
    out.append("</svg>")
    return "\n".join(out)
