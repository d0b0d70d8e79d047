"""ART's own code is the oracle: the groups the engine builds must carry trainable assistant tokens.

Every test runs ART 0.5's `tokenize_trajectory_groups` (what LocalBackend runs before training,
and what the serverless service runs on the job payload) on groups built exactly as the engine
builds them, with a tokenizer trained here and loaded through `art.tokenizer.get_tokenizer`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest

from babylon_console.core.game.bulk import insert_rows
from babylon_console.core.game.schema import LLM_CALL_COLUMNS
from babylon_console.core.game.store import GameStore
from babylon_console.core.sim.simulation import Simulation
from babylon_console.core.simgame.seeding import seed_history
from babylon_console.core.training.groups import WindowGroup, build_window_group, trainable_tokens
from babylon_console.core.training.tokenization import TokenizerUnavailable, load_tokenizer
from tests.factories import trajectory_row, user_row

NOW = datetime(2026, 11, 24, 12, 20)
W = "2026-11-24T09:00"


def art_tokenize(tokenizer, groups) -> list:
    from art.preprocessing.tokenize import tokenize_trajectory_groups

    return list(tokenize_trajectory_groups(tokenizer, groups, allow_training_without_logprobs=True,
                                           scale_rewards=True, shuffle_group_trajectories=False))


def expected_completions(tokenizer, group: WindowGroup) -> list[list[int]]:
    """What ART must train: each kept call's response, tokenized on its own, plus end of turn."""
    out = []
    for calls, tokens in zip(group.calls, group.tokens or [], strict=True):
        for call, tok in zip(calls, tokens, strict=True):
            if tok is not None:
                out.append([*tokenizer(call.response, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id])
    return out


def trained_spans(results) -> list[list[int]]:
    spans = []
    for r in results:
        run: list[int] = []
        for token, selected in zip(r.token_ids, r.assistant_mask, strict=True):
            if selected:
                run.append(token)
            elif run:
                spans.append(run)
                run = []
        if run:
            spans.append(run)
    return spans


def spread(group: WindowGroup) -> WindowGroup:
    group.rewards = [i / max(1, len(group.trajectories) - 1) for i in range(len(group.trajectories))]
    return group


async def test_simulator_rows_train_every_recorded_call(pool: asyncpg.Pool, tokenizer_dir: Path) -> None:
    await seed_history(pool, Simulation(seed=3, n_agents=5, steps_per_window=6), windows=1, now=NOW)
    window = await pool.fetchval('SELECT DISTINCT "windowId" FROM trajectories')
    data = await GameStore(pool).window_trajectories(window)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    group = build_window_group(window, data.trajectories, max_per_group=8, dropout=0.0, seed=0)
    stats = group.tokenize(tokenizer)
    assert stats.trainable_calls == stats.calls == sum(t.llm_call_count for t in data.trajectories) > 0
    art_groups = [spread(group).to_art()]
    results = art_tokenize(tokenizer, art_groups)
    expected = expected_completions(tokenizer, group)
    # The middle trajectory has zero advantage (its reward is the mean): ART drops it, and so does our count.
    middle = len(group.trajectories) // 2
    dropped = sum(1 for t in group.tokens[middle] if t is not None) if len(group.trajectories) % 2 else 0
    spans = trained_spans(results)
    assert sum(sum(r.assistant_mask) for r in results) == trainable_tokens(art_groups) > 0
    assert len(spans) == len(expected) - dropped  # one sequence per call: calls are separate requests
    assert all(span in expected for span in spans)
    # Each trained sequence is the agent's own request: its system + user prompt, rendered with the template.
    first = results[0]
    prompt = tokenizer.decode(first.token_ids[: first.assistant_mask.index(1)])
    assert prompt.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")
    assert prompt.count("<|begin_of_text|>") == 1  # the template writes BOS; encoding adds no second one
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


async def _insert_game_shaped(pool: asyncpg.Pool) -> list[str]:
    """Rows as the real game writes them: free-form JSON responses with TRADING_DECISION, steps without
    calls, unknown purposes, extra keys, a step whose calls are only in llm_call_logs."""
    agents = [f"game-agent-{i}" for i in range(3)]
    await insert_rows(pool, "User", [user_row(a) for a in agents])
    rows, logs = [], []
    for i, agent in enumerate(agents):
        steps = [
            {"stepNumber": 0, "llmCalls": [{
                "systemPrompt": f"You are {agent}, a Babylon trader.", "userPrompt": "Feed: $BTC up 3%. Decide.",
                "response": orjson.dumps({"thinking": "momentum", "action": "TRADING_DECISION",
                                          "trades": [{"ticker": "BTC", "side": "long", "size": 10 + i}]}).decode(),
                "purpose": "trading_decision", "actionType": "TRADING_DECISION", "novelKey": {"x": 1}}],
             "action": {"actionType": "TRADING_DECISION", "parameters": None, "success": True}, "reward": 0.2},
            {"stepNumber": 1, "environmentState": {"agentBalance": 990.0}, "reward": 0.0},  # no calls anywhere
            {"stepNumber": 2, "reward": 0.1, "llmCalls": []},  # calls only in llm_call_logs
            {"stepNumber": 3, "llmCalls": [
                {"userPrompt": "Write a post about ETH.", "response": f"ETH is looking strong {i}",
                 "purpose": "social_post"},  # no systemPrompt of its own: the agent's is used
                {"systemPrompt": "Evaluate.", "userPrompt": "How did it go?", "response": "   ",
                 "purpose": "evaluation"},  # blank response: not trainable, counted
            ], "reward": 0.3},
        ]
        row = trajectory_row(W, agent, steps=4, pnl=float(i * 10), steps_json=orjson.dumps(steps).decode())
        rows.append(row)
        tid = row[1]
        at = datetime(2026, 11, 24, 9, 30)
        logs.append(tuple({
            "id": f"{tid}-log", "trajectoryId": tid, "stepId": f"{tid}-step-2", "callId": f"{tid}-log",
            "timestamp": at, "latencyMs": 100, "model": "babylon-agent", "purpose": "reply", "actionType": None,
            "systemPrompt": f"You are {agent}, a Babylon trader.", "userPrompt": "Reply to @whale.",
            "messagesJson": None, "response": f"Thanks @whale {i}", "reasoning": None, "temperature": 0.7,
            "maxTokens": 100, "topP": None, "promptTokens": None, "completionTokens": None, "totalTokens": None,
            "metadata": None, "createdAt": at + timedelta(seconds=1),
        }[c] for c in LLM_CALL_COLUMNS))
    await insert_rows(pool, "trajectories", rows)
    await insert_rows(pool, "llm_call_logs", logs)
    return [r[1] for r in rows]


async def test_game_shaped_rows_train_every_usable_call(pool: asyncpg.Pool, tokenizer_dir: Path) -> None:
    ids = await _insert_game_shaped(pool)
    store = GameStore(pool)
    data = await store.window_trajectories(W)
    assert not data.rejections
    logged = await store.logged_calls(ids)
    group = build_window_group(W, data.trajectories, max_per_group=8, dropout=0.0, seed=0, logged=logged)
    assert group.steps_without_calls == 3 and group.calls_from_logs == 3
    tokenizer = load_tokenizer(str(tokenizer_dir))
    stats = group.tokenize(tokenizer)
    assert (stats.calls, stats.trainable_calls, stats.dropped_empty) == (12, 9, 3)
    results = art_tokenize(tokenizer, [spread(group).to_art()])
    spans = trained_spans(results)
    expected = expected_completions(tokenizer, group)
    middle = [tok for tok in group.tokens[1] if tok is not None]  # reward 0.5 = the mean: zero advantage
    assert len(spans) == len(expected) - len(middle) == 6
    assert all(span in expected for span in spans)
    texts = [tokenizer.decode(span[:-1]) for span in spans]
    assert any("TRADING_DECISION" in t for t in texts) and any(t.startswith("Thanks @whale") for t in texts)
    # The call without a system prompt of its own was sent with the agent's.
    post = next(r for r in results if "Write a post" in tokenizer.decode(r.token_ids))
    assert "You are game-agent-" in tokenizer.decode(post.token_ids)
    # Judges read the text, with every call.
    assert any("Reply to @whale." in m["content"] for m in group.messages[0])


def test_plain_dict_assistant_turns_train_nothing_in_art(tokenizer_dir: Path) -> None:
    """Why the Choices are needed: the groups this project built before give ART zero tokens."""
    import art

    tokenizer = load_tokenizer(str(tokenizer_dir))
    trajectories = [
        art.Trajectory(messages_and_choices=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                                             {"role": "assistant", "content": f"answer {i}"}], reward=float(i))
        for i in range(3)
    ]
    results = art_tokenize(tokenizer, [art.TrajectoryGroup(trajectories)])
    assert sum(sum(r.assistant_mask) for r in results) == 0
    assert trainable_tokens([art.TrajectoryGroup(trajectories)]) == 0


