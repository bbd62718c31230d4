"""Draw a key figure's history as a small inline SVG, on the server.

No script and no style attribute: the line's colour comes from the page's
stylesheet (class ``spark``), so the chart passes the CSP and costs a few
hundred bytes. Steps, not slopes: a figure holds its value until the next
report, and a slope would invent values between reports. The chart is
``aria-hidden``: the table next to it carries the same numbers for screen
readers and text browsers.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

WIDTH = 160
HEIGHT = 40
PAD = 3


def sparkline(values: Sequence[int]) -> Markup:
    """Return an ``<svg>`` step chart of ``values`` in report order (empty if none)."""
    if not values:
        return Markup("")
    low, high = min(values), max(values)
    span = high - low or 1
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)

    def y(value: int) -> float:
        return round(HEIGHT - PAD - (value - low) * (HEIGHT - 2 * PAD) / span, 1)

    points: list[str] = []
    for index, value in enumerate(values):
        x = round(PAD + index * step, 1)
        if points:
            points.append(f"{x},{points[-1].split(',')[1]}")
        points.append(f"{x},{y(value)}")
    if len(values) == 1:
        points.append(f"{WIDTH - PAD},{y(values[0])}")
    last_x, last_y = points[-1].split(",")
    return Markup(
        f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' aria-hidden="true" focusable="false"><polyline points="{" ".join(points)}"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2.5"/></svg>'
    )
