#!/usr/bin/env python3
"""Plots from the benchmarks' own output, as SVG for docs/plots/.

    CAPNET_BENCH=conns cargo bench -p capnet-tests --bench system
    scripts/plots.py [results dir] [output dir]

Reads target/bench-results/conns.json (what the `conns` bench wrote) and
writes docs/plots/conns-cost.svg (the cost of a packet against the number
of idle connections held) and docs/plots/conns-latency-cdf.svg (round-trip
CDFs at each level: capnet to capnet, Linux to capnet over TAP, Linux to
Linux over veth). Plain SVG from the standard library:
nothing to install.
"""

import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
W, H = 700, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 230, 40, 50


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Axis:
    """A linear or log10 axis over [lo, hi] onto [a, b] pixels."""

    def __init__(self, lo, hi, a, b, log):
        self.log = log
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi == lo:
            hi = lo + 1
        self.lo, self.hi, self.a, self.b = lo, hi, a, b

    def __call__(self, v):
        if self.log:
            v = math.log10(v)
        return self.a + (v - self.lo) / (self.hi - self.lo) * (self.b - self.a)

    def ticks(self):
        if self.log:
            return [10**e for e in range(math.floor(self.lo), math.ceil(self.hi) + 1)]
        step = 10 ** math.floor(math.log10((self.hi - self.lo) / 4 or 1))
        for m in (1, 2, 5, 10):
            if (self.hi - self.lo) / (step * m) <= 6:
                step *= m
                break
        first = math.ceil(self.lo / step) * step
        n = int((self.hi - first) / step) + 1
        return [first + i * step for i in range(n)]


def label(v):
    if v >= 1000 and v == int(v):
        return f"{int(v):,}"
    return f"{v:g}"


def chart(path, title, xlabel, ylabel, series, xlog=False, ylog=False, ymin=None):
    """`series`: [(name, [(x, y), ...], dashed)]."""
    xs = [x for _, pts, _ in series for x, _ in pts]
    ys = [y for _, pts, _ in series for _, y in pts]
    lo = ymin if ymin is not None else (min(ys) if ylog else 0)
    x = Axis(min(xs), max(xs), LEFT, W - RIGHT, xlog)
    y = Axis(lo, max(ys) * (1 if ylog else 1.05), H - BOTTOM, TOP, ylog)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{esc(title)}</text>',
    ]
    for t in x.ticks():
        if x.lo <= (math.log10(t) if xlog else t) <= x.hi + 1e-9:
            px = x(t)
            out.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{H - BOTTOM}" stroke="#ddd"/>')
            out.append(f'<text x="{px:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle">{label(t)}</text>')
    for t in y.ticks():
        if y.lo <= (math.log10(t) if ylog else t) <= y.hi + 1e-9:
            py = y(t)
            out.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{W - RIGHT}" y2="{py:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{label(t)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="none" stroke="black"/>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 12}" text-anchor="middle">{esc(xlabel)}</text>')
    out.append(f'<text transform="translate(16,{(TOP + H - BOTTOM) / 2}) rotate(-90)" text-anchor="middle">{esc(ylabel)}</text>')
    for i, (name, pts, dashed) in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        line = " ".join(f"{x(px):.1f},{y(max(py, lo) if ylog else py):.1f}" for px, py in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        if len(pts) <= 12:
            for px, py in pts:
                out.append(f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="3" fill="{colour}"/>')
        ly = TOP + 10 + 18 * i
        out.append(f'<line x1="{W - RIGHT + 12}" y1="{ly}" x2="{W - RIGHT + 36}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>')
        out.append(f'<text x="{W - RIGHT + 42}" y="{ly + 4}">{esc(name)}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {os.path.relpath(path, ROOT)}")


def conns(results, out_dir):
    with open(os.path.join(results, "conns.json")) as f:
        r = json.load(f)
    ours, theirs, tap = r["capnet"], r.get("linux") or [], r.get("tap") or []
    pts = lambda levels, key: [(l["conns"], l[key]) for l in levels]
    series = [
        ("capnet to capnet, p50", pts(ours, "p50_us"), False),
        ("both netsrvs' CPU", pts(ours, "netsrv_cpu_us_per_round_trip"), False),
    ]
    if tap:
        series.append(("Linux to capnet (TAP), p50", pts(tap, "p50_us"), False))
    if theirs:
        series.append(("Linux to Linux (veth), p50", pts(theirs, "p50_us"), True))
    chart(
        os.path.join(out_dir, "conns-cost.svg"),
        "One-byte ping-pong beside idle connections",
        "idle TCP connections held",
        "µs per round trip",
        series,
        xlog=True,
    )
    series = []
    sides = (
        ("capnet-capnet", ours, False),
        ("Linux-capnet TAP", tap, False),
        ("Linux-Linux", theirs, True),
    )
    for name, levels, dashed in sides:
        for l in levels:
            cdf = l["round_trip_percentiles_us"]
            series.append((f"{name}, {l['conns']:,}", [(v, i / 100) for i, v in enumerate(cdf)], dashed))
    chart(
        os.path.join(out_dir, "conns-latency-cdf.svg"),
        "Round-trip CDF by idle connections held",
        "round trip, µs (log)",
        "fraction of round trips",
        series,
        xlog=True,
        ymin=0,
    )


def main():
    results = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "bench-results")
    out_dir = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "docs", "plots")
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(os.path.join(results, "conns.json")):
        sys.exit(f"no {results}/conns.json: run CAPNET_BENCH=conns cargo bench -p capnet-tests --bench system first")
    conns(results, out_dir)


if __name__ == "__main__":
    main()
