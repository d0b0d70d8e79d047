"""The Training pane's Health strip: the newest trained step's health figures in two or three lines.

Each figure is a segment (`no spread 25%`, `KL 0.0290`, ...) packed into lines as wide as the pane,
shorter labels below `NARROW_BELOW` columns. A missing figure shows `—`; why it is missing is in
the strip's tooltip and, where a line is left, in a short `— why:` line. A figure whose rule has an
open alarm is drawn in the theme's error color with a ⚠.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from ..data import StepHealth

NARROW_BELOW = 110  # pane width (cells) below which the labels are short
SEPARATOR = " · "

# an alarm rule -> the figures it watches (`core.training.alarms.AlarmRule` values)
RULE_FIGURES: dict[str, tuple[str, ...]] = {
    "zero_spread": ("zero_spread",),
    "kl_spike": ("kl",),
    "entropy_collapse": ("entropy",),
    "tokens_blowup": ("tokens",),
    "action_collapse": ("actions",),
    "judge_disagrees": ("rank",),
    "judge_diverges": ("trends",),
}


@dataclass(frozen=True, slots=True)
class Segment:
    key: str  # which figure (RULE_FIGURES' values)
    label: str
    short: str  # the label below NARROW_BELOW columns
    value: str  # `—` when missing
    missing: tuple[tuple[str, str], ...] = ()  # (figure's name, why it is missing)


def segments(health: StepHealth) -> list[Segment]:
    """The figures of one step, in the order they are shown."""
    out: list[Segment] = []
    missing: list[tuple[str, str]] = []

    def v(figure: Any, fmt: str, name: str) -> str:  # a core.stats.Figure
        if figure.value is None:
            missing.append((name, figure.missing or "not measured"))
            return "—"
        return fmt.format(figure.value)

    def add(key: str, label: str, short: str, value: str) -> None:
        out.append(Segment(key, label, short, value, tuple(missing)))
        missing.clear()

    h = health
    add("zero_spread", "no spread", "flat", v(h.zero_spread_share, "{:.0%}", "share of groups with no reward spread"))
    mean, std = v(h.reward_mean, "{:.3f}", "reward mean"), v(h.reward_std, "{:.3f}", "reward std")
    add("reward", "reward", "r", f"{mean} ± {std}")
    add("kl", "KL", "KL", v(h.kl, "{:.4f}", "KL"))
    add("entropy", "entropy", "H", v(h.entropy, "{:.2f}", "entropy"))
    add("tokens", "tokens/call", "tok", v(h.tokens_per_call, "{:.0f}", "trained tokens per call"))
    actions = v(h.action_entropy, "{:.2f} bits", "action mix entropy")
    total = sum(h.action_mix.values())
    if total > 0:
        top, count = max(h.action_mix.items(), key=lambda kv: (kv[1], kv[0]))
        actions += f", top {top} {count / total:.0%}"
    add("actions", "actions", "act", actions)
    add("rank", "judge~P&L ρ", "ρ", f"{v(h.rank_correlation, '{:+.2f}', 'rank correlation (judge vs P&L)')} "
        f"(rolling {v(h.rank_correlation_rolling, '{:+.2f}', 'its rolling mean')})")
    judge, pnl = v(h.judge_trend, "{:+.3f}", "judge score trend"), v(h.pnl_trend, "{:+.2f}", "realised P&L trend")
    held_out = v(h.holdout_trend, "{:+.3f}", "held-out trend")
    add("trends", "trend/step judge", "trend judge", f"{judge} · P&L {pnl} · held-out {held_out}")
    return out


def missing_reasons(health: StepHealth) -> list[tuple[str, str]]:
    return [pair for segment in segments(health) for pair in segment.missing]


def strip_text(health: StepHealth | None, width: int, *, open_rules: Iterable[str] = (), max_lines: int = 3,
               alarm_style: str = "bold red", label_style: str = "dim") -> Text:
    """The strip's lines for `health` at `width` cells: the figures packed into lines, then (room left)
    why the missing ones are missing. `open_rules`: rules with an open alarm (their figures stand out)."""
    if health is None:
        return Text("Health: no figures yet (they come with the first trained step)", style=label_style)
    marked = {key for rule in open_rules for key in RULE_FIGURES.get(rule, ())}
    narrow = width < NARROW_BELOW
    lines: list[Text] = [Text.assemble(("Health ", "bold"), f"step {health.step}")]
    for segment in segments(health):
        piece = Text()
        if segment.key in marked:
            piece.append(f"⚠ {segment.short if narrow else segment.label} {segment.value}", style=alarm_style)
        else:
            piece.append(f"{segment.short if narrow else segment.label} ", style=label_style)
            piece.append(segment.value)
        if lines[-1].cell_len + len(SEPARATOR) + piece.cell_len <= width:
            lines[-1].append(SEPARATOR, style=label_style)
            lines[-1].append_text(piece)
        elif len(lines) < max_lines:
            lines.append(piece)
        else:
            lines[-1].append(" …", style=label_style)
            break
    reasons = missing_reasons(health)
    if reasons and len(lines) < max_lines:
        why = Text("— why: ", style=label_style)
        why.append("; ".join(f"{name}: {reason}" for name, reason in reasons), style=label_style)
        why.truncate(width, overflow="ellipsis")
        lines.append(why)
    return Text("\n").join(lines)


def tooltip_text(health: StepHealth | None) -> str | None:
    """Why each missing figure is missing, one a line (None: nothing is missing)."""
    if health is None:
        return "No health figures are stored for this model yet: the engine records them with every trained step."
    reasons = missing_reasons(health)
    if not reasons:
        return None
    return "Missing figures:\n" + "\n".join(f"{name}: — ({reason})" for name, reason in reasons)


class HealthStrip(Static):
    """Draws `strip_text` for the newest step at the widget's width; redrawn on resize."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.health: StepHealth | None = None
        self.open_rules: frozenset[str] = frozenset()
        self.max_lines = 3  # the figures take two lines from 160 columns, three at 80
        self.styles_for: tuple[str, str] = ("bold red", "dim")

    def show(self, health: StepHealth | None, open_rules: Iterable[str], *, alarm_style: str) -> None:
        self.health, self.open_rules = health, frozenset(open_rules)
        self.styles_for = (alarm_style, "dim")
        self._draw()

    def on_resize(self) -> None:
        self._draw()

    def _draw(self) -> None:
        width = self.size.width or 160
        alarm_style, label_style = self.styles_for
        self.update(strip_text(self.health, width, open_rules=self.open_rules, max_lines=self.max_lines,
                               alarm_style=alarm_style, label_style=label_style))
        self.tooltip = tooltip_text(self.health)
