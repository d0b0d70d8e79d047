"""Line charts by training step, drawn with plotext into a Static.

plotext is imported on first use, and `render_chart` is meant to run in a worker thread (one
lock: plotext keeps a global figure). Points are thinned to about two per column, so a chart costs
a few milliseconds whatever the length of its history. The x axis is training steps: its ticks are
whole numbers at a round stride (plotext would label evenly spaced fractions: 1.0 50.8 100.7).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

_PLOT_LOCK = threading.Lock()

Series = tuple[str, Sequence[float], Sequence[float], tuple[int, int, int]]  # label, steps, values, rgb


def _thin(xs: Sequence[float], ys: Sequence[float], width: int) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None and math.isfinite(y)]
    limit = max(8, width * 2)
    if len(pairs) > limit:
        stride = len(pairs) / limit
        picked = [pairs[int(i * stride)] for i in range(limit - 1)] + [pairs[-1]]
        pairs = picked
    return [float(p[0]) for p in pairs], [float(p[1]) for p in pairs]


_STRIDES = (1, 2, 5)


def integer_ticks(lo: float, hi: float, width: int) -> list[int]:
    """Whole-number ticks in [lo, hi] at a stride of 1, 2 or 5 x 10^k, as many as fit `width` columns
    (a label and some room each)."""
    first, last = math.ceil(lo), math.floor(hi)
    if last <= first:
        return [first] if last == first else []
    room = len(str(last)) + 3
    most = max(2, width // room)  # ticks that fit
    magnitude = 1
    while True:
        for base in _STRIDES:
            stride = base * magnitude
            start = -(-first // stride) * stride  # the first multiple of stride >= first
            if (last - start) // stride + 1 <= most:
                return list(range(start, last + 1, stride))
        magnitude *= 10


def render_chart(series: Sequence[Series], width: int, height: int) -> Text:
    """The chart as styled text (`width` x `height` cells); plain text when there is nothing to plot."""
    width, height = max(width, 20), max(height, 5)
    thinned = [(label, *_thin(xs, ys, width), rgb) for label, xs, ys, rgb in series]
    if not any(xs for _, xs, _, _ in thinned):
        return Text("waiting for the first training step…", style="dim")
    import plotext as plt

    every_x = [x for _, xs, _, _ in thinned for x in xs]
    ticks = integer_ticks(min(every_x), max(every_x), width)
    labels = [str(t) for t in ticks]
    with _PLOT_LOCK:
        figure = getattr(plt, "figure", None)
        if figure is not None and hasattr(figure, "signal"):  # plotext >= 6
            figure.clear()
            figure.plot_size(width, height)
            figure.theme("colorless")
            figure.canvas("default")
            figure.legend(False)
            figure.ruler("x").ticks(ticks, labels)
            for _label, xs, ys, rgb in thinned:
                if not xs:
                    continue
                signal = figure.signal(xs, ys, marker=plt.marker("braille", pixel=rgb))
                if len(xs) > 1:
                    signal.lines()
                figure.draw(signal)
            out = figure.build().string()
        else:  # plotext 5.x
            plt.clf()  # type: ignore[attr-defined]
            plt.plotsize(width, height)  # type: ignore[attr-defined]
            plt.theme("clear")  # type: ignore[attr-defined]
            plt.xticks(ticks, labels)  # type: ignore[attr-defined]
            for _label, xs, ys, rgb in thinned:
                if xs:
                    plt.plot(xs, ys, marker="braille", color=rgb)  # type: ignore[attr-defined]
            out = plt.build()  # type: ignore[attr-defined]
    return Text.from_ansi(out.rstrip("\n"), no_wrap=True)


class MetricChart(Static):
    """A titled chart; its owner sets the text (rendered elsewhere) and the legend."""

    def __init__(self, title: str, series: Sequence[tuple[str, str]], **kwargs: object) -> None:
        """`series`: (label, theme color name) per line."""
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.chart_title = title
        self.series = list(series)
        self.border_title = title

    def plot_size(self) -> tuple[int, int]:
        size = self.content_size
        return max(size.width, 20), max(size.height, 5)
