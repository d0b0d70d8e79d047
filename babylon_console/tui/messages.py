"""Messages of the console: what panes ask for (intents) and what background work reports.

Panes never reach into the app or the screen: they post one of these and the main screen (or the
app) handles it. Background threads (the engine's loop, the simulated market, chart rendering)
reach the UI the same way: `post_message` is safe from any thread.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

# -- intents ---------------------------------------------------------------------------------------


class WindowChosen(Message):
    """The operator moved to another window (every pane that shows a window follows)."""

    def __init__(self, window_id: str) -> None:
        super().__init__()
        self.window_id = window_id


class WindowsSeen(Message):
    """The windows in the lookback, oldest first (for stepping between windows in other panes)."""

    def __init__(self, window_ids: tuple[str, ...]) -> None:
        super().__init__()
        self.window_ids = window_ids


class ShowPane(Message):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class ReloadRequested(Message):
    """A pane wants to be loaded again now (if visible)."""

    def __init__(self, pane_id: str) -> None:
        super().__init__()
        self.pane_id = pane_id


class PromoteRequested(Message):
    def __init__(self, view: Any, row: Any) -> None:
        super().__init__()
        self.view = view  # data.CheckpointsView
        self.row = row  # data.CheckpointRow


class EvaluateRequested(Message):
    def __init__(self, row: Any, live_storage_path: str | None = None) -> None:
        super().__init__()
        self.row = row  # data.CheckpointRow
        self.live_storage_path = live_storage_path  # the live model's served name, as shown


class RollbackRequested(Message):
    def __init__(self, view: Any) -> None:
        super().__init__()
        self.view = view  # data.CheckpointsView | None


class AcknowledgeRequested(Message):
    def __init__(self, alarm: Any) -> None:
        super().__init__()
        self.alarm = alarm  # core.training.health_store.AlarmRecord | None: the one the key acts on


class LiveModelSeen(Message):
    """The Checkpoints pane read the registry: this model is live (None: none is)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model


class BadgeChanged(Message):
    def __init__(self, pane: str, text: str) -> None:
        super().__init__()
        self.pane = pane
        self.text = text


class EventsArrived(Message):
    """A batch of engine events, in id order; `replay` when it is history read at start."""

    def __init__(self, events: list[Any], replay: bool) -> None:
        super().__init__()
        self.events = events
        self.replay = replay


class StatusChanged(Message):
    """A part of the status bar has new text (from any thread)."""

    def __init__(self, part: str, text: Any) -> None:
        super().__init__()
        self.part = part
        self.text = text


class EngineChanged(Message):
    """The embedded engine changed state (posted from the engine's thread)."""


class ProblemReported(Message):
    """Something is wrong that is not failed work (a checkpoint the market cannot load, a broken
    preferences file): a line in the Errors pane and a toast."""

    def __init__(self, source: str, text: str, level: str = "warning") -> None:
        super().__init__()
        self.source = source
        self.text = text
        self.level = level


class WorkFailed(Message):
    """Background work failed. `action`: it was an operator's action (shown as a dialog)."""

    def __init__(self, what: str, error: BaseException, action: bool = False) -> None:
        super().__init__()
        self.what = what
        self.error = error
        self.action = action


class DataChanged(Message):
    """Data behind these panes changed outside the event feed (the market wrote a window, an action
    changed the registry): they reload when visible."""

    def __init__(self, *panes: str) -> None:
        super().__init__()
        self.panes = panes


class ScreenReady(Message):
    """The main screen is composed and mounted: the app may paint, then connect."""