async def test_calls_longer_than_the_limit_are_dropped_and_counted(pool: asyncpg.Pool, tokenizer_dir: Path) -> None:
    await seed_history(pool, Simulation(seed=4, n_agents=3, steps_per_window=3), windows=1, now=NOW)
    window = await pool.fetchval('SELECT DISTINCT "windowId" FROM trajectories')
    data = await GameStore(pool).window_trajectories(window)
    group = build_window_group(window, data.trajectories, max_per_group=8, dropout=0.0, seed=0)
    stats = group.tokenize(load_tokenizer(str(tokenizer_dir)), max_seq_length=64)
    assert stats.trainable_calls == 0 and stats.dropped_too_long == stats.calls > 0
    assert group.trajectories == []  # nothing left to train, nothing truncated


def test_a_missing_tokenizer_says_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(TokenizerUnavailable, match=r"cannot load the tokenizer .*nowhere.*BABYLON_TOKENIZER"):
        load_tokenizer(str(tmp_path / "nowhere"))
    empty = tmp_path / "no-template"
    empty.mkdir()
    with pytest.raises(TokenizerUnavailable, match="no-template"):
        load_tokenizer(str(empty))


@pytest.mark.parametrize("which", ["test", "standin"])
async def test_prompts_encode_exactly_as_a_whole_render(pool: asyncpg.Pool, tokenizer_dir: Path, tmp_path: Path,
                                                        which: str) -> None:
    """Each agent's system turn is encoded once and reused: the ids must equal encoding the whole
    rendered prompt, for both chat templates (Llama-3-style and ChatML)."""
    from babylon_console.core.training.standin_tokenizer import ensure_standin_tokenizer
    from babylon_console.core.training.tokenization import encode_calls, render_prompt

    source = tokenizer_dir if which == "test" else ensure_standin_tokenizer(tmp_path)
    tokenizer = load_tokenizer(str(source))
    await seed_history(pool, Simulation(seed=6, n_agents=4, steps_per_window=5), windows=1, now=NOW)
    window = await pool.fetchval('SELECT DISTINCT "windowId" FROM trajectories')
    data = await GameStore(pool).window_trajectories(window)
    calls = [c for t in data.trajectories for c in build_window_group(
        window, [t], max_per_group=8, dropout=0.0, seed=0).calls[0]]
    encoded = encode_calls(tokenizer, calls)
    for call, tokens in zip(calls, encoded.tokens, strict=True):
        assert tokens is not None
        whole = tokenizer(render_prompt(tokenizer, call.system_prompt, call.user_prompt),
                          add_special_tokens=False)["input_ids"]
        assert tokens.prompt_token_ids == whole
