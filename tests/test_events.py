from __future__ import annotations

import asyncio

import asyncpg
import pytest
from pydantic import ValidationError

from babylon_console.core import events
from babylon_console.core.event_bus import EventBus
from babylon_console.core.events import EventKind


async def test_follow_replays_in_order_then_streams_live(pool: asyncpg.Pool, database_url: str) -> None:
    first = await events.emit(pool, EventKind.RUN_STARTED, {"message": "go"}, run_id="r1")
    for i in range(5):
        await events.emit(pool, EventKind.STEP_TRAINED, {"step": i, "metrics": {"loss/train": 0.1 * i}}, "r1")
    bus = EventBus(database_url)
    seen: list[events.Event] = []

    async def consume() -> None:
        async for event in bus.follow(after_id=first.id):
            seen.append(event)
            if len(seen) == 8:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    # Emitted from "another process": a separate connection, concurrently.
    other = await asyncpg.connect(database_url)
    try:
        await asyncio.gather(*(events.emit(other if i == 0 else pool, EventKind.WARNING, {"message": f"w{i}"})
                               for i in range(3)))
    finally:
        await other.close()
    await asyncio.wait_for(task, 10)
    ids = [e.id for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == 8
    assert [e.kind for e in seen[:5]] == [EventKind.STEP_TRAINED] * 5
    assert [e.payload["step"] for e in seen[:5]] == [0, 1, 2, 3, 4]
    assert "step 4 trained: loss 0.4000" in seen[4].summary


async def test_resume_from_an_event_id_and_run_filter(pool: asyncpg.Pool, database_url: str) -> None:
    emitted = [await events.emit(pool, EventKind.WARNING, {"message": str(i)}, run_id=f"r{i % 2}") for i in range(6)]
    bus = EventBus(database_url)
    got: list[str] = []
    async for event in bus.follow(after_id=emitted[2].id, run_id="r1"):
        got.append(event.payload["message"])
        if len(got) == 2:
            break
    assert got == ["3", "5"]


async def test_event_commits_with_the_transaction_it_reports(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                await events.emit(conn, EventKind.ERROR, {"message": "rolled back"})
                raise RuntimeError("abort")
        except RuntimeError:
            pass
    assert await events.last_event_id(pool) == 0


# -- typed events --------------------------------------------------------------------------------

ONE_OF_EACH: list[events.EventData] = [
    events.RunStarted(message="engine started: offline backend, outcome judge", config={"iterations": 3, "seed": 0}),
    events.RunStopped(message="engine stopped: finished", reason="finished", iterations=2, steps=[1, 2]),
    events.RunPaused(message="paused by ana", operator="ana"),
    events.RunResumed(message="resumed by ana", operator="ana"),
    events.IterationStarted(iteration=1, windows=["2025-11-24T10:00"], message="iteration 1: 1 window(s)"),
    events.WindowSelected(window_id="2025-11-24T10:00", trajectories=6, available=8, dropout=0.25,
                          steps_without_calls=0, calls_from_logs=2, trainable_calls=40, calls_dropped=1,
                          completion_tokens=1200, message="window 2025-11-24T10:00: 6 of 8 trajectories"),
    events.WindowJudged(window_id="2025-11-24T10:00", judge="outcome", n=6, mean=0.5, std=0.125, cost_usd=None,
                        duration_s=0.01, attempts=1),
    events.WindowSkipped(window_id="2025-11-24T11:00", message="window 2025-11-24T11:00: no recorded LLM calls"),
    events.StepTrained(step=3, iteration=None, batch_id="offline:m:abc", windows=["2025-11-24T10:00"],
                       metrics={"loss/train": 0.25, "train/reward": 0.5}),
    events.CheckpointRegistered(model_id="m-offline-step0003", step=3, avg_reward=0.5, storage_path="offline://m:3",
                                message="checkpoint m-offline-step0003 registered"),
    events.CheckpointEvaluated(model_id="m-offline-step0003", against_model_id=None, windows=12, mean_diff=4.5,
                               ci_low=1.0, ci_high=8.0),
    events.Promoted(model_id="b", from_model_id=None, share=1.0, operator="ana", message="b is live (was none)"),
    events.RolledBack(model_id="a", from_model_id="b", operator="ana", message="rolled back from b to a"),
    events.HoldoutSet(share=0.15, previous_share=None, rule="sha256-v1", operator="ana", reason="evaluation",
                      message="hold-out set to 15% (was none) by ana: evaluation"),
    events.Alarm(alarm_id=4, rule="judge_disagrees", model_name="offline:m", step=4, window_id=None,
                 figures={"rank_correlation_rolling": -0.4, "rank_correlation": None}, threshold=0.0,
                 message="the judge disagrees with realised P&L: rolling rank correlation -0.40 < 0.00"),
    events.AlarmAcknowledged(alarm_id=4, rule="judge_disagrees", operator="ana", db_role="babylon_operator",
                             message="judge swapped"),
    events.EngineWarning(stage="database", since="2025-11-24T10:00:00+00:00", down_s=1.5, message="database back"),
    events.EngineFailure(stage="judge", window_id="2025-11-24T10:00", message="judging failed: timeout"),
]

SUMMARIES = {
    EventKind.RUN_STARTED: "engine started: offline backend, outcome judge",
    EventKind.WINDOW_JUDGED: "window 2025-11-24T10:00 judged by outcome: mean 0.500 ± 0.125 over 6",
    EventKind.STEP_TRAINED: "step 3 trained: loss 0.2500, reward 0.500",
    EventKind.CHECKPOINT_REGISTERED: "checkpoint m-offline-step0003 registered (step 3)",
    EventKind.PROMOTED: "promoted: b is live (was none)",
    EventKind.ROLLED_BACK: "rolled back: rolled back from b to a",
    EventKind.WARNING: "database back",
    EventKind.ALARM: "alarm judge_disagrees at step 4: the judge disagrees with realised P&L: rolling rank "
                     "correlation -0.40 < 0.00",
    EventKind.ALARM_ACKNOWLEDGED: "alarm 4 (judge_disagrees) acknowledged by ana (db babylon_operator): judge swapped",
}


def test_every_kind_has_a_model_and_the_sample_covers_them() -> None:
    assert set(events.EVENT_TYPES) == set(EventKind) - {EventKind.UNKNOWN}
    assert {type(e) for e in ONE_OF_EACH} == set(events.EVENT_TYPES.values())


async def test_every_kind_round_trips_through_the_database(pool: asyncpg.Pool) -> None:
    written = [await events.emit(pool, model, run_id="r1") for model in ONE_OF_EACH]
    read = await events.fetch_after(pool, 0)
    assert [e.id for e in read] == [e.id for e in written]
    for model, event in zip(ONE_OF_EACH, read, strict=True):
        assert event.kind is model.kind and event.raw_kind is None
        assert type(event.data) is type(model) and event.data == model
        # Only the fields that were set are stored: the JSON is what the emitter wrote.
        assert event.payload == model.model_dump(exclude_unset=True)
        assert event.summary == model.summary == SUMMARIES.get(event.kind, event.summary)
    assert read[6].payload["cost_usd"] is None and "message" not in read[6].payload  # set to None: kept


async def test_the_older_form_kind_and_dict_is_validated_by_the_kind_model(pool: asyncpg.Pool) -> None:
    event = await events.emit(pool, EventKind.STEP_TRAINED, {"step": 1, "metrics": {"loss/train": 0.5}}, "r1")
    assert event.data == events.StepTrained(step=1, metrics={"loss/train": 0.5})
    assert event.payload == {"step": 1, "metrics": {"loss/train": 0.5}}


async def test_a_misspelt_field_is_refused_when_the_event_is_built(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValidationError, match="stpe"):
        events.StepTrained(stpe=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="windw_id"):
        await events.emit(pool, EventKind.WINDOW_JUDGED, {"windw_id": "2025-11-24T10:00", "mean": 0.5})
    with pytest.raises(ValidationError):
        events.WindowJudged(mean="high")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await events.emit(pool, events.RunPaused(operator="ana"), {"operator": "bob"})
    with pytest.raises(ValueError, match="unknown"):
        await events.emit(pool, EventKind.UNKNOWN, {})
    assert await events.last_event_id(pool) == 0  # nothing was written


async def _insert_raw(pool: asyncpg.Pool, kind: str, payload: str) -> None:
    await pool.execute("INSERT INTO console_events (run_id, kind, payload) VALUES ('old', $1, $2::jsonb)",
                       kind, payload)


async def test_old_shaped_rows_load_without_error_and_read_sensibly(pool: asyncpg.Pool) -> None:
    rows = [
        ("step_trained", '{"step": "7", "metrics": {"loss/train": "0.5", "train/reward": null, "x": "n/a"}, '
                         '"windows": ["a", 3, {"b": 1}], "gpu": "h200"}'),
        ("step_trained", '{"metrics": "lost"}'),
        ("window_judged", '{"window_id": "w", "judge": "ruler", "mean": "bad", "std": null, "n": 4.0}'),
        ("window_judged", "{}"),
        ("checkpoint_registered", '{"model_id": "m-step0001"}'),
        ("promoted", '{"message": 5}'),
        ("run_started", '{"message": "engine started", "config": [1, 2]}'),
        ("run_stopped", '{"reason": "failed: boom", "steps": "1,2"}'),
        ("warning", '[1, 2, 3]'),
        ("error", '"just text"'),
        ("error", "null"),
        ("rollout_paused", '{"message": "rollout paused by ana", "share": 0.1}'),
        ("brand_new_kind", '{"whatever": true}'),
    ]
    for kind, payload in rows:
        await _insert_raw(pool, kind, payload)
    read = await events.recent(pool)
    assert [e.summary for e in read] == [
        "step 7 trained: loss 0.5000, reward nan",
        "step None trained: loss nan, reward nan",
        "window w judged by ruler: mean 0.000 ± 0.000 over 4",
        "window None judged by None: mean 0.000 ± 0.000 over None",
        "checkpoint m-step0001 registered (step None)",
        "promoted: 5",
        "engine started",
        "run stopped",
        "warning",
        "error",
        "error",
        "rollout paused by ana",
        "brand new kind",
    ]
    trained = read[0].data
    assert isinstance(trained, events.StepTrained)
    assert (trained.step, trained.windows) == (7, ["a", "3"])
    assert trained.metrics == {"loss/train": 0.5, "train/reward": None}
    assert read[0].payload["gpu"] == "h200"  # the raw payload keeps everything
    assert read[6].data == events.RunStarted(message="engine started")
    assert read[7].data == events.RunStopped(reason="failed: boom")
    assert read[8].payload == {"value": [1, 2, 3]} and read[10].payload == {}
    unknown = read[11]
    assert unknown.kind is EventKind.UNKNOWN and unknown.raw_kind == "rollout_paused"
    assert isinstance(unknown.data, events.UnknownEvent)
    assert unknown.data.name == "rollout_paused" and unknown.data.payload == {"message": "rollout paused by ana",
                                                                               "share": 0.1}
    assert await events.of_kinds(pool, [EventKind.STEP_TRAINED], 10) == read[:2]


async def test_alarm_rows_of_another_version_read_without_error(pool: asyncpg.Pool) -> None:
    rows = [
        ("alarm", '{"alarm_id": "9", "rule": "kl_spike", "step": 12, "figures": {"kl": "0.9", "z": "high", '
                  '"median": null}, "threshold": "bad", "paused": true, "severity": "high", "message": "KL 0.90"}'),
        ("alarm", '{"rule": "brand_new_rule", "window_id": "2025-11-24T10:00", "figures": [1, 2]}'),
        ("alarm", "{}"),
        ("alarm_acknowledged", '{"alarm_id": 9, "operator": 5}'),
        ("alarm_acknowledged", '"text"'),
    ]
    for kind, payload in rows:
        await _insert_raw(pool, kind, payload)
    read = await events.recent(pool)
    assert [e.summary for e in read] == [
        "alarm kl_spike at step 12: KL 0.90 (engine paused)",
        "alarm brand_new_rule at window 2025-11-24T10:00: no message",
        "alarm unknown at window ?: no message",
        "alarm 9 acknowledged by 5",
        "alarm None acknowledged by unknown",
    ]
    spike = read[0].data
    assert isinstance(spike, events.Alarm)
    assert (spike.alarm_id, spike.figures, spike.threshold, spike.paused) == (9, {"kl": 0.9, "median": None}, None,
                                                                              True)
    assert read[1].data == events.Alarm(rule="brand_new_rule", window_id="2025-11-24T10:00")


def test_events_built_in_memory_keep_working_as_before() -> None:
    event = events.Event(kind=EventKind.ERROR, payload={"message": "m", "stage": "judge", "window_id": "w"})
    assert event.payload["stage"] == "judge" and event.summary == "m"
    assert event.data == events.EngineFailure(message="m", stage="judge", window_id="w")
    assert event.data is event.data  # parsed once
    assert event == events.Event(kind=EventKind.ERROR, payload={"message": "m", "stage": "judge", "window_id": "w"})
    newer = events.Event(kind="from_a_newer_engine", payload={})  # type: ignore[arg-type]
    assert newer.kind is EventKind.UNKNOWN and newer.summary == "from a newer engine"


def test_models_expose_what_the_console_reads() -> None:
    match events.Event(kind=EventKind.STEP_TRAINED, payload={"step": 2, "windows": ["w"],
                                                             "metrics": {"loss/train": 0.1}}).data:
        case events.StepTrained(step=int(step), windows=windows, metrics=metrics):
            assert (step, windows, metrics) == (2, ["w"], {"loss/train": 0.1})
        case _:
            pytest.fail("no match")
    started = events.Event(kind=EventKind.RUN_STARTED, payload={"config": {"iterations": 4}}).data
    assert isinstance(started, events.RunStarted) and started.config["iterations"] == 4
