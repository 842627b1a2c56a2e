"""Line charts drawn on the server as inline SVG: no script and no CDN needed to see them."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 320, 90, 4


def line_chart(title: str, points: Sequence[tuple[float, float]], unit: str = "") -> str:
    """A titled SVG polyline of ``(time, value)`` points, scaled to its own range."""
    label = escape(title)
    if not points:
        return f'<figure class="chart"><figcaption>{label}: no data yet</figcaption></figure>'
    times = [t for t, _ in points]
    values = [v for _, v in points]
    t0, t1 = min(times), max(times)
    top = max(max(values), 1e-9)
    span = (t1 - t0) or 1.0

    def x(t: float) -> float:
        return PAD + (WIDTH - 2 * PAD) * (t - t0) / span

    def y(v: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top

    path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
    last = f"{values[-1]:.3g}{escape(unit)}"
    return (
        f'<figure class="chart" data-chart="{label}"><figcaption>{label}: <b>{last}</b>'
        f" (max {max(values):.3g}{escape(unit)})</figcaption>"
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{label}"><rect width="{WIDTH}" height="{HEIGHT}" fill="#f6f8fa"/>'
        f'<polyline fill="none" stroke="#0969da" stroke-width="2" points="{path}"/></svg>'
        "</figure>"
    )
