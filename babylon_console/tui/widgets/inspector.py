"""Trajectory inspector: window -> agent -> trajectory, step by step.

Each step shows the environment state, every LLM call (system prompt, user prompt, response,
reasoning), the action and its result, and the reward; our judge's score and written explanation
(`console_judgments`) stay on top, with the game's own judgment (its `aiJudgeReward` and
`aiJudgeReasoning`, never overwritten) beside it when the game judged the trajectory. `n`/`p`
move by step, `[`/`]` by agent, `/` searches the trajectory (then
`n`/`p` jump between matching steps). `c` opens the judge calibration of the window (the judge's
ranking beside the market's, `widgets/calibration.py`), loaded in a worker; `esc` closes it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.text import Text
from textual import on
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from .. import bindings as keys
from ..data import Event
from ..data import events as ev
from .calibration import CalibrationView
from .pane import Pane, theme_color

if TYPE_CHECKING:
    from ..data import WindowTrajectories

MAX_FIELD_CHARS = 4000


def _short(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    if value is None:
        return "–"
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit:,} more characters)"


def step_text(step: Any) -> str:
    """Everything searchable in one step, lower-cased."""
    parts: list[str] = []
    if step.environment_state is not None:
        parts.append(json.dumps(step.environment_state.model_dump(by_alias=True), default=str))
    for call in step.llm_calls:
        parts.extend(x or "" for x in (call.system_prompt, call.user_prompt, call.response, call.reasoning,
                                       call.action_type, call.purpose, call.model))
    if step.action is not None:
        parts.append(step.action.action_type or "")
        parts.append(json.dumps(step.action.parameters, default=str))
        parts.append(_short(step.action.result))
        parts.append(step.action.reasoning or "")
        parts.append(_short(step.action.error))
    return "\n".join(parts).casefold()


class InspectorPane(Pane):
    scope = "inspector"
    title = "Inspector"
    poll_seconds = 10.0
    min_reload_s = 5.0
    BINDINGS: ClassVar = keys.bindings("inspector")

    selected_window: reactive[str | None] = reactive(None, init=False)

    def __init__(self, source: Any = None, **kwargs: Any) -> None:
        super().__init__(source, **kwargs)
        self.data: WindowTrajectories | None = None
        self.window_id: str | None = None
        self.agent_index = 0
        self.step_index = 0
        self.query_text = ""
        self.matches: list[int] = []
        self._search_cache: dict[str, list[str]] = {}
        self.holdout_share = 0.0  # the database's hold-out, as read with the trajectories

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("Select a window in the Windows pane (1), then press i.", id="inspector-title",
                     classes="pane-title")
        yield Input(placeholder="search prompts, responses, reasoning, actions (enter: go, esc: clear)",
                    id="inspector-search")
        with Horizontal(id="inspector-body"):
            yield OptionList(id="inspector-agents")
            with VerticalScroll(id="inspector-scroll"):
                yield Static(id="inspector-step")
        yield CalibrationView(id="inspector-calibration")

    def on_mount(self) -> None:
        self.query_one("#inspector-agents", OptionList).border_title = "agents"

    def on_show_pane(self) -> None:
        self.query_one("#inspector-agents", OptionList).focus()

    # -- data ----------------------------------------------------------------------------------

    async def load(self) -> WindowTrajectories | None:
        window = self.selected_window
        if window is None or self.source is None:
            return None
        self.holdout_share = await self.source.read_holdout()  # why a trajectory has no judgment
        return await self.source.window_trajectories(window)

    def is_stale_after(self, events: list[Event]) -> bool:
        """Stale when the window it shows was judged (scores and explanations arrived)."""
        return any(isinstance(e.data, ev.WindowJudged) and e.data.window_id == self.selected_window for e in events)

    def show(self, payload: WindowTrajectories | None) -> None:
        if payload is None:
            return
        same_window = payload.window_id == self.window_id
        previous = self.current()
        self.data, self.window_id = payload, payload.window_id
        self._search_cache.clear()
        if not same_window:
            self.agent_index, self.step_index = 0, 0
        elif previous is not None:
            ids = [t.trajectory_id for t in payload.trajectories]
            self.agent_index = ids.index(previous.trajectory_id) if previous.trajectory_id in ids else 0
        agents = self.query_one("#inspector-agents", OptionList)
        agents.clear_options()
        for t in payload.trajectories:
            strategy = str(t.metadata.get("strategy") or "")
            policy = str(t.metadata.get("policy") or "")
            if policy and policy != strategy:  # driven by a checkpoint (the demo's live model)
                strategy = "model " + policy.rsplit(":", 1)[-1]
            label = Text.assemble((t.agent_id.rsplit("-", 1)[-1], "bold"), f" {strategy}"[:14].ljust(14))
            ours = payload.judgments.get(t.trajectory_id)
            score = f"{ours.score:.2f}" if ours is not None else " –  "
            pnl = f"{t.final_pnl:+.1f}" if t.final_pnl is not None else "–"
            label.append(f" judge {score} P&L {pnl}", style="dim")
            agents.add_option(Option(label, id=t.trajectory_id))
        if payload.trajectories:
            agents.highlighted = min(self.agent_index, len(payload.trajectories) - 1)
        self._recompute_matches()
        self._draw()
        if self.calibration_open:  # follows the window, and its new judgments
            self._load_calibration(payload.window_id, fresh=not same_window)

    def current(self) -> Any:
        if self.data is None or not self.data.trajectories:
            return None
        return self.data.trajectories[min(self.agent_index, len(self.data.trajectories) - 1)]

    # -- rendering -----------------------------------------------------------------------------

    def _draw(self) -> None:
        title = self.query_one("#inspector-title", Static)
        body = self.query_one("#inspector-step", Static)
        data, t = self.data, self.current()
        if data is None:
            return
        header = Text.assemble(("Trajectories of ", "bold"), (data.window_id, "bold"),
                               f"  {len(data.trajectories)} usable, {len(data.rejections)} rejected")
        if t is None:
            title.update(header)
            body.update("No usable trajectories in this window."
                        + (f" First rejection: {data.rejections[0].reason}" if data.rejections else ""))
            return
        self.step_index = max(0, min(self.step_index, len(t.steps) - 1))
        header.append(f" · agent {self.agent_index + 1}/{len(data.trajectories)}"
                      f" · step {self.step_index + 1}/{len(t.steps)}")
        if self.query_text:
            header.append(f" · “{self.query_text}”: {len(self.matches)} matching step(s)",
                          style=theme_color(self.app, "accent"))
        title.update(header)
        body.update(self._step_view(t))
        self.query_one("#inspector-scroll", VerticalScroll).scroll_home(animate=False)

    def unjudged_reason(self) -> str:
        """Why the current trajectory has no judge score: its window is held out, the engine judged
        other trajectories of the window (a group is a sample), or the window was not judged yet."""
        from ..data import held_out  # the core's hold-out rule, through the data layer

        data = self.data
        if data is None:
            return "not judged yet"
        if held_out(data.window_id, self.holdout_share):
            return (f"the window is held out for evaluation (hold-out {self.holdout_share:.0%}): "
                    "it is never judged nor trained")
        judged = sum(1 for other in data.trajectories if other.trajectory_id in data.judgments)
        if judged:
            return (f"not in the judged group (the engine judged {judged} of the window's {len(data.trajectories)} "
                    "trajectories: a group is a sample of at most its size)")
        return "not judged yet (the engine has not trained on this window)"

    def _section(self, name: str) -> Rule:
        return Rule(Text(name, style="bold"), align="left", style=theme_color(self.app, "panel", "grey37"))

    def _field(self, label: str, value: Any) -> Text:
        text = Text.assemble((f"{label}: ", "bold"), _short(value))
        if self.query_text:
            text.highlight_words([self.query_text], style="reverse", case_sensitive=False)
        return text

    def _step_view(self, t: Any) -> RenderableType:
        parts: list[RenderableType] = []
        score_color = theme_color(self.app, "primary")
        ours = self.data.judgments.get(t.trajectory_id) if self.data is not None else None
        judge = Text.assemble(("Judge ", "bold"))
        if ours is not None:
            judge.append(f"{ours.score:.3f}", style=f"bold {score_color}")
            judge.append(f" ({ours.judge})", style="dim")
            judge.append(f"  {ours.explanation}")
        else:
            judge.append(f"none: {self.unjudged_reason()}", style="dim")
        parts.append(Text.assemble((t.trajectory_id, "bold"), f"  agent {t.agent_id} · total reward "
                                   f"{t.total_reward:.3f} · final P&L "
                                   f"{'–' if t.final_pnl is None else f'{t.final_pnl:+.2f}'} · "
                                   f"{t.episode_length} steps · {t.final_status or ''}"))
        parts.append(judge)
        if t.ai_judge_reward is not None or t.ai_judge_reasoning:  # the game's own judge, labelled as such
            game = Text.assemble(("Game's judge ", "bold"))
            game.append("–" if t.ai_judge_reward is None else f"{t.ai_judge_reward:.3f}", style="bold")
            game.append(f"  {t.ai_judge_reasoning or ''}")
            parts.append(game)
        if not t.steps:
            parts.append(Text("This trajectory has no steps.", style="dim"))
            return Group(*parts)
        step = t.steps[self.step_index]
        # numbered as in the header (1..n), whatever the recorder's own numbering
        parts.append(self._section(f" Step {self.step_index + 1}/{len(t.steps)} · reward {step.reward:+.4f} "))
        env = step.environment_state
        if env is not None:
            values = env.model_dump(by_alias=True, exclude_none=True)
            parts.append(Text.assemble(("Environment: ", "bold"),
                                       ", ".join(f"{k} {v}" for k, v in values.items()) or "–"))
        else:
            parts.append(Text("Environment: not recorded", style="dim"))
        if not step.llm_calls:
            parts.append(Text("No LLM calls recorded in this step.", style="dim"))
        for i, call in enumerate(step.llm_calls, start=1):
            parts.append(self._section(
                f" LLM call {i}/{len(step.llm_calls)} · {call.model or '?'} · {call.purpose or '?'}"
                + (f" · {call.action_type}" if call.action_type else "")
                + (f" · {call.latency_ms:.0f} ms" if call.latency_ms is not None else "") + " "))
            parts.append(self._field("System prompt", call.system_prompt))
            parts.append(self._field("User prompt", call.user_prompt))
            parts.append(self._field("Response", call.response))
            parts.append(self._field("Reasoning", call.reasoning))
        parts.append(self._section(" Action "))
        action = step.action
        if action is None:
            parts.append(Text("No action recorded.", style="dim"))
        else:
            ok = {True: "succeeded", False: "failed", None: "result unknown"}[action.success]
            head = Text.assemble((action.action_type or "?", "bold"), f" {ok}  ")
            head.append(json.dumps(action.parameters, default=str, ensure_ascii=False))
            if self.query_text:
                head.highlight_words([self.query_text], style="reverse", case_sensitive=False)
            parts.append(head)
            if action.reasoning:
                parts.append(self._field("Reasoning", action.reasoning))
            if action.result is not None:
                parts.append(self._field("Result", action.result))
            if action.error:
                parts.append(self._field("Error", action.error))
        parts.append(Text.assemble(("Reward: ", "bold"), f"{step.reward:+.4f}"))
        return Group(*parts)

    # -- search --------------------------------------------------------------------------------

    def _recompute_matches(self) -> None:
        t = self.current()
        if not self.query_text or t is None:
            self.matches = []
            return
        texts = self._search_cache.get(t.trajectory_id)
        if texts is None:
            texts = self._search_cache[t.trajectory_id] = [step_text(s) for s in t.steps]
        needle = self.query_text.casefold()
        self.matches = [i for i, text in enumerate(texts) if needle in text]

    @on(Input.Submitted, "#inspector-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        self.query_text = event.value.strip()
        self._recompute_matches()
        if self.matches:
            after = [i for i in self.matches if i >= self.step_index]
            self.step_index = after[0] if after else self.matches[0]
        elif self.query_text:
            self.notify(f"“{self.query_text}” is not in this trajectory", severity="warning", timeout=3)
        self.query_one("#inspector-agents", OptionList).focus()
        self._draw()

    @on(OptionList.OptionHighlighted, "#inspector-agents")
    def _agent_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_index != self.agent_index:
            self.agent_index = event.option_index
            self.step_index = 0
            self._recompute_matches()
            self._draw()

    def back(self) -> bool:
        if self.calibration_open:
            self.query_one(CalibrationView).display = False
            self.query_one("#inspector-body").display = True
            self.query_one("#inspector-agents", OptionList).focus()
            return True
        field = self.query_one("#inspector-search", Input)
        if field.display or self.query_text:
            field.value = ""
            field.display = False
            self.query_text = ""
            self.matches = []
            self.query_one("#inspector-agents", OptionList).focus()
            self._draw()
            return True
        return False

    # -- actions -------------------------------------------------------------------------------

    def action_step(self, delta: int) -> None:
        t = self.current()
        if t is None or not t.steps:
            return
        if self.query_text and self.matches:
            if delta > 0:
                ahead = [i for i in self.matches if i > self.step_index]
                self.step_index = ahead[0] if ahead else self.matches[0]
            else:
                behind = [i for i in self.matches if i < self.step_index]
                self.step_index = behind[-1] if behind else self.matches[-1]
        else:
            self.step_index = max(0, min(len(t.steps) - 1, self.step_index + delta))
        self._draw()

    def action_agent(self, delta: int) -> None:
        if self.data is None or not self.data.trajectories:
            return
        index = max(0, min(len(self.data.trajectories) - 1, self.agent_index + delta))
        self.query_one("#inspector-agents", OptionList).highlighted = index

    # -- judge calibration ---------------------------------------------------------------------

    @property
    def calibration_open(self) -> bool:
        return self.is_mounted and self.query_one(CalibrationView).display

    def action_calibration(self) -> None:
        window = self.selected_window
        if window is None or self.source is None:
            self.notify("Select a window in the Windows pane (1) first.", title="Calibration",
                        severity="warning", timeout=4)
            return
        view = self.query_one(CalibrationView)
        view.display = True
        self.query_one("#inspector-body").display = False
        view.focus()
        self._load_calibration(window, fresh=True)

    def _load_calibration(self, window: str, *, fresh: bool) -> None:
        """Read the window's calibration off the key press (the pane's worker; a newer read replaces
        an older one). `fresh`: say it is loading rather than show another window's."""
        view = self.query_one(CalibrationView)
        if fresh:
            view.loading(window)

        async def load() -> None:
            assert self.source is not None
            calibration = await self.source.window_calibration(window)
            if self.is_mounted and self.calibration_open and window == self.selected_window:
                view.show(calibration)

        self.run_worker(load, name=f"calibration {window}", group="inspector-calibration", exclusive=True)

    def action_search(self) -> None:
        field = self.query_one("#inspector-search", Input)
        field.display = True
        field.value = self.query_text
        field.focus()
