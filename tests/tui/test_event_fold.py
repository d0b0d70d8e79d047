"""The console folds typed events; rows written by an older engine (or a newer one) still fold."""

from __future__ import annotations

from babylon_console.core.events import Event, EventKind
from babylon_console.tui.widgets.training import TrainingState


def _fold(*events: Event) -> TrainingState:
    state = TrainingState()
    state.ingest(events, {})
    return state


def test_old_shaped_rows_fold_like_new_ones() -> None:
    state = _fold(
        Event(kind=EventKind.RUN_STARTED, payload={"message": "engine started", "config": {"iterations": 5}}),
        Event(kind=EventKind.ITERATION_STARTED, payload={"iteration": "2", "windows": ["w1"]}),  # a string number
        Event(kind=EventKind.WINDOW_JUDGED, payload={"window_id": "w1", "mean": 0.5}),  # no std, no n
        Event(kind=EventKind.STEP_TRAINED, payload={"step": 3, "windows": ["w1"], "extra": "ignored",
                                                    "metrics": {"loss/train": 0.25, "train/reward": "bad"}}),
        Event(kind=EventKind.CHECKPOINT_REGISTERED, payload={"model_id": "m-step0003"}),
    )
    assert state.iterations_target == 5 and state.iteration == 2
    assert state.step == 3 and list(state.series["loss/train"]) == [(3, 0.25)]
    assert list(state.series["train/reward"]) == []  # the value that does not fit is dropped, not raised
    assert state.judging["w1"].status == "trained" and state.windows_trained == 1
    assert state.last_checkpoint == "m-step0003"


def test_an_unknown_kind_from_a_newer_engine_is_shown_not_folded() -> None:
    event = Event(kind="model_evaluated", payload={"message": "eval done", "score": 1})  # type: ignore[arg-type]
    state = _fold(event)
    assert event.kind is EventKind.UNKNOWN and state.step is None
    assert "eval done" in state.tail[-1][1].plain


def test_an_error_row_without_a_window_counts_no_failed_window() -> None:
    state = _fold(Event(kind=EventKind.ERROR, payload={"message": "engine failed: boom"}),
                  Event(kind=EventKind.ERROR, payload={"window_id": "w9", "stage": "judge", "message": "judge down"}))
    assert state.windows_failed == 1 and state.judging["w9"].status == "failed"
